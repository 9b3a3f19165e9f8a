"""``rcd attach SESSION_ID``: a terminal client of one session.

It shows the session's header, its whole history, then live events from the relay's SSE
stream, resuming with ``Last-Event-ID`` after a drop (events at or below the last seq shown
are dropped, so none is printed twice). Everything shown comes from the event log, so any
number of clients on one session stay in sync: a message typed here appears when the
session echoes it. Parts: :mod:`.auth` (relay and token), :mod:`.api` (HTTP),
:mod:`.state` (what the log says), :mod:`.render` (lines), :mod:`.diffview` (``/diff``),
:mod:`.term` (prompt line and keys).

The command itself (options, terminal set-up) is :mod:`.command`.
"""

from __future__ import annotations

import math
import signal
import uuid
from collections.abc import Awaitable, Callable
from typing import TypeVar

import attrs
import trio

import wire
from common.backoff import equal_jitter
from daemon.errors import CertificateRejected, DaemonError, RelayRejected, RelayUnreachable

from .api import PAGE, LogEntry, NoSuchSession, SessionApi, TokenRejected
from .diffview import diff_lines
from .grants import grant_lines, revoke_lines
from .parser import KEYS_HELP
from .render import Style, clean, render_entry, render_header, writing_preview
from .state import Gap, SessionView
from .term import Console, CtrlC, EndOfInput, Submit, keys

__all__ = ["Attach"]

T = TypeVar("T")

#: Two Ctrl-C within this many seconds leave.
DOUBLE_CTRL_C = 2.0
#: On leaving, messages and answers still being posted get this long to reach the relay.
DRAIN_TIMEOUT = 5.0
#: The first retry waits 0.25-0.5 s, each next one up to twice as long (up to the cap).
BACKOFF_BASE = 0.25


