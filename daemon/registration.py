"""Who this daemon is to the relay: the machine, the directory, the name shown in the app;
and registering, retried while the relay cannot be reached."""

from __future__ import annotations

import socket
from pathlib import Path

import structlog
import trio

import wire
from common.backoff import full_jitter

from .errors import CertificateRejected, RelayUnreachable
from .relay_client import RelayClient

__all__ = ["default_name", "machine_id", "register"]

log = structlog.get_logger("daemon")


def machine_id() -> str:
    for path in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            value = Path(path).read_text().strip()
        except OSError:
            continue
        if value:
            return value
    return socket.gethostname()


def default_name(directory: Path) -> str:
    return f"{directory.name or directory}@{socket.gethostname()}"


async def register(
    client: RelayClient, request: wire.RegisterRequest, outage: float
) -> wire.RegisterResponse:
    """Register, retrying while the relay is unreachable (a service may start before the
    network) for up to ``outage`` seconds (0: forever); a refusal is final."""
    attempt = 0
    start = trio.current_time()
    while True:
        try:
            return await client.register(request)
        except CertificateRejected:
            raise  # no network coming up fixes that: the user must say whom to trust
        except RelayUnreachable as exc:
            if outage and trio.current_time() - start >= outage:
                raise
            attempt += 1
            delay = full_jitter(attempt, base=0.25, cap=30.0)
            log.warning("register_retry", error=str(exc), delay=round(delay, 2))
            await trio.sleep(delay)
