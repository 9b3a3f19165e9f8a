"""The daemon API under ``/daemon/v1`` (see :mod:`wire.protocol`).

Credentials (:mod:`relay.auth`, :mod:`relay.tokens`):

* ``pair``: none (the one-time pair code is in the body; failures are rate-limited);
* ``register`` and ``tokens``: the long-lived environment credential;
* ``downlink``, ``ack``, ``goodbye``: the environment's *link* access token;
* ``sessions/{id}/events``: that session's *session* access token;
* ``uplink`` (several sessions at once): the link token, and each session's part carries
  that session's token.

An environment or session the credential did not register is 404, exactly like one that
does not exist; a token minted for another purpose, environment or session is 403.
"""

from __future__ import annotations

import re
from contextlib import aclosing

import attrs
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import wire
from wire import (
    PROTOCOL_VERSION,
    UPLINK_FRAMES_TYPE,
    UPLINK_STREAM_HEADER,
    AccessToken,
    Ack,
    DecodeError,
    Event,
    EventBatch,
    PairRequest,
    PairResponse,
    RegisterRequest,
    SessionAck,
    TokenRequest,
    UplinkAck,
    UplinkFrameAck,
    UplinkFrames,
    UplinkRequest,
    UplinkResponse,
    encode,
)

from .auth import (
    authenticate_access,
    authenticate_daemon,
    daemon_credential_hash,
    hash_secret,
    new_environment_credential,
    normalize_pair_code,
)
from .config import RelayConfig
from .errors import (
    ApiError,
    BadRequest,
    BodyTooLarge,
    CredentialRevoked,
    Forbidden,
    Unauthenticated,
)
from .fanout import Hub, environment_key, settings_key
from .httputil import (
    UPLINK_BODY_LIMIT,
    client_address,
    decode_body,
    decode_bytes,
    http_status,
    json_response,
    last_event_id,
    read_line_groups,
)
from .indexing import check_indexed_payloads
from .ratelimit import AttemptLimiter, limit_key
from .records import Appended, EnvironmentRecord, owned_environment
from .storage import Storage
from .streams import downlink_response
from .tokens import AccessClaims, TokenIssuer, TokenKind

__all__ = ["MAX_EVENTS_PER_BATCH", "MAX_FRAMES", "DaemonApi"]

log = structlog.get_logger("relay")

#: Events in one batch, and batches in one uplink request sent as frames (the protocol's).
MAX_EVENTS_PER_BATCH = wire.MAX_EVENTS_PER_BATCH
MAX_FRAMES = wire.MAX_FRAMES
_SMALL_BODY_LIMIT = 64 * 1024
#: A daemon's settings (variable names, tool rules, the newest changes).
_SETTINGS_BODY_LIMIT = 1024 * 1024
#: A pair request (a code and a machine name) is the one body read without a credential.
_PAIR_BODY_LIMIT = 4 * 1024


_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _check_size(body: UplinkRequest) -> UplinkRequest:
    total = sum(len(part.events) for part in body.sessions)
    if total > MAX_EVENTS_PER_BATCH:
        raise BodyTooLarge(
            f"a batch holds at most {MAX_EVENTS_PER_BATCH} events, got {total}",
            code="too_many_events",
        )
    return body


def _uplink_stream(request: Request) -> str | None:
    """The request's :data:`~wire.UPLINK_STREAM_HEADER` (each frame is then answered on the
    environment's downlink too), or None; :class:`BadRequest` for a malformed one."""
    name = request.headers.get(UPLINK_STREAM_HEADER)
    if name is None:
        return None
    if not _STREAM_NAME.fullmatch(name):
        raise BadRequest(
            "invalid_header",
            f"{UPLINK_STREAM_HEADER} must be 1 to 64 of A-Z a-z 0-9 _ -, got {name[:80]!r}",
        )
    return name


