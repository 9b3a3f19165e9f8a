"""What wakes a phone: the events that notify, made into Web Push notifications.

The hub hands every stored batch of events to :meth:`Notifier.offer` (never blocking the
append); a task of the relay's turns the few that notify — a permission request, a long
turn ended, an error, a session that ended by itself — into one notification each, sent to
every subscription whose device is still signed in and whose settings want it. A session
has one notification on a device (its ``tag``), replaced as things happen, not stacked;
the push service is told the same (``Topic``), so an undelivered one is replaced there too.
A subscription its push service calls gone (404, 410) is forgotten.

An environment whose link closes notifies (those who asked) only if it is still offline
after the relay's grace: a daemon renewing its link or restarting wakes nobody.

The payload carries no more than the notification shows: the session's title, the tool
and a short summary of its input, never the conversation; a permission's carries, for its
Allow and Deny, a token good for that one request from that device for an hour, never the
device's own credential.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Any

import attrs
import structlog
import trio

from common.agent_env import agent_environment
from wire import Event, PushSettings

from .push import PushOutcome, PushSender
from .records import PushSubscriptionRecord
from .storage import Storage
from .tokens import AnswerTokens

__all__ = ["Note", "Notifier"]

log = structlog.get_logger("relay.notify")

#: Batches waiting for the notifier at most; past it, the oldest are dropped (a phone woken
#: late is worth less than an append that never waits).
BACKLOG = 256
#: Pushes in flight at once.
CONCURRENT_PUSHES = 8
#: Seconds ``--notify-command`` may run for one notification before it is stopped.
COMMAND_TIMEOUT = 30.0
#: The longest summary of a tool's input carried (a push holds about 4 KB).
SUMMARY_LENGTH = 160
#: The longest session title carried.
TITLE_LENGTH = 100
#: Seconds the push service keeps an undelivered notification, by what it is about.
_TTL = {
    "permission": 3600,
    "long_turn": 6 * 3600,
    "error": 6 * 3600,
    "session_ended": 86400,
    "offline": 86400,
}
#: Endings asked for by somebody: nothing to tell.
_EXPECTED_ENDINGS = frozenset({"stopped", "daemon_stopped"})
_SHORTEST_LONG_TURN_MS = 10_000
#: What ``--notify-command`` is run for: the defaults, and a machine offline.
_COMMAND_SETTINGS = PushSettings(offline=True)


@attrs.frozen(kw_only=True)
class Note:
    """One notification: ``kind`` names the setting that lets it through; ``tag`` what it
    replaces on the device (the session's, or the environment's, earlier one)."""

    kind: str
    tag: str
    title: str
    body: str
    url: str
    session_id: str | None = None
    #: For a long turn: its length, checked against each device's threshold.
    duration_ms: int = 0
    request: dict[str, str] | None = None

    def wanted_by(self, settings: PushSettings) -> bool:
        if not getattr(settings, self.kind):
            return False
        return self.kind != "long_turn" or self.duration_ms >= settings.long_turn_seconds * 1000

    def payload(self, answer_token: str | None = None) -> bytes:
        """The JSON a device gets; ``answer_token`` lets its Allow and Deny answer this one
        request (a permission's push only)."""
        body: dict[str, Any] = {
            "kind": self.kind,
            "tag": self.tag,
            "title": self.title,
            "body": self.body,
            "url": self.url,
        }
        if self.session_id is not None:
            body["session_id"] = self.session_id
        if self.request is not None:
            body["request"] = self.request
            if answer_token is not None:
                body["request"] = self.request | {"answer_token": answer_token}
        return json.dumps(body, ensure_ascii=False).encode()

    @property
    def topic(self) -> str:
        # At most 32 base64url characters (RFC 8030): one per tag.
        return hashlib.sha256(self.tag.encode()).hexdigest()[:32]


def summary(tool: str, data: object) -> str:
    """A tool's input in one short line: its command, file or pattern, else its JSON."""
    if not isinstance(data, dict):
        return _text(json.dumps(data, ensure_ascii=False), "")
    for key in ("command", "file_path", "path", "pattern", "url", "description"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return _text(value, "")
    return _text(json.dumps(data, ensure_ascii=False, sort_keys=True), "")


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def _worth_a_look(event: Event) -> bool:
    """Whether the event may notify at all (cheap, on the append's path; ``data`` is the
    agent's and the daemon's to fill, so nothing in it is trusted to be well formed)."""
    if event.kind == "turn_result":
        duration = event.data.get("duration_ms")
        return isinstance(duration, int | float) and duration >= _SHORTEST_LONG_TURN_MS
    if event.kind == "session_ended":
        return event.data.get("reason") not in _EXPECTED_ENDINGS
    return event.kind in ("permission_request", "error")


def _tail(file: Any, limit: int = 500) -> str:
    file.seek(max(0, file.seek(0, os.SEEK_END) - limit))
    return str(file.read().decode(errors="replace"))


async def _kill_group(process: trio.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


def _request_id(value: object) -> str:
    """A permission request's id as it must be answered (exactly, or not at all)."""
    return value if isinstance(value, str) else ""


def _text(value: object, default: str, limit: int = SUMMARY_LENGTH) -> str:
    """A field of an event's data as one short line of text."""
    text = " ".join(value.split()) if isinstance(value, str) and value.strip() else default
    return text if len(text) <= limit else text[: limit - 1] + "…"


@attrs.frozen
class _Offline:
    """An environment's link closed: a task is to wait out its grace (see ``offline``)."""

    environment_id: str


_Item = tuple[str, list[Event]] | _Offline


@attrs.define(eq=False)
class Notifier:
    """Turns stored events into pushes (see the module docstring); :meth:`run` sends."""

    storage: Storage
    sender: PushSender
    #: Seconds an environment must stay offline before it notifies.
    offline_grace: float = 30.0
    #: Run for every note, with it as JSON on stdin (``--notify-command``); links in it
    #: are made absolute with ``base_url``.
    command: tuple[str, ...] = ()
    base_url: str = ""
    #: Mints the answer tokens of permission notifications (the client API checks them).
    answers: AnswerTokens = attrs.Factory(AnswerTokens)
    _send: trio.MemorySendChannel[_Item] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[_Item] = attrs.field(init=False)
    _commands: trio.MemorySendChannel[Note] = attrs.field(init=False)
    _commands_out: trio.MemoryReceiveChannel[Note] = attrs.field(init=False)
    #: Pushes the push services took, and notifications lost to a full backlog.
    sent: int = 0
    dropped: int = 0
    #: Environments whose link closed, and when the grace of their last closing ends;
    #: one task per environment waits for it (set here as each closing happens, so a
    #: closing never waits behind other work to move it).
    _offline_until: dict[str, float] = attrs.Factory(dict)

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel(BACKLOG)
        self._commands, self._commands_out = trio.open_memory_channel[Note](BACKLOG)

    def offer(self, session_id: str, events: Sequence[Event]) -> None:
        """Events just stored for a session (called by the hub; never blocks)."""
        wanted = [e for e in events if _worth_a_look(e)]
        if not wanted:
            return
        self._offer((session_id, wanted), len(wanted))

    def offline(self, environment_id: str) -> None:
        """An environment's link closed (called by the hub; never blocks)."""
        waiting = environment_id in self._offline_until
        self._offline_until[environment_id] = trio.current_time() + self.offline_grace
        if not waiting:
            self._offer(_Offline(environment_id), 1)

    def _offer(self, item: _Item, count: int) -> None:
        try:
            self._send.send_nowait(item)
        except trio.WouldBlock:
            # The oldest waiting go: a phone wants what happens now.
            oldest = self._receive.receive_nowait()
            if isinstance(oldest, _Offline):
                self.dropped += 1
                # No task will wait for it: the next closing asks for one again.
                self._offline_until.pop(oldest.environment_id, None)
            else:
                self.dropped += len(oldest[1])
            log.warning("notifications_dropped", dropped=self.dropped)
            self._send.send_nowait(item)

    async def run(self) -> None:
        """Send what is offered, until cancelled."""
        limit = trio.CapacityLimiter(CONCURRENT_PUSHES)
        async with trio.open_nursery() as later:
            if self.command:
                later.start_soon(self._run_commands)
            async for item in self._receive:
                try:
                    if isinstance(item, _Offline):
                        later.start_soon(self._offline_later, item.environment_id, limit)
                        continue
                    session_id, events = item
                    for event in events:
                        note = await self._note(session_id, event)
                        if note is not None:
                            await self._send_note(note, limit)
                except Exception:  # a notification lost, never the relay
                    log.exception("notification_failed")

    async def _send_note(self, note: Note, limit: trio.CapacityLimiter) -> None:
        # One note's pushes all answered before the next's: a device gets a session's
        # notifications in order (the newest is the one it keeps).
        if self.command and note.wanted_by(_COMMAND_SETTINGS):
            try:  # its own queue: a slow command never holds a push back
                self._commands.send_nowait(note)
            except trio.WouldBlock:
                self.dropped += 1
                log.warning("notify_command_backlog_full")
        async with trio.open_nursery() as nursery:
            for subscription in await self.storage.live_push_subscriptions():
                if note.wanted_by(subscription.settings):
                    nursery.start_soon(self._push, subscription, note, limit)

    async def _run_commands(self) -> None:
        async for note in self._commands_out:
            await self._run_command(note)

    async def _run_command(self, note: Note) -> None:
        """The ``--notify-command``, given the note (never fatal: a failure is logged)."""
        body = json.loads(note.payload()) | {"url": self.base_url + note.url}
        with tempfile.TemporaryFile() as errors, trio.move_on_after(COMMAND_TIMEOUT) as waited:
            try:
                # Only its exit is waited for (a child it leaves behind holds no pipe of
                # ours); it gets the environment an agent would, never rcd's own secrets.
                done = await trio.run_process(
                    list(self.command),
                    stdin=json.dumps(body, ensure_ascii=False).encode() + b"\n",
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                    env=agent_environment(os.environ),
                    check=False,
                    # Its own process group: stopped (past its time, or with the relay),
                    # everything it started goes with it.
                    start_new_session=True,
                    deliver_cancel=_kill_group,
                )
            except OSError as exc:
                log.warning("notify_command_failed", command=self.command[0], error=str(exc))
                return
            if done.returncode != 0:
                log.warning(
                    "notify_command_failed",
                    command=self.command[0],
                    status=done.returncode,
                    stderr=_tail(errors),
                )
        if waited.cancelled_caught:
            log.warning("notify_command_timed_out", command=self.command[0], after=COMMAND_TIMEOUT)

    async def _offline_later(self, environment_id: str, limit: trio.CapacityLimiter) -> None:
        """Notify once the environment's last closing is ``offline_grace`` old, if it is
        offline then: one task per environment, however often its link closes meanwhile
        (each closing moves the end of the wait, see :meth:`offline`)."""
        try:
            # Not a poll: each turn sleeps to the end of the last closing's grace.
            while trio.current_time() < (until := self._offline_until[environment_id]):  # noqa: ASYNC110
                await trio.sleep_until(until)
        finally:
            del self._offline_until[environment_id]  # the next closing starts a new wait
        try:
            env = await self.storage.get_environment(environment_id)
            if env is None or env.online:
                return
            note = Note(
                kind="offline",
                tag=f"environment-{environment_id}",
                title=_text(env.name, "A machine", TITLE_LENGTH) + " is offline",
                body=f"on {env.machine_name}: its daemon stopped or lost the network",
                url="/",
            )
            await self._send_note(note, limit)
        except Exception:
            log.exception("notification_failed", environment_id=environment_id)

    async def _note(self, session_id: str, event: Event) -> Note | None:
        session = await self.storage.get_session(session_id)
        if session is None:
            return None
        name = _text(session.title, "A session", TITLE_LENGTH)
        data = event.data
        tag, url = f"session-{session_id}", f"/?session={session_id}"
        if event.kind == "permission_request":
            tool = _text(data.get("tool"), "a tool", 60)
            text = summary(tool, data.get("input"))
            return Note(
                kind="permission",
                session_id=session_id,
                tag=tag,
                url=url,
                title=f"{name}: allow {tool}?",
                body=text,
                request={
                    "id": request_id
                    if isinstance(request_id := data.get("request_id"), str)
                    else "",
                    "tool": tool,
                    "summary": text,
                },
            )
        if event.kind == "turn_result":
            ms = int(data.get("duration_ms") or 0)
            done = "done" if data.get("ok") else "stopped with an error"
            return Note(
                kind="long_turn",
                session_id=session_id,
                tag=tag,
                url=url,
                title=f"{name}: turn {done}",
                body=f"after {_duration(ms / 1000)}",
                duration_ms=ms,
            )
        if event.kind == "error":
            return Note(
                kind="error",
                session_id=session_id,
                tag=tag,
                url=url,
                title=f"{name}: error",
                body=_text(data.get("message"), "something went wrong"),
            )
        return Note(
            kind="session_ended",
            session_id=session_id,
            tag=tag,
            url=url,
            title=f"{name}: ended",
            body=_text(data.get("reason"), "ended").replace("_", " "),
        )

    async def _push(
        self, subscription: PushSubscriptionRecord, note: Note, limit: trio.CapacityLimiter
    ) -> None:
        try:
            await self._push_one(subscription, note, limit)
        except Exception:  # this device's push lost, never the others'
            log.exception("push_failed", subscription=subscription.id)

    async def _push_one(
        self, subscription: PushSubscriptionRecord, note: Note, limit: trio.CapacityLimiter
    ) -> None:
        token = None
        if note.request is not None and note.session_id is not None:
            token = self.answers.issue(subscription.id, note.session_id, note.request["id"])
        async with limit:
            outcome = await self.sender.send(
                subscription,
                note.payload(token),
                ttl=_TTL[note.kind],
                topic=note.topic,
                urgency="high" if note.kind == "permission" else "normal",
            )
        if outcome is PushOutcome.GONE:
            await self.storage.drop_push_subscription(subscription.id)
        elif outcome is PushOutcome.SENT:
            self.sent += 1
            await self.storage.push_sent(subscription.endpoint)