@attrs.define(eq=False)
class Attach:
    """One attached terminal. :meth:`run` returns the exit status, or raises
    :class:`NoSuchSession`, :class:`TokenRejected` or another ``DaemonError`` that makes
    retrying pointless."""

    api: SessionApi
    console: Console
    style: Style
    input_fd: int = 0
    backoff_cap: float = 10.0
    #: Read messages and keys from ``input_fd`` (off for ``rcd run --attach`` off a terminal).
    read_input: bool = True
    #: Leave once the first turn shown live has ended (0 if it went well, else 1), or the
    #: session has: ``rcd run --attach`` off a terminal.
    leave_after_turn: bool = False
    view: SessionView = attrs.Factory(SessionView)
    connected: bool = False
    _live: bool = False
    _announced: str | None = None
    _quit: trio.Event = attrs.Factory(trio.Event)
    _history_shown: trio.Event = attrs.Factory(trio.Event)
    _exit_code: int = 0
    _error: DaemonError | None = None
    _last_ctrl_c: float = -math.inf
    _posts: int = 0
    _posts_done: trio.Event = attrs.Factory(trio.Event)
    _nursery: trio.Nursery | None = None

    async def run(self) -> int:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._watch_signals)
            nursery.start_soon(self._follow_or_fail)
            if self.read_input:
                nursery.start_soon(self._read_input)
            await self._quit.wait()
            if self._posts and self._error is None:
                with trio.move_on_after(DRAIN_TIMEOUT):
                    await self._posts_done.wait()
                if self._posts:
                    self._say(self.style.red(f"leaving with {self._posts} input(s) not sent"))
            nursery.cancel_scope.cancel()
        if self._error is not None:
            raise self._error
        return self._exit_code

    def _leave(self, code: int) -> None:
        if not self._quit.is_set():
            self._exit_code = code
            self._quit.set()

    def _say(self, *lines: str) -> None:
        self.console.print(lines)

    # -- the log --------------------------------------------------------------------

    async def _follow_or_fail(self) -> None:
        try:
            await self._follow()
        except DaemonError as exc:
            # Final (unknown session, refused token, a refusal that retrying cannot fix).
            self._error = exc
            self._quit.set()

    async def _follow(self) -> None:
        info = await self._retrying(self.api.session)
        self.view.state = info.state
        self.connected = True
        self.console.print(render_header(info, self.api.relay, self.style))
        # The history as JSON pages, then the stream from the last event shown. A gap in a
        # page (never expected) just ends the history early: the stream fills it.
        while True:
            page = await self._retrying(lambda: self.api.events_after(self.view.last_seq))
            try:
                for entry in page:
                    self._show(entry)
            except Gap:
                break
            if len(page) < PAGE:
                break
        self._say(self.style.dim(f"── {self.view.last_seq} events so far; live from here ──"))
        self._live = True
        self._history_shown.set()
        self._refresh()
        attempt = 0

        def opened() -> None:
            nonlocal attempt
            if not self.connected:
                self._say(self.style.green("reconnected"))
            self.connected, attempt = True, 0
            self._refresh()

        while True:
            try:
                async for item in self.api.stream(self.view.last_seq, on_open=opened):
                    if not isinstance(item, wire.AssistantPartial):
                        self._show(item)
                    elif self.view.partial(item):
                        self._refresh()
                detail = "the relay ended the stream"
            except RelayUnreachable as exc:
                detail = exc.detail
            except (Gap, RelayRejected) as exc:
                detail = str(exc)
            self.connected = False
            attempt += 1
            delay = self._backoff(attempt)
            self._say(self.style.yellow(f"reconnecting… ({detail}); next try in {delay:.1f}s"))
            self._refresh()
            await trio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return equal_jitter(attempt, base=BACKOFF_BASE, cap=self.backoff_cap)

    async def _retrying(self, call: Callable[[], Awaitable[T]]) -> T:
        attempt = 0
        while True:
            try:
                result = await call()
            except CertificateRejected:
                raise  # waiting will not make the certificate trusted
            except RelayUnreachable as exc:
                attempt += 1
                delay = self._backoff(attempt)
                self._say(
                    self.style.yellow(
                        f"cannot reach the relay at {self.api.relay} ({exc.detail}); "
                        f"retrying in {delay:.1f}s"
                    )
                )
                self.console.set_prompt("waiting for the relay… ")
                await trio.sleep(delay)
                continue
            if attempt:
                self._say(self.style.green("connected"))
            return result

    def _show(self, entry: LogEntry) -> None:
        if not self.view.accept(entry):
            return  # already shown (a reconnect's backlog overlaps what we have)
        self.console.print(render_entry(entry, self.view, self.style, self.console.width()))
        self._refresh()
        if self.leave_after_turn and self._live:
            if isinstance(entry.payload, wire.TurnResult):
                self._leave(0 if entry.payload.ok else 1)
            elif isinstance(entry.payload, wire.SessionEnded):
                self._leave(1)

    def _refresh(self) -> None:
        """Redraw the prompt line from the current state (and, off a terminal, print the
        permission question once per request, since there is no prompt line to show it)."""
        request = self.view.next_request()
        if not self.connected:
            prompt = "reconnecting… > " if self._live else "connecting… > "
        elif request is not None and self._live:
            prompt = self.style.yellow("allow? [y/n]") + " "
            if not self.console.interactive and self._announced != request.request_id:
                self._say(self.style.yellow("allow? [y/n]"))
        else:
            sending = len(self.view.pending_messages)
            prompt = self.view.state + (f" · {sending} sending" if sending else "")
            if self.view.writing is not None:
                prompt += " · " + self.style.dim(writing_preview(self.view.writing))
            prompt += " > "
        self._announced = request.request_id if request is not None and self._live else None
        self.console.set_prompt(prompt)

    # -- input ----------------------------------------------------------------------

    async def _read_input(self) -> None:
        async for key in keys(self.input_fd, self.console):
            match key:
                case EndOfInput():
                    # Off a terminal (``rcd attach S < /dev/null``) that still shows the
                    # header and the history, or the error, before leaving.
                    await self._history_shown.wait()
                    self._leave(0)
                    return
                case CtrlC(discarded=discarded):
                    self._ctrl_c(discarded)
                case Submit(text=text):
                    self._submit(text)

    def _ctrl_c(self, discarded: str) -> None:
        now = trio.current_time()
        if discarded:
            self._last_ctrl_c = -math.inf
            return
        if now - self._last_ctrl_c < DOUBLE_CTRL_C:
            self._leave(0)
            return
        self._last_ctrl_c = now
        if self.view.working:
            self._say(self.style.dim("interrupting the agent… (Ctrl-C again within 2 s leaves)"))
            self._spawn(self._action, "interrupt", self.api.interrupt)
        else:
            self._say(self.style.dim("nothing to interrupt; Ctrl-C again within 2 s leaves"))

    def _submit(self, text: str) -> None:
        line = text.strip()
        if not line:
            return
        if line.startswith("/") and not line.startswith("//"):
            self._command(line)
            return
        if line.startswith("//"):
            text = line[1:]
        request = self.view.next_request()
        if request is not None:
            word, _, why = line.partition(" ")
            if word.lower() in ("y", "yes"):
                self._decide(request, "allow", None)
            elif word.lower() in ("n", "no"):
                self._decide(request, "deny", why.strip() or None)
            else:
                self._say(
                    self.style.yellow(
                        "a permission request is waiting: answer y or n (n WHY tells the "
                        "agent why), or /interrupt"
                    )
                )
            return
        self._send(text)

    def _command(self, line: str) -> None:
        name = line.split()[0].lower()
        if name in ("/quit", "/q", "/exit"):
            self._leave(0)
        elif name == "/interrupt":
            self._spawn(self._action, "interrupt", self.api.interrupt)
        elif name == "/stop":
            self._spawn(self._action, "stop", self.api.stop)
        elif name == "/resume":
            self._spawn(self._action, "resume", self.api.resume)
        elif name == "/diff":
            path = line[len(name) :].strip() or None
            self._spawn(self._after_history, diff_lines, self.api, self.style, path)
        elif name == "/grants":
            self._spawn(self._after_history, grant_lines, self.api, self.style)
        elif name == "/revoke":
            grant_id = line[len(name) :].strip()
            self._spawn(self._after_history, revoke_lines, self.api, self.style, grant_id)
        elif name == "/help":
            self._say(*KEYS_HELP.split("\n\n")[0].splitlines())
        else:
            self._say(self.style.red(f"unknown command {clean(name)}; /help lists them"))

    def _send(self, text: str) -> None:
        message_id = str(uuid.uuid4())
        self.view.pending_messages[message_id] = text
        first, *rest = clean(text).split("\n")
        more = f" (+{len(rest)} lines)" if rest else ""
        self._say(self.style.dim(f"you (sending…): {first}{more}"))
        self._refresh()
        self._spawn(self._post_message, message_id, text)

    def _decide(
        self, request: wire.PermissionRequest, decision: wire.Decision, why: str | None
    ) -> None:
        self.view.answered.add(request.request_id)
        self._refresh()
        self._spawn(self._post_decision, request, decision, why)

    # -- posting (in the background: input never waits on the network) -----------------

    def _spawn(self, fn: Callable[..., Awaitable[None]], *args: object) -> None:
        assert self._nursery is not None
        self._posts += 1

        async def counted() -> None:
            try:
                await fn(*args)
            except DaemonError as exc:
                if isinstance(exc, TokenRejected | NoSuchSession):
                    self._error = exc
                    self._quit.set()
                else:
                    self._say(self.style.red(str(exc)))
            finally:
                self._posts -= 1
                if not self._posts:
                    self._posts_done.set()
                    self._posts_done = trio.Event()

        self._nursery.start_soon(counted)

    async def _post_message(self, message_id: str, text: str) -> None:
        attempt = 0
        while True:
            try:
                # The same id on every attempt: the relay delivers it once, however many
                # attempts reached it before the network failed.
                await self.api.post_message(message_id, text)
                return
            except RelayUnreachable:
                attempt += 1
                await trio.sleep(self._backoff(attempt))
            except RelayRejected as exc:
                self.view.pending_messages.pop(message_id, None)
                self._say(self.style.red(f"message not sent: {exc.message}"))
                self._refresh()
                return

    async def _post_decision(
        self, request: wire.PermissionRequest, decision: wire.Decision, why: str | None
    ) -> None:
        attempt = 0
        while True:
            try:
                await self.api.decide(request.request_id, decision, why)
                return
            except RelayUnreachable:
                attempt += 1
                await trio.sleep(self._backoff(attempt))
            except RelayRejected as exc:
                if exc.code != "permission_already_resolved":
                    self.view.answered.discard(request.request_id)
                self._say(self.style.red(f"answer not taken: {exc.message}"))
                self._refresh()
                return

    async def _action(self, name: str, call: Callable[[], Awaitable[None]]) -> None:
        # Not retried: an interrupt that arrives late would cut a later turn short.
        try:
            await call()
        except RelayUnreachable as exc:
            self._say(self.style.red(f"{name} not sent: {exc.detail}"))
        except RelayRejected as exc:
            self._say(self.style.red(f"{name} refused: {exc.message}"))
        else:
            self._say(self.style.dim(f"{name} sent"))

    async def _after_history(
        self, lines: Callable[..., Awaitable[list[str]]], *args: object
    ) -> None:
        said = await lines(*args)
        # In one go once every part is in (live events do not land in the middle of it),
        # and after the history (`rcd attach S <<< /diff`).
        await self._history_shown.wait()
        self._say(*said)

    async def _watch_signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
            async for signum in signals:
                self._leave(128 + signum)
