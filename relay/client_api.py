"""The client API under ``/api`` (the public contract; see ``docs/api.md``).

Every route authenticates first (401), before it reads a byte of the body, then validates
(400/413; a body must arrive within ``config.body_deadline``, else 408), then
asks storage, whose checks and writes are atomic (404/409). A refused request changes
nothing. The inputs toward a running session (message, permission, interrupt, stop)
authenticate again in the same storage call that queues them, so an input is never queued
after its credential was revoked.

An environment offline for longer than ``config.offline_grace`` has lost its daemon for now
(maybe for good: killed, or gone after a relay outage): its sessions that have not ended
show the state ``disconnected``, and messages, permission decisions and interrupts to them
are refused (``409 environment_offline``) rather than queued for a daemon that may never
read them. Within the grace (a link renewed, a reconnect) inputs are queued as always.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wire import (
    MAX_MESSAGE_BYTES,
    CreateSession,
    DecidePermission,
    EnvironmentInfo,
    Interrupt,
    PermissionDecision,
    PostMessage,
    Rename,
    SendMessage,
    SessionInfo,
    StartSession,
    StopSession,
    encode,
)

from .auth import ClientPrincipal, ClientProof, authenticate_client, bearer_token, client_proof
from .config import RelayConfig
from .errors import BodyTooLarge, Conflict, NotFound, Unauthenticated
from .fanout import Hub, environment_key
from .httputil import (
    CLIENT_BODY_LIMIT,
    decode_body,
    int_param,
    json_response,
    last_event_id,
    wants_event_stream,
)
from .ids import new_id
from .indexing import title_from_text
from .openapi import openapi_document
from .records import EnvironmentRecord, NewSession, SessionInput, SessionRecord
from .storage import Storage
from .streams import session_events_response
from .tokens import ANSWER_TOKEN_PREFIX, AnswerTokens

__all__ = ["ClientApi", "environment_info", "session_info", "session_named"]

T = TypeVar("T")

#: The ``origin`` of an input before :meth:`Storage.submit_input` authenticates its client.
_SET_BY_STORAGE = ""

#: Most events one ``GET .../events`` returns.
MAX_EVENTS_PER_PAGE = 1000
#: How long an input's answer waits for the open downlink to take the input first (it
#: answers anyway: the input is queued, and the downlink sends it when it can).
HANDOFF_WAIT = 0.05


def environment_info(env: EnvironmentRecord) -> EnvironmentInfo:
    return EnvironmentInfo(
        id=env.id,
        name=env.name,
        machine=env.machine_name,
        online=env.online,
        directory=env.directory,
        spawn=env.spawn,
        capacity=env.capacity,
        active_sessions=env.active_sessions,
    )


def session_info(
    session: SessionRecord, base_url: str, *, offline_grace: float = math.inf, now: float = 0.0
) -> SessionInfo:
    """The session as clients see it: ``disconnected`` (unless ended) while its environment
    has been offline for more than ``offline_grace`` seconds at ``now``."""
    offline_since = session.environment_offline_since
    lost = offline_since is not None and now - offline_since > offline_grace
    return SessionInfo(
        id=session.id,
        environment_id=session.environment_id,
        title=session.title,
        state="disconnected" if lost and session.state != "ended" else session.state,
        spawn=session.spawn,
        cwd=session.cwd,
        branch=session.branch,
        created_at=session.created_at,
        updated_at=session.updated_at,
        url=f"{base_url}/s/{session.id}",
        # Only another agent than its environment's default is said (and the key left out
        # otherwise): a client of before agents reads every session of one agent as ever.
        agent=session.agent if session.agent != session.environment_agent else None,
    )


async def session_named(storage: Storage, request: Request) -> SessionRecord:
    """The session the path's ``{session_id}`` names (NotFound when there is none)."""
    session_id = request.path_params["session_id"]
    session = await storage.get_session(session_id)
    if session is None:
        raise NotFound(f"no session {session_id}")
    return session


def _check_text_size(text: str, what: str) -> None:
    if len(text.encode()) > MAX_MESSAGE_BYTES:
        raise BodyTooLarge(
            f"the {what} is larger than {MAX_MESSAGE_BYTES} bytes", code="message_too_large"
        )


def _check_features(features: frozenset[str], body: CreateSession) -> None:
    """Conflict when the environment's daemon did not say it does what ``body`` asks."""
    if body.conversation and "conversations" not in features:
        raise Conflict(
            "conversation_unsupported",
            "the daemon of this environment cannot continue a conversation made outside rcd:"
            " upgrade rcd on its machine",
        )
    if body.agent and "agents" not in features:
        raise Conflict(
            "agents_unsupported",
            "the daemon of this environment runs one agent: upgrade rcd on its machine",
        )
    if body.sandbox and "sandbox" not in features:
        raise Conflict(
            "sandbox_unsupported",
            "the daemon of this environment cannot sandbox a session: upgrade rcd on its machine",
        )


