"""A TCP proxy on loopback with faults a test can switch on and off: the network between
the daemon and its relay, made unreliable on purpose.

Point the code under test at ``proxy.url`` instead of the real server; the proxy forwards
every accepted connection to ``target`` (``(host, port)``) and pumps bytes both ways, each
direction on its own (a half-close is passed on as a half-close). Faults, callable at any
time from the test, even before ``run`` (they compose; ``heal()`` clears them all):

- ``cut_all()``: reset every open connection, both sides (``SO_LINGER`` 0, so the peers see
  ``ECONNRESET``, not a clean EOF). New connections still work.
- ``black_hole(seconds)``: a laptop sleep / NAT drop. New connections are accepted (the
  client sees a hang, not a refusal) but not forwarded; open connections freeze in both
  directions without closing. Everything resumes, in order, at ``heal()`` or when
  ``seconds`` have passed (``None``: until ``heal()``), including connections accepted
  meanwhile (they connect to the target only then). To model a drop that loses the
  connection state, call ``cut_all()`` when healing.
- ``refuse(True)``: stop listening, so connecting fails with ``ECONNREFUSED``; open
  connections are untouched. ``refuse(False)`` listens again on the same port.
- ``delay(seconds)``: every chunk is forwarded ``seconds`` after the proxy read it, in both
  directions (latency, not a throughput cap: chunks are pipelined). The delay in force when
  a chunk is due counts, so ``delay(0)`` or ``heal()`` releases chunks already waiting.
- ``cut_every(n)``: cut (reset, as ``cut_all``) each connection once it has forwarded ``n``
  bytes, counting both directions together from the moment it was accepted. The last chunk
  is trimmed so that exactly ``n`` bytes get through, all of which the peers can still read
  before they see the reset. Checked when a chunk is forwarded: a connection already past
  ``n`` when this is set is cut, with nothing more forwarded, at its next chunk. When both
  directions carry data at the same instant the cut waits for the chunk in flight on the
  other side; ``n`` is still never exceeded. ``None`` turns it off.
- ``retarget(port, host=None)``: new connections go to another target (a relay restarted on
  a new port); open ones keep theirs. Not a fault: ``heal()`` keeps the target.

If the target refuses, the accepted client connection is reset (and counted in
``upstream_failures``). Memory per connection is bounded: each direction holds at most
``max_buffered_chunks + 2`` chunks of ``chunk_size`` bytes, and stops reading (so TCP
pushes back on the sender) when it is full. Nothing polls: waits are on sockets, on a
state-change event and on deadlines.

Usage::

    proxy = FlakyProxy(("127.0.0.1", relay_port))
    async with trio.open_nursery() as nursery:
        port = await nursery.start(proxy.run)     # proxy.url == f"http://127.0.0.1:{port}"
        ...
        proxy.black_hole(None)
        ...
        proxy.heal()
        nursery.cancel_scope.cancel()             # closes every socket the proxy opened

(Over 400 lines on purpose: every fault acts on the same pair of forwarded streams, and
reads best beside the others.)
"""

from __future__ import annotations

import contextlib
import math
import socket
import struct

import attrs
import trio

__all__ = ["FlakyProxy", "FlakyProxyStatistics"]

LISTEN_HOST = "127.0.0.1"
_LINGER_RESET = struct.pack("ii", 1, 0)  # l_onoff=1, l_linger=0: close() sends RST


@attrs.frozen(kw_only=True)
class FlakyProxyStatistics:
    """A snapshot of a ``FlakyProxy``'s counters and faults."""

    accepted: int  #: connections accepted since the proxy started
    open: int  #: accepted and not yet closed (a cut connection leaves at once)
    cut: int  #: connections closed by ``cut_all`` or ``cut_every``
    upstream_failures: int  #: accepted connections whose target could not be reached
    bytes_upstream: int  #: bytes forwarded client -> target (handed to the kernel)
    bytes_downstream: int  #: bytes forwarded target -> client
    listening: bool  #: False while ``refuse(True)`` is in force or before ``run``
    black_holed: bool
    delay: float
    cut_every: int | None
    target: tuple[str, int]


