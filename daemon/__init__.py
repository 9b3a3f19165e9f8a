"""The supervisor: CLI entry, relay link, capacity, sessions, control socket."""

from .errors import ConfigError, DaemonError, NotPaired, RelayRejected, RelayUnreachable
from .relay_client import RelayClient
from .run import StartOptions, run_daemon
from .supervisor import Supervisor, SupervisorStats
from .uplink import Uplink, UplinkStats

__all__ = [
    "ConfigError",
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
