"""The supervisor: relay link, uplink, sessions, capacity, control socket; ``rcd start``.

The names below are imported when first used (PEP 562), not with the package: the light
commands (``rcd status``, ``rcd attach``, ``rcd service``) use a few of its small modules
(paths, transport, errors) and must not load the supervisor, the embedded relay and GitPython.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from .errors import ConfigError, DaemonError, NotPaired, RelayRejected, RelayUnreachable
    from .options import StartOptions
    from .relay_client import RelayClient
    from .run import Daemon, run_daemon
    from .supervisor import Supervisor, SupervisorStats
    from .uplink import Uplink, UplinkStats

#: Each public name and the module that defines it.
_WHERE = {
    "ConfigError": ".errors",
    "DaemonError": ".errors",
    "NotPaired": ".errors",
    "RelayRejected": ".errors",
    "RelayUnreachable": ".errors",
    "RelayClient": ".relay_client",
    "StartOptions": ".options",
    "Daemon": ".run",
    "run_daemon": ".run",
    "Supervisor": ".supervisor",
    "SupervisorStats": ".supervisor",
    "Uplink": ".uplink",
    "UplinkStats": ".uplink",
}

__all__ = [
    "ConfigError",
    "Daemon",
    "DaemonError",
    "NotPaired",
    "RelayClient",
    "RelayRejected",
    "RelayUnreachable",
    "StartOptions",
    "Supervisor",
    "SupervisorStats",
    "Uplink",
    "UplinkStats",
    "run_daemon",
]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