@attrs.define(eq=False)
class DaemonApi:
    storage: Storage
    hub: Hub
    config: RelayConfig
    tokens: TokenIssuer = attrs.Factory(TokenIssuer)
    #: Failed pairings per address.
    attempts: AttemptLimiter = attrs.Factory(lambda: AttemptLimiter("pairing"))

    @property
    def _deadline(self) -> float:
        return self.config.body_deadline

    def routes(self) -> list[Route]:
        env = "/daemon/v1/environments/{environment_id}"
        return [
            Route("/daemon/v1/pair", self.pair, methods=["POST"]),
            Route("/daemon/v1/register", self.register, methods=["POST"]),
            Route(env + "/tokens", self.mint_token, methods=["POST"]),
            Route(env + "/downlink", self.downlink, methods=["GET"]),
            Route(env + "/ack", self.ack, methods=["POST"]),
            Route(env + "/goodbye", self.goodbye, methods=["POST"]),
            Route(env + "/settings", self.settings, methods=["POST"]),
            Route(env + "/uplink", self.uplink, methods=["POST"]),
            Route("/daemon/v1/sessions/{session_id}/events", self.events, methods=["POST"]),
        ]

    async def _owned_environment(
        self, environment_id: str, credential_id: str
    ) -> EnvironmentRecord:
        env = await self.storage.get_environment(environment_id)
        return owned_environment(env, environment_id, credential_id)

    async def _link(self, request: Request) -> tuple[AccessClaims, EnvironmentRecord]:
        """The link token's claims and its (unrevoked) environment."""
        environment_id = request.path_params["environment_id"]
        claims = authenticate_access(request, self.tokens, "link", environment_id=environment_id)
        return claims, await self._owned_environment(environment_id, claims.credential_id)

    async def pair(self, request: Request) -> Response:
        caller = limit_key(client_address(request, self.config.trusted_proxies))
        self.attempts.check(caller)  # refused before its body is read
        body = await decode_body(request, PairRequest, _PAIR_BODY_LIMIT, self._deadline)
        # Counted as a failure from here (no await between the check and the count), and
        # taken back only once the code proved right.
        attempt = self.attempts.begin(caller)
        credential = new_environment_credential()
        credential_id = await self.storage.redeem_pair_code(
            hash_secret(normalize_pair_code(body.code)), body.machine, hash_secret(credential)
        )
        if credential_id is None:
            raise Unauthenticated(
                "unknown, used or expired pair code; run 'rcd relay pair-code' for a new one",
                code="invalid_pair_code",
            )
        attempt.succeeded()
        return json_response(encode(PairResponse(credential=credential)))

    async def register(self, request: Request) -> Response:
        credential_id = await authenticate_daemon(request, self.storage)
        body = await decode_body(request, RegisterRequest, _SMALL_BODY_LIMIT, self._deadline)
        if body.protocol != PROTOCOL_VERSION:
            raise BadRequest(
                "unsupported_protocol",
                f"this relay speaks protocol {PROTOCOL_VERSION}, the daemon {body.protocol}",
            )
        limit = self.config.max_sessions_per_environment
        if body.capacity > limit:
            raise BadRequest(
                "capacity_too_large",
                f"capacity {body.capacity} is over this relay's limit of {limit} sessions"
                " per environment",
            )
        registration = await self.storage.register_environment(credential_id, body)
        said = request.headers.get(wire.FEATURES_HEADER, "")
        features = [f.strip() for f in said.split(",") if f.strip()]
        await self.storage.save_features(registration.environment_id, features)
        response = json_response(encode(registration))
        response.headers[wire.FEATURES_HEADER] = "partials, settings, grants, agents"
        return response

    async def mint_token(self, request: Request) -> Response:
        """A link token, or with ``session_id`` the uplink token of one of its sessions."""
        environment_id = request.path_params["environment_id"]
        # The credential is checked before the body is read (401 at once, body unread);
        # then one storage call checks it again with the environment and the session.
        credential_hash = daemon_credential_hash(request)
        if await self.storage.authenticate_environment_credential(credential_hash) is None:
            raise CredentialRevoked()
        body = await decode_body(request, TokenRequest, _SMALL_BODY_LIMIT, self._deadline)
        session_id = body.session_id
        credential_id = await self.storage.authorize_token(
            credential_hash, environment_id, session_id
        )
        kind: TokenKind = "link" if session_id is None else "session"
        token, _ = self.tokens.issue(kind, credential_id, environment_id, session_id)
        return json_response(encode(AccessToken(token=token, expires_in=self.tokens.ttl)))

    async def downlink(self, request: Request) -> Response:
        claims, env = await self._link(request)
        after = last_event_id(request) or 0

        async def still_allowed() -> bool:
            # Asked at every keep-alive: the stream ends when its token expires or its
            # credential is revoked, and the daemon reconnects with a fresh token.
            if self.tokens.clock() >= claims.expires_at:
                return False
            current = await self.storage.get_environment(env.id)
            return current is not None and current.credential_id == claims.credential_id

        return downlink_response(
            self.storage,
            self.hub,
            env.id,
            after,
            self.config.keepalive_interval,
            still_allowed,
        )

    async def ack(self, request: Request) -> Response:
        _, env = await self._link(request)
        body = await decode_body(request, Ack, _SMALL_BODY_LIMIT, self._deadline)
        await self.storage.acknowledge_directives(env.id, body.through)
        return Response(status_code=204)

    async def settings(self, request: Request) -> Response:
        """The settings the daemon applies (at its start, and after each change)."""
        _, env = await self._link(request)
        body = await decode_body(request, wire.SettingsView, _SETTINGS_BODY_LIMIT, self._deadline)
        await self.storage.save_settings(env.id, body)
        self.hub.notify(settings_key(env.id))
        return Response(status_code=204)

    async def goodbye(self, request: Request) -> Response:
        _, env = await self._link(request)
        ended = await self.storage.say_goodbye(env.id)
        # Ends a downlink still open (it is no longer current).
        self.hub.notify(environment_key(env.id))
        log.info("environment said goodbye", environment_id=env.id, ended_sessions=len(ended))
        return Response(status_code=204)

    async def uplink(self, request: Request) -> Response:
        """Events of several sessions (and an ack of directives) in one request and one
        transaction; or, as :data:`~wire.UPLINK_FRAMES_TYPE`, several such batches, one
        per line, each stored as it arrives (the frames that arrive together in one
        transaction). The link token is checked before the body is read: a daemon may open
        the request before its batch exists."""
        claims, env = await self._link(request)
        content_type = request.headers.get("content-type", "")
        if content_type.split(";")[0].strip() != UPLINK_FRAMES_TYPE:
            body = await decode_body(
                request, UplinkRequest, UPLINK_BODY_LIMIT, self.config.uplink_deadline
            )
            _check_size(body)
            [answer] = await self._store(claims, env, [body])
            return json_response(encode(answer))
        stream = _uplink_stream(request)
        answers: list[UplinkResponse] = []
        async with aclosing(
            read_line_groups(request, UPLINK_BODY_LIMIT, self.config.uplink_deadline)
        ) as groups:
            async for group in groups:
                # The frames before a refused one are stored (the daemon resends the rest).
                frames: list[UplinkRequest] = []
                refused: ApiError | None = None
                for line in group:
                    try:
                        if len(answers) + len(frames) == MAX_FRAMES:
                            raise BodyTooLarge(
                                f"an uplink request holds at most {MAX_FRAMES} frames",
                                code="too_many_frames",
                            )
                        frames.append(_check_size(decode_bytes(line, UplinkRequest)))
                    except ApiError as exc:
                        refused = exc
                        break
                for frame, answer in zip(
                    frames, await self._store(claims, env, frames), strict=True
                ):
                    if stream is not None and (frame.sessions or frame.ack is not None):
                        ack = UplinkFrameAck(stream=stream, frame=len(answers), answer=answer)
                        self.hub.publish_uplink_ack(env.id, ack)
                    answers.append(answer)
                if refused is not None:
                    raise refused
        return json_response(encode(UplinkFrames(frames=answers)))

    async def _store(
        self, claims: AccessClaims, env: EnvironmentRecord, frames: list[UplinkRequest]
    ) -> list[UplinkResponse]:
        """Store ``frames`` (batches, in order) in one storage call, then hand what each
        stored to the sessions' streams, frame by frame; each frame's answer."""
        if not frames:
            return []
        outcomes: list[list[ApiError | None]] = []
        accepted: list[tuple[str, list[Event]]] = []
        for body in frames:
            outcomes.append([])
            for part in body.sessions:
                try:
                    self._check_session_token(claims, env, part.session_id, part.token)
                    check_indexed_payloads(part.events)
                except DecodeError as exc:
                    outcomes[-1].append(BadRequest("invalid_body", "; ".join(exc.problems)))
                except ApiError as exc:
                    outcomes[-1].append(exc)
                else:
                    outcomes[-1].append(None)
                    accepted.append((part.session_id, part.events))
        # Directives are acknowledged cumulatively: the highest of the frames' acks.
        through = max((body.ack for body in frames if body.ack is not None), default=None)
        ack = None if through is None else (env.id, through)
        stored = iter(
            await self.storage.append_many(accepted, credential_id=claims.credential_id, ack=ack)
            if accepted or ack
            else []
        )
        answers = []
        for body, frame_outcomes in zip(frames, outcomes, strict=True):
            acks = []
            for part, outcome in zip(body.sessions, frame_outcomes, strict=True):
                result = next(stored) if outcome is None else outcome
                if isinstance(result, ApiError):
                    acks.append(
                        SessionAck(
                            session_id=part.session_id,
                            status=http_status(result),
                            code=result.code,
                            message=result.message,
                        )
                    )
                else:
                    self._published(part.session_id, part.events, result)
                    acks.append(SessionAck(session_id=part.session_id, acked=result.acked))
            # After the events: a partial the same frame's events made old shows nothing.
            self._hand_partials(claims, env, body)
            answers.append(UplinkResponse(sessions=acks))
        return answers

    def _check_session_token(
        self, claims: AccessClaims, env: EnvironmentRecord, session_id: str, token: str
    ) -> None:
        """A session's part of an uplink request carries that session's token, minted for
        the environment and credential of the request's own link token."""
        session = self.tokens.verify(token)
        if (
            session.kind != "session"
            or session.session_id != session_id
            or session.environment_id != env.id
            or session.credential_id != claims.credential_id
        ):
            raise Forbidden("wrong_scope", "this token is not for this session")

    def _hand_partials(
        self, claims: AccessClaims, env: EnvironmentRecord, body: UplinkRequest
    ) -> None:
        """Replies being written go to the sessions' open streams, never to storage; one
        with a token that is not its session's is dropped (logged: nothing answers them)."""
        for item in body.partials:
            try:
                self._check_session_token(claims, env, item.session_id, item.token)
            except ApiError as exc:
                log.info("partial refused", session_id=item.session_id, code=exc.code)
                continue
            self.hub.publish_partial(item.session_id, item.partial)

    def _published(self, session_id: str, events: list[Event], stored: Appended) -> None:
        """Hand what an append stored to the session's live streams."""
        new = sorted(
            (e for e in events if stored.first_new <= e.seq <= stored.acked), key=lambda e: e.seq
        )
        self.hub.publish_events(session_id, new)

    async def events(self, request: Request) -> Response:
        session_id = request.path_params["session_id"]
        claims = authenticate_access(request, self.tokens, "session", session_id=session_id)
        body = await decode_body(
            request, EventBatch, UPLINK_BODY_LIMIT, self.config.uplink_deadline
        )
        if len(body.events) > MAX_EVENTS_PER_BATCH:
            raise BodyTooLarge(
                f"a batch holds at most {MAX_EVENTS_PER_BATCH} events, got {len(body.events)}",
                code="too_many_events",
            )
        try:
            check_indexed_payloads(body.events)
        except DecodeError as exc:
            raise BadRequest("invalid_body", "; ".join(exc.problems)) from None
        [stored] = await self.storage.append_many(
            [(session_id, body.events)], credential_id=claims.credential_id
        )
        if isinstance(stored, ApiError):
            raise stored
        self._published(session_id, body.events, stored)
        return json_response(encode(UplinkAck(acked=stored.acked)))