def _blank_to_none(text: str | None) -> str | None:
    return text.strip() if text is not None and text.strip() else None


@attrs.define(eq=False)
class ClientApi:
    storage: Storage
    hub: Hub
    config: RelayConfig
    #: Now, to tell how long environments have been offline (the storage uses time.time too).
    clock: Callable[[], float] = time.time
    #: Checks notifications' answer tokens (the notifier mints them).
    answers: AnswerTokens = attrs.Factory(AnswerTokens)

    def routes(self) -> list[Route]:
        session = "/api/sessions/{session_id}"
        return [
            Route("/api/environments", self.list_environments, methods=["GET"]),
            Route(
                "/api/environments/{environment_id}/sessions",
                self.create_session,
                methods=["POST"],
            ),
            Route("/api/sessions", self.list_sessions, methods=["GET"]),
            # One route for both methods, so that a 405 on it lists both in ``Allow``.
            Route(session, self.session_resource, methods=["GET", "PATCH"]),
            Route(session + "/events", self.events, methods=["GET"]),
            Route(session + "/messages", self.post_message, methods=["POST"]),
            Route(session + "/permissions/{request_id}", self.decide_permission, methods=["POST"]),
            Route(session + "/interrupt", self.interrupt, methods=["POST"]),
            Route(session + "/stop", self.stop, methods=["POST"]),
            Route(session + "/resume", self.resume, methods=["POST"]),
            Route("/api/openapi.json", self.openapi, methods=["GET"]),
        ]

    async def _client(self, request: Request) -> ClientPrincipal:
        return await authenticate_client(request, self.storage)

    async def _body(self, request: Request, cl: type[T]) -> T:
        """The body decoded as ``cl`` (capped, under ``config.body_deadline``); only once
        the caller is authenticated."""
        return await decode_body(request, cl, CLIENT_BODY_LIMIT, self.config.body_deadline)

    async def _session(self, request: Request) -> SessionRecord:
        return await session_named(self.storage, request)

    def _info(self, session: SessionRecord) -> dict[str, Any]:
        info = session_info(
            session, self.config.url, offline_grace=self.config.offline_grace, now=self.clock()
        )
        data: dict[str, Any] = encode(info)
        return data

    async def list_environments(self, request: Request) -> Response:
        await self._client(request)
        environments = await self.storage.list_environments()
        return json_response({"environments": [encode(environment_info(e)) for e in environments]})

    async def create_session(self, request: Request) -> Response:
        client = await self._client(request)
        body = await self._body(request, CreateSession)
        prompt = _blank_to_none(body.prompt)
        if prompt is not None:
            _check_text_size(prompt, "prompt")
        title = _blank_to_none(body.title) or title_from_text(prompt)
        session_id = new_id("ses")
        environment_id = request.path_params["environment_id"]
        if body.conversation or body.sandbox:  # a plain start needs no feature of a daemon
            _check_features(await self.storage.environment_features(environment_id), body)
        agent = await self._agent(environment_id, body.agent)
        start = StartSession(
            session_id=session_id,
            prompt=prompt,
            prompt_input_id=new_id("in") if prompt is not None else None,
            title=title,
            spawn=body.spawn,
            origin=client.name,
            conversation=body.conversation,
            sandbox=body.sandbox,
            agent=agent,
        )
        new = NewSession(
            id=session_id, environment_id=environment_id, title=title, spawn=body.spawn
        )
        session = await self.storage.create_session(new, start)
        self.hub.notify(environment_key(environment_id))
        return json_response(self._info(session), status=201)

    async def _agent(self, environment_id: str, agent: str | None) -> str | None:
        """The agent to ask the daemon for: None for its default (asked by name or not);
        Conflict when its daemon does not run ``agent``."""
        if agent is None:
            return None
        env = await self.storage.get_environment(environment_id)
        if env is not None and agent == env.agent:
            return None  # its default: any daemon runs it, with or without the feature
        _check_features(
            await self.storage.environment_features(environment_id), CreateSession(agent=agent)
        )
        view = await self.storage.read_settings(environment_id)
        allowed = view.agents if view is not None and view.agents else [env.agent] if env else []
        if agent not in allowed:
            raise Conflict(
                "agent_not_allowed",
                f"this environment's daemon does not run {agent!r} (it allows:"
                f" {', '.join(allowed)}); rcd start --allow-agent NAME adds one",
            )
        return agent

    async def list_sessions(self, request: Request) -> Response:
        await self._client(request)
        sessions = await self.storage.list_sessions()
        return json_response({"sessions": [self._info(s) for s in sessions]})

    async def session_resource(self, request: Request) -> Response:
        if request.method == "PATCH":
            return await self.rename_session(request)
        return await self.get_session(request)

    async def get_session(self, request: Request) -> Response:
        await self._client(request)
        return json_response(self._info(await self._session(request)))

    async def rename_session(self, request: Request) -> Response:
        await self._client(request)
        body = await self._body(request, Rename)
        session = await self._session(request)
        renamed = await self.storage.rename_session(session.id, body.title.strip())
        return json_response(self._info(renamed))

    async def events(self, request: Request) -> Response:
        await self._client(request)
        session = await self._session(request)
        after = int_param(request, "after", 0)
        if wants_event_stream(request):
            resume_from = last_event_id(request)
            partials = int_param(request, "partials", 0, 0, 1) == 1

            async def still_allowed() -> bool:
                try:
                    await self._client(request)
                except Unauthenticated:
                    return False
                return True

            return session_events_response(
                self.storage,
                self.hub,
                session.id,
                after if resume_from is None else resume_from,
                self.config.keepalive_interval,
                still_allowed,
                partials=partials,
            )
        limit = int_param(request, "limit", MAX_EVENTS_PER_PAGE, 1, MAX_EVENTS_PER_PAGE)
        events = await self.storage.read_events(session.id, after, limit)
        return json_response({"events": [encode(e) for e in events]})

    async def _authenticated_proof(self, request: Request) -> ClientProof:
        """The request's client proof, checked against storage before its body is read: a
        caller without a valid credential gets 401 at once, and its body stays unread."""
        proof = client_proof(request)
        await self.storage.authenticate_client(proof)
        return proof

    async def _submit(self, proof: ClientProof | None, directive: SessionInput) -> None:
        """Queue an input in one storage call, which authenticates the client (and makes it
        the ``origin``) and looks the session up (404)."""
        queued = await self.storage.submit_input(
            directive.session_id, directive, proof, offline_grace=self.config.offline_grace
        )
        if queued is not None:
            tail = self.hub.publish_directive(queued.environment_id, queued.dseq, queued.directive)
            if tail is not None and tail.link_id is not None:
                # The input is queued; the daemon gets it before the client hears so (both
                # would compete for the CPU, and the agent is the one waiting for it). A
                # daemon in this process reads it in the loop's next pass: the answer
                # goes in the one after.
                with trio.move_on_after(HANDOFF_WAIT):
                    await tail.wait_sent(queued.dseq)
                await trio.lowlevel.checkpoint()

    async def post_message(self, request: Request) -> Response:
        proof = await self._authenticated_proof(request)
        body = await self._body(request, PostMessage)
        _check_text_size(body.text, "message")
        message = SendMessage(
            session_id=request.path_params["session_id"],
            input_id=body.id,
            text=body.text,
            origin=_SET_BY_STORAGE,
        )
        await self._submit(proof, message)
        return json_response({"id": body.id}, status=202)

    async def decide_permission(self, request: Request) -> Response:
        """Allow or deny; with a device's credential, or a notification's answer token
        (good for that one request, that device, an hour)."""
        session_id, request_id = (
            request.path_params["session_id"],
            request.path_params["request_id"],
        )
        token = bearer_token(request)
        proof: ClientProof | None = None
        origin = _SET_BY_STORAGE
        if token is not None and token.startswith(ANSWER_TOKEN_PREFIX):
            claims = self.answers.verify(token, session_id, request_id)
            answerer = await self.storage.push_answerer(claims.subscription_id)
            if answerer is None:
                raise Unauthenticated("this device is signed out: open the app and sign in")
            origin = f"{answerer} (notification)"
        else:
            proof = await self._authenticated_proof(request)
        body = await self._body(request, PermissionDecision)
        decision = DecidePermission(
            session_id=session_id,
            request_id=request_id,
            decision=body.decision,
            message=body.message,
            origin=origin,
        )
        await self._submit(proof, decision)
        return json_response({"request_id": request_id}, status=202)

    async def interrupt(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        await self._submit(
            client_proof(request), Interrupt(session_id=session_id, origin=_SET_BY_STORAGE)
        )
        return json_response({"session_id": session_id}, status=202)

    async def stop(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        await self._submit(
            client_proof(request), StopSession(session_id=session_id, origin=_SET_BY_STORAGE)
        )
        return json_response({"session_id": session_id}, status=202)

    async def resume(self, request: Request) -> Response:
        await self._client(request)
        session = await self._session(request)
        if session.sandbox:
            features = await self.storage.environment_features(session.environment_id)
            _check_features(features, CreateSession(sandbox=True))
        # It resumes with the agent it ran: refused here, not by the daemon, when that one is
        # no longer allowed (or the daemon runs only its default, another one).
        if session.agent != session.environment_agent:
            await self._agent(session.environment_id, session.agent)
        resumed = await self.storage.resume_session(session.id)
        self.hub.notify(environment_key(session.environment_id))
        return json_response(self._info(resumed), status=202)

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document(self.config.url))
