"""A stateful model of the link protocol: random interleavings of sends, lost answers,
duplicate deliveries, downlink cuts, acks and relay restarts.

Both ends are the real code: the relay's SQLite core (``relay.sqlite.SqliteDatabase``, what
every relay request runs) and the daemon's outbox (``daemon.uplink.Outbox``) and directive
gate (``daemon.Supervisor.apply``). Invariants after every step:

* each session's stored log is a dense prefix (1..n) of exactly what the daemon emitted (with events
  beyond a tiny memory bound spilled to disk and read back);
* every message a client posted reaches its session once, in order (none twice, none lost
  once the downlink catches up), whatever was cut, replayed or restarted.
"""

from __future__ import annotations

import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import attrs
import hypothesis.strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import wire
from daemon import Supervisor
from daemon.spool import Spool
from daemon.uplink import Outbox
from relay.records import NewSession
from relay.sqlite import SqliteDatabase
from spawn import ClaudeCode

SESSIONS = ("s1", "s2")


@attrs.define
class RecordingRuntime:
    """Stands where a SessionRuntime would: records what the supervisor delivers."""

    delivered: list[str] = attrs.Factory(list)

    def deliver(self, item: Any) -> None:
        self.delivered.append(item.input_id)


class LinkProtocol(RuleBasedStateMachine):
    @initialize()
    def setup(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="rcd-proto-"))
        self.db = self._open()
        reply = self.db.register_environment(
            "cred",
            wire.RegisterRequest(
                name="n", machine="m", directory="/d", spawn="same-dir", capacity=8, agent="a"
            ),
        )
        self.env = reply.environment_id
        self.link = "link-0"
        self.db.open_downlink(self.env, self.link)
        self.emitted: dict[str, list[wire.Event]] = {s: [] for s in SESSIONS}
        # A tiny memory bound, so the spill to disk is part of every run.
        self.outbox = {
            s: Outbox(memory_limit=3, spool=Spool(self.dir / "spool" / f"{s}.jsonl"))
            for s in SESSIONS
        }
        self.sent: list[tuple[str, list[wire.Event]]] = []
        self.supervisor = Supervisor(
            adapter=ClaudeCode(),
            directory=self.dir,
            spawn="same-dir",
            capacity=8,
            uplink=self,  # unused: no session starts here
        )
        self.runtimes = {s: RecordingRuntime() for s in SESSIONS}
        for sid in SESSIONS:
            self.db.create_session(
                NewSession(id=sid, environment_id=self.env, title=None, spawn=None),
                wire.StartSession(session_id=sid),
            )
            self.supervisor.sessions[sid] = self.runtimes[sid]  # type: ignore[assignment]
        self.posted: dict[str, list[str]] = {s: [] for s in SESSIONS}
        self.ids = itertools.count()
        self.cursor = 0  # what the downlink connection resumes after (Last-Event-ID)

    def publish(self, session_id: str, event: wire.Event) -> None:  # EventPublisher
        raise AssertionError("not used")

    def _open(self) -> SqliteDatabase:
        return SqliteDatabase(self.dir / "relay.sqlite3", clock=time.time)

    # -- uplink ------------------------------------------------------------------------

    @rule(session=st.sampled_from(SESSIONS), n=st.integers(1, 4))
    def emit(self, session: str, n: int) -> None:
        for _ in range(n):
            seq = len(self.emitted[session]) + 1
            event = wire.make_event(seq, 1.0, wire.AssistantText(text=f"{session}-{seq}"))
            self.emitted[session].append(event)
            self.outbox[session].push(event)

    @rule(session=st.sampled_from(SESSIONS), limit=st.integers(1, 5), answer_lost=st.booleans())
    def send(self, session: str, limit: int, answer_lost: bool) -> None:
        batch = self.outbox[session].take_batch(limit)
        if not batch:
            return
        acked = self.db.append_events(session, batch)
        self.sent.append((session, batch))
        if not answer_lost:  # a cut connection loses the answer, not the write
            assert self.outbox[session].acknowledge(acked)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def resend_an_old_batch(self, data: st.DataObject) -> None:
        session, batch = data.draw(st.sampled_from(self.sent))
        acked = self.db.append_events(session, batch)  # a duplicate (or late) delivery
        assert self.outbox[session].acknowledge(acked)

    @rule()
    def restart_relay(self) -> None:
        self.db.close()
        self.db = self._open()
        self.link = f"link-{next(self.ids)}"  # the daemon reconnects: a new link
        self.db.open_downlink(self.env, self.link)

    # -- downlink ----------------------------------------------------------------------

    @rule(session=st.sampled_from(SESSIONS), repeat_id=st.booleans())
    def client_posts(self, session: str, repeat_id: bool) -> None:
        if repeat_id and self.posted[session]:
            input_id = self.posted[session][-1]  # a client retry: the same message id
        else:
            input_id = f"m{next(self.ids)}"
            self.posted[session].append(input_id)
        self.db.submit_input(
            session,
            wire.SendMessage(session_id=session, input_id=input_id, text="hi", origin="phone"),
        )

    @rule(cut_after=st.integers(0, 6))
    def downlink(self, cut_after: int) -> None:
        read = self.db.read_downlink(self.env, self.link, self.cursor, 100)
        assert read.current
        for queued in read.directives[:cut_after]:  # the connection drops after a few
            self.supervisor.apply(queued.dseq, queued.directive)
            self.cursor = queued.dseq

    @rule(back=st.integers(1, 5))
    def reconnect_from_an_older_cursor(self, back: int) -> None:
        self.cursor = max(0, self.cursor - back)  # at-least-once: some come again

    @rule()
    def ack(self) -> None:
        self.db.acknowledge_directives(self.env, self.supervisor.applied_through)

    # -- invariants --------------------------------------------------------------------

    @invariant()
    def stored_logs_are_dense_prefixes_of_what_was_emitted(self) -> None:
        for session in SESSIONS:
            stored = self.db.read_events(session, 0, 10_000)
            assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
            assert stored == self.emitted[session][: len(stored)]
            assert self.outbox[session].acked <= len(stored)

    @invariant()
    def each_message_reaches_its_session_once_in_order(self) -> None:
        for session in SESSIONS:
            delivered = self.runtimes[session].delivered
            assert len(delivered) == len(set(delivered))
            assert delivered == self.posted[session][: len(delivered)]

    def teardown(self) -> None:
        if not hasattr(self, "db"):
            return
        # Once the network is good again, everything gets through exactly once.
        for session in SESSIONS:
            while batch := self.outbox[session].take_batch(50):
                assert self.outbox[session].acknowledge(self.db.append_events(session, batch))
            assert self.db.read_events(session, 0, 10_000) == self.emitted[session]
        self.cursor = self.supervisor.applied_through
        self.downlink(10_000)
        for session in SESSIONS:
            assert self.runtimes[session].delivered == self.posted[session]
        self.db.close()


TestLinkProtocol = LinkProtocol.TestCase
