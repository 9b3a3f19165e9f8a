"""Tell systemd how the daemon is doing (``sd_notify``), for ``Type=notify`` units.

The unit written by ``rcd service install`` is ``Type=notify``: ``systemctl start`` returns
once the daemon says ``READY=1`` (after its first successful registration), and
``systemctl status`` shows the last ``STATUS=`` line. Outside systemd (a terminal, launchd)
``$NOTIFY_SOCKET`` is unset and every call here is a cheap no-op returning False.

Every function is synchronous and never blocks: it sends one datagram on a non-blocking
``AF_UNIX`` socket and gives up (returns False) if the socket is missing or systemd's queue is
full. Calling it straight from the trio event loop is fine, no worker thread needed.
"""

from __future__ import annotations

import os
import socket

__all__ = ["notify", "notify_ready", "notify_status", "notify_stopping"]


def _address(value: str) -> str | None:
    """The socket address in ``$NOTIFY_SOCKET``, or None if it is not one we can use."""
    if value.startswith("@"):
        # Linux abstract namespace: '@' stands for the leading NUL byte.
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # e.g. "vsock:..." (systemd 253+ in VMs): not ours to support


def notify(state: str) -> bool:
    """Send ``state`` (``KEY=value`` lines, e.g. ``"READY=1"``) to systemd.

    Returns True if the datagram was sent, False if not running under systemd (no usable
    ``$NOTIFY_SOCKET``) or if sending failed; never raises for either. The unit's
    ``NotifyAccess=main`` means only the daemon's main process is heard; agents do not
    even inherit ``$NOTIFY_SOCKET`` (see :mod:`daemon.agent_env`).
    """
    value = os.environ.get("NOTIFY_SOCKET")
    if not value:
        return False
    address = _address(value)
    if address is None:
        return False
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(state.encode(), address)
    except OSError:
        # No such socket, refused, or a full queue (BlockingIOError): drop the message
        # rather than stall the event loop.
        return False
    return True


def notify_ready() -> bool:
    """``READY=1``: the daemon is registered and serving (call once, after registration)."""
    return notify("READY=1")


def notify_stopping() -> bool:
    """``STOPPING=1``: a graceful stop has begun (call when the first signal arrives)."""
    return notify("STOPPING=1")


def notify_status(text: str) -> bool:
    """``STATUS=<text>``: one line shown by ``systemctl status`` (newlines become spaces)."""
    return notify("STATUS=" + " ".join(text.splitlines()))
