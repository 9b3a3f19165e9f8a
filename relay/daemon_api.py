"""The daemon API under ``/daemon/v1`` (see :mod:`wire.protocol`).

Every route but ``pair`` takes ``Authorization: Bearer <environment credential>``; an
environment or session the credential did not register is 404, exactly like one that does
not exist.
"""

from __future__ import annotations

import attrs
import structlog
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wire import (
    PROTOCOL_VERSION,
    Ack,
    DecodeError,
    EventBatch,
    PairRequest,
    PairResponse,
    RegisterRequest,
    UplinkAck,
    encode,
)

from .auth import authenticate_daemon, hash_secret, new_environment_credential, normalize_pair_code
from .config import RelayConfig
from .errors import BadRequest, BodyTooLarge, NotFound, Unauthenticated
from .fanout import Hub, environment_key, session_key
from .httputil import UPLINK_BODY_LIMIT, decode_body, json_response, last_event_id
from .indexing import check_indexed_payloads
from .records import EnvironmentRecord
from .storage import Storage
from .streams import downlink_response

__all__ = ["MAX_EVENTS_PER_BATCH", "DaemonApi"]

log = structlog.get_logger("relay")

MAX_EVENTS_PER_BATCH = 1000
_SMALL_BODY_LIMIT = 64 * 1024


@attrs.define(eq=False)
class DaemonApi:
    storage: Storage
    hub: Hub
    config: RelayConfig

    def routes(self) -> list[Route]:
        env = "/daemon/v1/environments/{environment_id}"
        return [
            Route("/daemon/v1/pair", self.pair, methods=["POST"]),
            Route("/daemon/v1/register", self.register, methods=["POST"]),
            Route(env + "/downlink", self.downlink, methods=["GET"]),
            Route(env + "/ack", self.ack, methods=["POST"]),
            Route(env + "/goodbye", self.goodbye, methods=["POST"]),
            Route("/daemon/v1/sessions/{session_id}/events", self.events, methods=["POST"]),
        ]

    async def _environment(self, request: Request) -> EnvironmentRecord:
        credential_id = await authenticate_daemon(request, self.storage)
        environment_id = request.path_params["environment_id"]
        env = await self.storage.get_environment(environment_id)
        if env is None or env.credential_id != credential_id:
            raise NotFound(f"no environment {environment_id}")
        return env

    async def pair(self, request: Request) -> Response:
        body = await decode_body(request, PairRequest, _SMALL_BODY_LIMIT)
        credential = new_environment_credential()
        credential_id = await self.storage.redeem_pair_code(
            hash_secret(normalize_pair_code(body.code)), body.machine, hash_secret(credential)
        )
        if credential_id is None:
            raise Unauthenticated(
                "unknown, used or expired pair code; run 'rcd relay pair-code' for a new one",
                code="invalid_pair_code",
            )
        return json_response(encode(PairResponse(credential=credential)))

    async def register(self, request: Request) -> Response:
        credential_id = await authenticate_daemon(request, self.storage)
        body = await decode_body(request, RegisterRequest, _SMALL_BODY_LIMIT)
        if body.protocol != PROTOCOL_VERSION:
            raise BadRequest(
                "unsupported_protocol",
                f"this relay speaks protocol {PROTOCOL_VERSION}, the daemon {body.protocol}",
            )
        registration = await self.storage.register_environment(credential_id, body)
        return json_response(encode(registration))

    async def downlink(self, request: Request) -> Response:
        env = await self._environment(request)
        after = last_event_id(request) or 0
        return downlink_response(
            self.storage, self.hub, env.id, after, self.config.keepalive_interval
        )

    async def ack(self, request: Request) -> Response:
        env = await self._environment(request)
        body = await decode_body(request, Ack, _SMALL_BODY_LIMIT)
        await self.storage.acknowledge_directives(env.id, body.through)
        return Response(status_code=204)

    async def goodbye(self, request: Request) -> Response:
        env = await self._environment(request)
        ended = await self.storage.say_goodbye(env.id)
        # Ends a downlink still open (it is no longer current).
        self.hub.notify(environment_key(env.id))
        log.info("environment said goodbye", environment_id=env.id, ended_sessions=len(ended))
        return Response(status_code=204)

    async def events(self, request: Request) -> Response:
        credential_id = await authenticate_daemon(request, self.storage)
        session_id = request.path_params["session_id"]
        body = await decode_body(request, EventBatch, UPLINK_BODY_LIMIT)
        if len(body.events) > MAX_EVENTS_PER_BATCH:
            raise BodyTooLarge(
                f"a batch holds at most {MAX_EVENTS_PER_BATCH} events, got {len(body.events)}",
                code="too_many_events",
            )
        try:
            check_indexed_payloads(body.events)
        except DecodeError as exc:
            raise BadRequest("invalid_body", "; ".join(exc.problems)) from None
        acked = await self.storage.append_events(
            session_id, body.events, credential_id=credential_id
        )
        self.hub.notify(session_key(session_id))
        return json_response(encode(UplinkAck(acked=acked)))
