"""``/grants`` and ``/revoke ID`` in ``rcd attach``: the approval grants in force for the
session (its own and the environment's), with their time left, and revoking one.

Grants are made from a permission card in the web app or through the client API (``POST
/api/environments/{id}/grants``); the daemon decides and dates them by its own clock, so the
time left shown is the relay's last word from the daemon against this machine's clock.
"""

from __future__ import annotations

import time

import wire
from daemon.errors import DaemonError, RelayRejected, RelayUnreachable

from .api import SessionApi
from .render import Style, one

__all__ = ["grant_lines", "revoke_lines"]


async def grant_lines(api: SessionApi, style: Style, now: float | None = None) -> list[str]:
    """What ``/grants`` prints. A relay's refusal becomes one line. Cancellable."""
    try:
        info = await api.session()
        grants = (await api.grants(info.environment_id)).grants
    except RelayUnreachable as exc:
        return [style.red(f"no grants: cannot reach the relay ({exc.detail})")]
    except RelayRejected as exc:
        if exc.code == "settings_unsupported":
            return [style.dim("no grants: this environment's daemon does not keep them")]
        return [style.red(f"no grants: {exc.message}")]
    except DaemonError as exc:
        return [style.red(f"no grants: {exc}")]
    now = time.time() if now is None else now
    # The daemon's list (it reports again as one ends): this machine's clock says how long
    # is left, never whether one is in force.
    mine = [g for g in grants if g.session_id in (None, api.session_id)]
    if not mine:
        return [style.dim("no grants in force for this session: every tool use asks")]
    lines = [style.bold("allowed without asking:")]
    for grant in mine:
        scope = "this session" if grant.session_id else "every session here"
        lines.append(
            f"  {style.green(one(grant.id))}  {describe(grant)}"
            + style.dim(f" · {scope} · {_left(grant.expires_at - now)} · by {one(grant.by)}")
        )
    lines.append(style.dim("/revoke ID ends one at once"))
    return lines


async def revoke_lines(api: SessionApi, style: Style, grant_id: str) -> list[str]:
    """What ``/revoke ID`` prints."""
    if not grant_id:
        return [style.red("/revoke needs a grant's id: /grants lists them")]
    try:
        info = await api.session()
        await api.revoke_grant(info.environment_id, grant_id)
    except RelayUnreachable as exc:
        return [style.red(f"not revoked: cannot reach the relay ({exc.detail})")]
    except RelayRejected as exc:
        return [style.red(f"not revoked: {exc.message}")]
    except DaemonError as exc:
        return [style.red(f"not revoked: {exc}")]
    return [style.dim(f"revoked {one(grant_id)}: what it covered asks again")]


def describe(grant: wire.Grant) -> str:
    what = ", ".join(one(t) for t in grant.tools)
    if grant.path is not None:
        what += f" under {one(grant.path)}/"
    if grant.command is not None:
        what += f' for commands starting "{one(grant.command)}"'
    return what


def _left(seconds: float) -> str:
    if seconds <= 0:
        return "ending"
    if seconds < 60:
        return "less than a minute left"
    minutes = round(seconds / 60)
    return f"{minutes} min left" if minutes < 90 else f"{round(minutes / 60)} h left"
