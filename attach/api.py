"""``rcd attach``'s side of the client API (``docs/api.md``): one session, one token, over
one injected ``httpx.AsyncClient``.

Errors: a network failure or time-out is :class:`~daemon.errors.RelayUnreachable` (worth
retrying); a 401 is :class:`TokenRejected` and a 404 ``not_found`` is :class:`NoSuchSession`
(both final); any other refusal is :class:`~daemon.errors.RelayRejected`.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import aclosing, suppress
from typing import Any, TypeVar
from urllib.parse import quote

import attrs
import httpx
import trio
from httpx_sse import SSEError, aconnect_sse

import wire
from daemon.errors import DaemonError, RelayRejected, RelayUnreachable
from daemon.transport import rejection, unreachable

__all__ = [
    "LogEntry",
    "NoSuchSession",
    "SessionApi",
    "TokenRejected",
    "call_relay",
    "parse_entry",
    "raise_for_relay_error",
]

T = TypeVar("T")

#: Most events one ``GET .../events`` returns (the relay's cap).
PAGE = 1000
#: Seconds to wait for a session's changes or a file's diff: longer than the relay waits for
#: the environment's daemon (30 s), so that what one sees is the relay's ``no_answer``.
CHANGES_WAIT = 40.0


class NoSuchSession(DaemonError):
    def __init__(self, session_id: str, relay: str) -> None:
        self.session_id = session_id
        self.relay = relay
        super().__init__(f"no session {session_id} on {relay}")


class TokenRejected(DaemonError):
    def __init__(self, relay: str) -> None:
        self.relay = relay
        super().__init__(f"the relay at {relay} refused the token: it is invalid or revoked")


@attrs.frozen(kw_only=True)
class LogEntry:
    """One event of the session log. ``payload`` is its typed data, or None for a kind
    this client does not know (a newer relay) or data that does not decode."""

    seq: int
    kind: str
    at: float
    data: dict[str, Any]
    payload: wire.EventData | None


def parse_entry(raw: str | bytes | dict[str, Any], fallback_seq: int | None = None) -> LogEntry:
    """Read one event as the relay sends it. Lenient on purpose: an event this client cannot
    decode is still shown (generically) and still advances ``seq``, so nothing gets stuck.

    Raises ``ValueError`` only when not even the ``seq`` can be found.
    """
    obj: Any = raw
    if not isinstance(raw, dict):
        try:
            obj = json.loads(raw)
        except ValueError:
            obj = None
    if not isinstance(obj, dict):
        obj = {}
    seq = obj.get("seq", fallback_seq)
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ValueError(f"an event without a valid seq: {raw!r:.200}")
    kind = obj.get("kind")
    at = obj.get("at")
    data = obj.get("data")
    payload: wire.EventData | None = None
    with suppress(wire.DecodeError, KeyError):
        payload = wire.decode_event_data(wire.decode(wire.Event, obj))
    return LogEntry(
        seq=seq,
        kind=kind if isinstance(kind, str) else "unknown",
        at=float(at) if isinstance(at, int | float) and not isinstance(at, bool) else 0.0,
        data=data if isinstance(data, dict) else {},
        payload=payload,
    )


def raise_for_relay_error(response: httpx.Response, relay: str) -> None:
    """Raise what a client API error answer means (its body must be read): a refused token,
    a relay that is down behind its proxy (5xx: worth retrying), or the relay's refusal."""
    error = rejection(response)
    if error is None:
        return
    if error.status == 401:
        raise TokenRejected(relay)
    if error.status >= 500:
        # A proxy in front of a relay that is down (502-504), or a relay bug: retry.
        raise RelayUnreachable(relay, f"HTTP {error.status} ({error.message})")
    raise error


async def call_relay(
    http: httpx.AsyncClient,
    relay: str,
    token: str,
    method: str,
    url: str,
    body: Any = None,
    within: float = 15.0,
    params: Mapping[str, str] | None = None,
) -> Any:
    """One call of the client API with a device token: the answer's JSON (None when empty);
    :class:`RelayUnreachable` when it failed on its way or took over ``within`` s, else what
    :func:`raise_for_relay_error` says of an error answer. ``params`` go in the query string,
    encoded (a file's path may hold any character)."""
    try:
        with trio.fail_after(within):
            response = await http.request(
                method,
                url,
                params=params,
                content=None if body is None else wire.encode_json(body),
                headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
                timeout=within,
            )
    except trio.TooSlowError:
        raise RelayUnreachable(relay, f"no answer within {within:g}s") from None
    except httpx.TransportError as exc:
        raise unreachable(relay, exc, _describe(exc)) from exc
    raise_for_relay_error(response, relay)
    return response.json() if response.content else None


