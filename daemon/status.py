"""What the daemon shows of itself: the typed report its control socket answers
(``rcd status``) and the state its live screen draws."""

from __future__ import annotations

import attrs

import wire

from .display import DisplayState, SessionLine
from .link import RelayLink
from .procstats import process_stats
from .relay_client import RelayClient
from .supervisor import Supervisor
from .uplink import Uplink

__all__ = ["Identity", "display_state", "status_report"]


@attrs.frozen(kw_only=True)
class Identity:
    """Who the daemon is, once registered."""

    environment_id: str
    name: str
    relay: str
    directory: str
    #: The embedded relay's sign-in link (None with a separate relay).
    sign_in: str | None = None
    #: SHA-256 of the embedded relay's LAN certificate (``--expose lan``).
    fingerprint: str | None = None


def status_report(
    me: Identity,
    supervisor: Supervisor,
    uplink: Uplink,
    client: RelayClient,
    link: RelayLink,
    settings: wire.SettingsView | None = None,
) -> wire.StatusReport:
    stats = supervisor.statistics()
    sent = uplink.statistics()
    down = link.statistics()
    spares = stats.spares
    return wire.StatusReport(
        environment=wire.EnvironmentStatus(
            id=me.environment_id,
            name=me.name,
            relay=me.relay,
            connected=down.connected,
            spawn=stats.spawn,
            capacity=stats.capacity,
            directory=me.directory,
        ),
        sessions=[
            wire.SessionStatus(
                id=s.id,
                title=s.title,
                state=s.state,
                cwd=s.cwd,
                branch=s.branch,
                pid=s.pid,
                agent=s.agent,
            )
            for s in stats.sessions
        ],
        link=wire.LinkStatus(connects=down.connects, last_error=down.last_error),
        uplink=wire.UplinkStatus(
            buffered_events=sent.buffered_events,
            batches=sent.batches_sent,
            requests=client.uplink_requests,
            batches_on_open_requests=client.spares_used,
            failures=sent.failures,
        ),
        process=wire.ProcessStatus(**attrs.asdict(process_stats())),
        kept_worktrees=[
            wire.KeptWorktreeStatus(path=k.path, branch=k.branch, reasons=list(k.reasons))
            for k in stats.kept_worktrees
        ],
        spare_worktrees=(
            None
            if spares is None
            else wire.SpareWorktreesStatus(
                ready=spares.ready, size=spares.size, filling=spares.filling, taken=spares.taken
            )
        ),
        settings=settings,
    )


def display_state(
    me: Identity, supervisor: Supervisor, link: RelayLink, *, stopping: bool
) -> DisplayState:
    stats = supervisor.statistics()
    return DisplayState(
        name=me.name,
        relay=me.relay,
        connected=link.connected,
        spawn=stats.spawn,
        capacity=stats.capacity,
        sign_in=me.sign_in,
        fingerprint=me.fingerprint,
        stopping=stopping,
        sessions=tuple(
            SessionLine(
                id=s.id,
                title=s.title,
                state=s.state,
                activity=s.activity,
                url=f"{me.relay}/s/{s.id}",
            )
            for s in stats.sessions
        ),
    )