@attrs.define(eq=False)
class _Link:
    """One proxied connection: the accepted client side and, once connected, the target."""

    client: trio.SocketStream
    upstream: trio.SocketStream | None = None
    scope: trio.CancelScope = attrs.field(factory=trio.CancelScope)
    #: Bytes forwarded or being forwarded, both directions (what ``cut_every`` counts).
    reserved: int = 0
    in_flight: int = 0


def _reset(stream: trio.SocketStream | None) -> None:
    """Close ``stream`` at once with an RST; no-op if already closed."""
    if stream is None or stream.socket.fileno() == -1:
        return
    # setsockopt can fail if the peer's RST already tore the socket down: close anyway.
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    stream.socket.close()


def _close(stream: trio.SocketStream | None) -> None:
    """Close ``stream`` the ordinary way (FIN); no-op if already closed."""
    if stream is not None:
        stream.socket.close()


@attrs.define(eq=False)
class FlakyProxy:
    """A loopback TCP proxy to ``target`` with switchable faults (see the module docstring)."""

    target: tuple[str, int]
    chunk_size: int = attrs.field(default=16384, kw_only=True)
    max_buffered_chunks: int = attrs.field(default=4, kw_only=True)

    _port: int | None = attrs.field(default=None, init=False)
    _nursery: trio.Nursery | None = attrs.field(default=None, init=False)
    _listener: trio.socket.SocketType | None = attrs.field(default=None, init=False)
    #: While refusing: a bound, non-listening socket that keeps our port from being taken.
    _placeholder: socket.socket | None = attrs.field(default=None, init=False)
    _links: set[_Link] = attrs.field(factory=set, init=False)
    #: Set (and replaced) on every fault change, so that waiting pumps re-check.
    _changed: trio.Event = attrs.field(factory=trio.Event, init=False)

    _refusing: bool = attrs.field(default=False, init=False)
    _black_hole_until: float = attrs.field(default=-math.inf, init=False)
    _delay: float = attrs.field(default=0.0, init=False)
    _cut_every: int | None = attrs.field(default=None, init=False)

    _accepted: int = attrs.field(default=0, init=False)
    _cut: int = attrs.field(default=0, init=False)
    _upstream_failures: int = attrs.field(default=0, init=False)
    _bytes_upstream: int = attrs.field(default=0, init=False)
    _bytes_downstream: int = attrs.field(default=0, init=False)

    # ----------------------------------------------------------------- running

    @property
    def port(self) -> int:
        """The port the proxy listens on; ``RuntimeError`` before ``run`` has started."""
        if self._port is None:
            raise RuntimeError("FlakyProxy is not started")
        return self._port

    @property
    def url(self) -> str:
        """``"http://127.0.0.1:<port>"`` (no trailing slash), once started."""
        return f"http://{LISTEN_HOST}:{self.port}"

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``task_status.started(port)`` once connections can be made
        (or, if ``refuse(True)`` was called before, once the port is reserved).

        Cancelling closes everything the proxy opened: the listening socket and both sides
        of every connection (an ordinary close, FIN, not a reset), before returning. A
        proxy can run again after it stopped; it picks a new port.
        """
        if self._nursery is not None:
            raise RuntimeError("FlakyProxy is already running")
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self._refusing:
                    self._reserve_port()
                else:
                    self._listen()
                task_status.started(self.port)
                await trio.sleep_forever()
        finally:
            # The connection tasks closed their own sockets on their way out of the nursery.
            self._nursery = None
            if self._listener is not None:
                self._listener.close()
                self._listener = None
            if self._placeholder is not None:
                self._placeholder.close()
                self._placeholder = None
            self._port = None

    # ------------------------------------------------------------------ faults

    def cut_all(self) -> None:
        """Reset every open connection, both sides, now. Later connections are unaffected."""
        for link in list(self._links):
            self._cut_link(link)

    def black_hole(self, seconds: float | None) -> None:
        """Accept but forward nothing, and freeze open connections, for ``seconds`` from now
        (``None``: until ``heal()``). Replaces a black hole already in force. Call it from
        inside ``trio.run`` (it reads trio's clock)."""
        self._black_hole_until = math.inf if seconds is None else trio.current_time() + seconds
        self._poke()

    def refuse(self, on: bool) -> None:
        """Refuse new connections (``ECONNREFUSED``) while ``on``; open ones are untouched.

        Takes effect before returning: the listening socket is closed (connections still in
        its backlog are reset) or, when turned off, listening again on the same port.
        """
        self._refusing = on
        if self._nursery is None:
            return
        if on and self._listener is not None:
            # Ordering: Linux lets the placeholder bind only once nothing listens on the port.
            self._listener.close()
            self._listener = None
            self._reserve_port()
        elif not on and self._listener is None:
            self._listen()

    def delay(self, seconds: float) -> None:
        """Forward each chunk ``seconds`` after it was read, both directions; 0 turns it off."""
        if seconds < 0:
            raise ValueError(f"delay must be >= 0, got {seconds}")
        self._delay = seconds
        self._poke()

    def cut_every(self, n_bytes: int | None) -> None:
        """Cut each connection once it has forwarded ``n_bytes`` (both directions together,
        since it was accepted; exactly that many get through). ``None`` turns it off."""
        if n_bytes is not None and n_bytes <= 0:
            raise ValueError(f"cut_every needs a positive byte count, got {n_bytes}")
        self._cut_every = n_bytes

    def heal(self) -> None:
        """Clear every fault: listen again, end the black hole and the delay, stop cutting.
        Frozen and delayed chunks are then forwarded. The target stays as it is."""
        self._black_hole_until = -math.inf
        self._delay = 0.0
        self._cut_every = None
        self.refuse(False)
        self._poke()

    def retarget(self, port: int, host: str | None = None) -> None:
        """Send new connections to ``(host, port)`` (``host`` unchanged if ``None``)."""
        self.target = (self.target[0] if host is None else host, port)

    def statistics(self) -> FlakyProxyStatistics:
        black_holed = self._black_hole_until > -math.inf and (
            self._black_hole_until == math.inf or trio.current_time() < self._black_hole_until
        )
        return FlakyProxyStatistics(
            accepted=self._accepted,
            open=len(self._links),
            cut=self._cut,
            upstream_failures=self._upstream_failures,
            bytes_upstream=self._bytes_upstream,
            bytes_downstream=self._bytes_downstream,
            listening=self._listener is not None,
            black_holed=black_holed,
            delay=self._delay,
            cut_every=self._cut_every,
            target=self.target,
        )

    # -------------------------------------------------------------- listening

    def _listen(self) -> None:
        """Listen on our port (a fresh one the first time) and start accepting."""
        assert self._nursery is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            # SO_REUSEADDR on both this and the placeholder: binding next to it is allowed.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LISTEN_HOST, self._port or 0))
            sock.listen()
        except BaseException:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None
        self._listener = trio.socket.from_stdlib_socket(sock)
        self._nursery.start_soon(self._accept_loop, trio.SocketListener(self._listener))

    def _reserve_port(self) -> None:
        """Hold our port (a fresh one the first time) without listening: connects are refused."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((LISTEN_HOST, self._port or 0))
        except BaseException:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._placeholder = sock

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        """Accept until ``refuse`` (or the end of ``run``) closes ``listener``."""
        assert self._nursery is not None
        nursery = self._nursery
        while True:
            try:
                client = await listener.accept()
            except trio.ClosedResourceError:
                return
            self._accepted += 1
            link = _Link(client)
            self._links.add(link)
            nursery.start_soon(self._serve_link, link)

    # ------------------------------------------------------------ forwarding

    async def _serve_link(self, link: _Link) -> None:
        try:
            with link.scope:
                await self._wait_flowing()  # a black hole also holds back the connect
                try:
                    link.upstream = await trio.open_tcp_stream(*self.target)
                except OSError:
                    self._upstream_failures += 1
                    self._abort_link(link)
                    return
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._pump, link, link.client, link.upstream, True)
                    nursery.start_soon(self._pump, link, link.upstream, link.client, False)
                # Both directions ended with an EOF that was passed on: a clean close.
        finally:
            # Runs on cancellation too; plain closes, nothing to await. Ordering: leave the
            # set first so that statistics() never counts a closed connection as open.
            self._links.discard(link)
            _close(link.client)
            _close(link.upstream)

    async def _pump(
        self, link: _Link, src: trio.SocketStream, dst: trio.SocketStream, upstream: bool
    ) -> None:
        """Forward one direction until EOF (passed on) or an error (which resets both sides)."""
        send, receive = trio.open_memory_channel[tuple[float, bytes]](self.max_buffered_chunks)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._read, link, src, send)
            await self._write(link, receive, dst, upstream)

    async def _read(
        self,
        link: _Link,
        src: trio.SocketStream,
        send: trio.MemorySendChannel[tuple[float, bytes]],
    ) -> None:
        async with send:
            try:
                while True:
                    data = await src.receive_some(self.chunk_size)
                    # Stamped on arrival: the delay runs from here; b"" (EOF) queues like data.
                    await send.send((trio.current_time(), data))
                    if not data:
                        return
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._abort_link(link)

    async def _write(
        self,
        link: _Link,
        receive: trio.MemoryReceiveChannel[tuple[float, bytes]],
        dst: trio.SocketStream,
        upstream: bool,
    ) -> None:
        async with receive:
            async for received_at, data in receive:
                await self._wait_flowing(received_at)
                try:
                    if not data:
                        await dst.send_eof()
                        return
                    await self._forward(link, dst, data, upstream)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    self._abort_link(link)
                    return

    async def _forward(
        self, link: _Link, dst: trio.SocketStream, data: bytes, upstream: bool
    ) -> None:
        limit = self._cut_every
        if limit is not None:
            data = data[: max(limit - link.reserved, 0)]
        # Reserve before awaiting, so that the other direction sees these bytes as spent.
        link.reserved += len(data)
        link.in_flight += 1
        try:
            if data:
                await dst.send_all(data)
        finally:
            link.in_flight -= 1
        if upstream:
            self._bytes_upstream += len(data)
        else:
            self._bytes_downstream += len(data)
        # The last sender out cuts, so the other direction's chunk is not lost halfway.
        if limit is not None and link.reserved >= limit and link.in_flight == 0:
            self._cut_link(link)  # cancels our scope: the next checkpoint ends this pump

    async def _wait_flowing(self, received_at: float | None = None) -> None:
        """Return once no black hole is in force and, for a chunk read at ``received_at``,
        its delay has passed. Faults may change while waiting: every change wakes us."""
        while True:
            now = trio.current_time()
            if now < self._black_hole_until:
                wake = self._black_hole_until
            elif received_at is not None and now < received_at + self._delay:
                wake = received_at + self._delay
            else:
                return
            with trio.move_on_at(wake):
                await self._changed.wait()

    def _poke(self) -> None:
        """Wake everything in ``_wait_flowing`` to re-check the faults."""
        self._changed.set()
        self._changed = trio.Event()

    def _cut_link(self, link: _Link) -> None:
        if link in self._links:
            self._cut += 1
        self._abort_link(link)

    def _abort_link(self, link: _Link) -> None:
        """Reset both sides of ``link`` now and stop its tasks (they exit at their next
        checkpoint; sockets blocked in a read or write wake with ClosedResourceError)."""
        self._links.discard(link)
        _reset(link.client)
        _reset(link.upstream)
        link.scope.cancel()