@attrs.define(eq=False)
class SessionApi:
    """The calls ``rcd attach`` makes for ``session_id``. Every call is cancellable."""

    http: httpx.AsyncClient
    relay: str
    token: str
    session_id: str
    timeout: float = 15.0

    @property
    def _base(self) -> str:
        return f"{self.relay}/api/sessions/{self.session_id}"

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def _call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        within: float | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Any:
        try:
            return await call_relay(
                self.http,
                self.relay,
                self.token,
                method,
                self._base + path,
                body,
                within or self.timeout,
                params,
            )
        except RelayRejected as exc:
            if exc.status == 404 and exc.code == "not_found":
                raise NoSuchSession(self.session_id, self.relay) from None
            raise

    def _raise_for_error(self, response: httpx.Response) -> None:
        """Raise what an error answer means to ``rcd attach`` (its body must be read)."""
        error = rejection(response)
        if error is not None and error.status == 404 and error.code == "not_found":
            raise NoSuchSession(self.session_id, self.relay)
        raise_for_relay_error(response, self.relay)

    async def session(self) -> wire.SessionInfo:
        data = await self._call("GET", "")
        try:
            # Keys of a newer relay are not this client's business: read what it knows.
            known = {field.name for field in attrs.fields(wire.SessionInfo)}
            if isinstance(data, dict):
                data = {key: value for key, value in data.items() if key in known}
            return wire.decode(wire.SessionInfo, data)
        except wire.DecodeError as exc:
            raise RelayRejected(200, "bad_session", str(exc)) from None

    async def events_after(self, after: int) -> list[LogEntry]:
        """At most :data:`PAGE` events with ``seq > after``, in seq order."""
        data = await self._call("GET", f"/events?after={after}&limit={PAGE}")
        events = data.get("events") if isinstance(data, dict) else None
        if not isinstance(events, list):
            raise RelayRejected(200, "bad_events", "the relay sent no event list")
        return [parse_entry(e) for e in events if isinstance(e, dict)]

    async def stream(
        self, after: int, on_open: Callable[[], None] = lambda: None
    ) -> AsyncIterator[LogEntry | wire.AssistantPartial]:
        """Yield the events after ``after`` (the backlog first), then live ones, and the
        pieces of the reply being written (:mod:`wire.partial`) between them.

        Returns when the relay ends the stream; raises :class:`RelayUnreachable` when the
        connection fails or goes silent. ``on_open`` is called once the relay accepted it.
        """
        headers = {**self._headers(), "Last-Event-ID": str(after)}
        # Three keep-alives missed: the stream is dead even if TCP has not noticed (a laptop
        # that slept, a NAT that forgot us).
        timeout = httpx.Timeout(self.timeout, read=wire.STREAM_READ_TIMEOUT)
        try:
            async with aconnect_sse(
                self.http,
                "GET",
                self._base + "/events?partials=1",
                headers=headers,
                timeout=timeout,
            ) as source:
                if source.response.status_code >= 400:
                    await source.response.aread()
                    self._raise_for_error(source.response)
                on_open()
                async with aclosing(source.aiter_sse()) as messages:
                    async for message in messages:
                        if message.event == wire.PARTIAL_EVENT:
                            with suppress(wire.DecodeError):
                                yield wire.decode_json(wire.AssistantPartial, message.data)
                            continue
                        fallback = int(message.id) if message.id.isdigit() else None
                        yield parse_entry(message.data, fallback)
        except (httpx.TransportError, SSEError) as exc:
            raise unreachable(self.relay, exc, _describe(exc)) from exc

    async def post_message(self, message_id: str, text: str) -> None:
        await self._call("POST", "/messages", wire.PostMessage(id=message_id, text=text))

    async def decide(self, request_id: str, decision: wire.Decision, message: str | None) -> None:
        body = wire.PermissionDecision(decision=decision, message=message)
        await self._call("POST", f"/permissions/{request_id}", body)

    async def interrupt(self) -> None:
        await self._call("POST", "/interrupt")

    async def stop(self) -> None:
        await self._call("POST", "/stop")

    async def resume(self) -> None:
        await self._call("POST", "/resume")

    async def changes(self) -> wire.Changes:
        """The session's work against the commit it started from (its files, no content).

        The relay asks the environment's daemon: a refusal (``workspace_gone``,
        ``environment_offline``, ``no_answer``...) is :class:`RelayRejected`."""
        data = await self._call("GET", "/changes", within=max(self.timeout, CHANGES_WAIT))
        return _decoded(wire.Changes, data)

    async def file_diff(self, path: str) -> wire.FileDiff:
        """One changed file's hunks (or its summary, for a binary or large file); ``path`` is
        as :meth:`changes` lists it. A file not among the changes is ``not_changed``."""
        data = await self._call(
            "GET", "/changes", within=max(self.timeout, CHANGES_WAIT), params={"path": path}
        )
        return _decoded(wire.FileDiff, data)

    async def grants(self, environment_id: str) -> wire.Grants:
        """The approval grants in force in the session's environment (every session's)."""
        data = await self._call_env("GET", environment_id, "/grants")
        return _decoded(wire.Grants, data)

    async def revoke_grant(self, environment_id: str, grant_id: str) -> None:
        """Revoke a grant (``unknown_grant`` when none is in force by that id)."""
        await self._call_env("DELETE", environment_id, f"/grants/{quote(grant_id, safe='')}")

    async def _call_env(self, method: str, environment_id: str, path: str) -> Any:
        url = f"{self.relay}/api/environments/{quote(environment_id, safe='')}{path}"
        return await call_relay(self.http, self.relay, self.token, method, url, None, self.timeout)


def _decoded(cls: type[T], data: Any) -> T:
    try:
        return wire.decode(cls, data)
    except wire.DecodeError as exc:
        raise RelayRejected(200, "bad_answer", f"the relay's answer does not read: {exc}") from None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
