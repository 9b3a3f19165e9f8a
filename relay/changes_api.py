"""A session's work through the relay, which stores none of it (see :mod:`wire.changes`).

Client calls (signed in):

* ``GET /api/sessions/{id}/changes`` → :class:`wire.Changes`; with ``?path=P`` →
  :class:`wire.FileDiff` of that changed file.
* ``POST /api/sessions/{id}/changes/{commit|merge|push|discard}`` with
  :class:`wire.LandRequest` → :class:`wire.Landed`.
* ``GET /api/environments/{id}/worktrees`` → :class:`wire.KeptWorktrees`, and the same
  ``changes`` calls under ``/api/environments/{id}/worktrees/{slug}``.

Each becomes a :class:`wire.WorkspaceRequest` queued for the environment's daemon; the
daemon posts its :class:`wire.WorkspaceAnswer` to ``POST /daemon/v1/environments/{id}/
answers`` (link token), and the waiting call answers with it: the content passes through
memory only. A refusal is ``{"error": {"code", "message", "files"?}}`` (``409`` mostly;
``404`` for what is not there; ``400`` for a bad request). A daemon that does not answer
within the wait gives ``409 no_answer``: an action may still happen, and its ``git_action``
event then says so in the session's log.
"""

from __future__ import annotations

import time

import attrs
import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import wire
from wire import LandRequest, WorkspaceAnswer, WorkspaceRequest, encode

from .auth import authenticate_access, authenticate_client
from .client_api import session_named
from .config import RelayConfig
from .errors import BadRequest, Conflict, NotFound
from .fanout import Hub, environment_key
from .httputil import CLIENT_BODY_LIMIT, decode_body, json_response
from .ids import new_id
from .records import ClientPrincipal, SessionRecord, owned_environment
from .storage import Storage
from .tokens import TokenIssuer

__all__ = ["ChangesApi"]

#: An answer may carry a file's diff (the daemon caps it near 1 MiB of text, JSON-escaped).
ANSWER_BODY_LIMIT = 16 * 1024 * 1024
_NOT_THERE = frozenset({"workspace_gone", "not_started", "not_changed", "not_here"})
_BAD_REQUEST = frozenset({"message_required", "path_required", "bad_request", "bad_message"})


@attrs.define(eq=False)
class _Pending:
    environment_id: str
    done: trio.Event = attrs.Factory(trio.Event)
    answer: WorkspaceAnswer | None = None


