"""Small pieces every package may use: XDG directories, argparse types, logging set-up,
terminal-safe text, and backoff with jitter (:mod:`common.backoff`). It imports nothing of
the project, so the command line, the daemon and the relay can all stand on it without
importing one another.
"""

from .argtypes import count, port, positive_int, positive_seconds, seconds
from .dirs import config_dir, data_dir, state_dir
from .visible import visible

__all__ = [
    "config_dir",
    "count",
    "data_dir",
    "port",
    "positive_int",
    "positive_seconds",
    "seconds",
    "state_dir",
    "visible",
]