@attrs.define(eq=False)
class ChangesApi:
    storage: Storage
    hub: Hub
    config: RelayConfig
    tokens: TokenIssuer
    _pending: dict[str, _Pending] = attrs.Factory(dict)

    def routes(self) -> list[Route]:
        session = "/api/sessions/{session_id}/changes"
        kept = "/api/environments/{environment_id}/worktrees"
        return [
            Route(session, self.session_changes, methods=["GET"]),
            Route(session + "/{action}", self.session_action, methods=["POST"]),
            Route(kept, self.worktrees, methods=["GET"]),
            Route(kept + "/{slug}/changes", self.worktree_changes, methods=["GET"]),
            Route(kept + "/{slug}/changes/{action}", self.worktree_action, methods=["POST"]),
            Route(
                "/daemon/v1/environments/{environment_id}/answers", self.answer, methods=["POST"]
            ),
        ]

    # -- clients -------------------------------------------------------------------------------

    async def _origin(self, client: ClientPrincipal) -> str:
        """Who acts, for the session log: a device token's name, or for the web app the
        browser that signed in ("web (Chrome on Android)")."""
        if client.via == "cookie":
            for sign_in in await self.storage.list_sign_ins():
                if sign_in.session_hash == client.session_hash:
                    return f"{client.name} ({sign_in.name})"
        return client.name

    async def _session(self, request: Request) -> SessionRecord:
        return await session_named(self.storage, request)

    async def session_changes(self, request: Request) -> Response:
        await authenticate_client(request, self.storage)
        session = await self._session(request)
        path = request.query_params.get("path")
        return await self._ask(
            session.environment_id,
            WorkspaceRequest(
                id=new_id("ws"),
                ask="changes" if path is None else "diff",
                session_id=session.id,
                cwd=session.cwd,
                path=path,
            ),
        )

    async def session_action(self, request: Request) -> Response:
        client = await authenticate_client(request, self.storage)
        session = await self._session(request)
        action = _action(request)
        body = await decode_body(request, LandRequest, CLIENT_BODY_LIMIT, self.config.body_deadline)
        return await self._ask(
            session.environment_id,
            WorkspaceRequest(
                id=new_id("ws"),
                ask=action,
                session_id=session.id,
                cwd=session.cwd,
                message=body.message,
                confirm=body.confirm,
                origin=await self._origin(client),
                last_seq=session.last_seq,
            ),
        )

    async def worktrees(self, request: Request) -> Response:
        await authenticate_client(request, self.storage)
        environment_id = request.path_params["environment_id"]
        answer = await self._wait(
            environment_id, WorkspaceRequest(id=new_id("ws"), ask="worktrees")
        )
        if answer.worktrees is not None:
            named = []
            for kept in answer.worktrees.worktrees:
                owner = await self._owner(environment_id, kept.slug)
                named.append(attrs.evolve(kept, session_id=owner.id if owner else None))
            answer = attrs.evolve(answer, worktrees=wire.KeptWorktrees(worktrees=named))
        return _response(answer)

    async def _owner(self, environment_id: str, slug: str) -> SessionRecord | None:
        """The newest session of the environment that worked in the worktree ``slug``."""
        for session in await self.storage.list_sessions():
            if (
                session.environment_id == environment_id
                and session.spawn == "worktree"
                and session.cwd is not None
                and session.cwd.rstrip("/").rsplit("/", 1)[-1] == slug
            ):
                return session
        return None

    async def worktree_changes(self, request: Request) -> Response:
        await authenticate_client(request, self.storage)
        environment_id, slug = request.path_params["environment_id"], request.path_params["slug"]
        path = request.query_params.get("path")
        return await self._ask(
            environment_id,
            WorkspaceRequest(
                id=new_id("ws"), ask="changes" if path is None else "diff", slug=slug, path=path
            ),
        )

    async def worktree_action(self, request: Request) -> Response:
        client = await authenticate_client(request, self.storage)
        environment_id, slug = request.path_params["environment_id"], request.path_params["slug"]
        action = _action(request)
        body = await decode_body(request, LandRequest, CLIENT_BODY_LIMIT, self.config.body_deadline)
        owner = await self._owner(environment_id, slug)
        return await self._ask(
            environment_id,
            WorkspaceRequest(
                id=new_id("ws"),
                ask=action,
                slug=slug,
                session_id=owner.id if owner is not None and owner.state == "ended" else None,
                message=body.message,
                confirm=body.confirm,
                origin=await self._origin(client),
                last_seq=owner.last_seq if owner is not None else 0,
            ),
        )

    async def _ask(self, environment_id: str, question: WorkspaceRequest) -> Response:
        return _response(await self._wait(environment_id, question))

    async def _wait(self, environment_id: str, question: WorkspaceRequest) -> WorkspaceAnswer:
        for text in (question.slug, question.path, question.message):
            if text is not None and "\0" in text:
                raise BadRequest("invalid_parameter", "a name or message cannot hold NUL")
        if "changes" not in await self.storage.environment_features(environment_id):
            raise Conflict(
                "changes_unsupported",
                "this environment's daemon cannot show or land changes: upgrade rcd on its machine",
            )
        wait = self.config.changes_wait * (5 if question.ask == "push" else 1)
        question = attrs.evolve(question, expires_at=time.time() + wait)
        pending = self._pending[question.id] = _Pending(environment_id=environment_id)
        try:
            await self.storage.queue_directive(environment_id, question)
            self.hub.notify(environment_key(environment_id))
            with trio.move_on_after(wait):
                await pending.done.wait()
        finally:
            del self._pending[question.id]
        answer = pending.answer
        if answer is None:
            raise Conflict(
                "no_answer",
                "the environment's daemon did not answer in time; an action may still"
                " happen: the session's log will show it",
            )
        return answer

    # -- the daemon ----------------------------------------------------------------------------

    async def answer(self, request: Request) -> Response:
        environment_id = request.path_params["environment_id"]
        claims = authenticate_access(request, self.tokens, "link", environment_id=environment_id)
        env = await self.storage.get_environment(environment_id)
        owned_environment(env, environment_id, claims.credential_id)
        answer = await decode_body(
            request, WorkspaceAnswer, ANSWER_BODY_LIMIT, self.config.body_deadline
        )
        pending = self._pending.get(answer.id)
        # Another environment's question is not this daemon's to answer.
        if pending is not None and pending.environment_id == environment_id:
            pending.answer = answer
            pending.done.set()
        return Response(status_code=204)


def _action(request: Request) -> wire.Action:
    action = request.path_params["action"]
    if action not in wire.ACTIONS:
        raise NotFound(f"no action {action!r}: one of {', '.join(wire.ACTIONS)}")
    return action  # type: ignore[no-any-return]


def _response(answer: WorkspaceAnswer) -> Response:
    if answer.error is not None:
        error = answer.error
        status = 404 if error.code in _NOT_THERE else 400 if error.code in _BAD_REQUEST else 409
        body: dict[str, object] = {"code": error.code, "message": error.message}
        if error.files:
            body["files"] = error.files
        return json_response({"error": body}, status=status)
    for field in ("changes", "diff", "worktrees", "landed"):
        value = getattr(answer, field)
        if value is not None:
            return json_response(encode(value))
    raise BadRequest("empty_answer", "the daemon's answer was empty")
