"""``rcd attach``: a terminal client of one session (see :mod:`attach.client`).

Only the parser is imported with the package; the client (httpx, trio) loads when the
command runs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .parser import add_attach_parser

if TYPE_CHECKING:
    from .client import Attach
    from .command import main, run_attach

_WHERE = {"Attach": ".client", "main": ".command", "run_attach": ".command"}

__all__ = ["Attach", "add_attach_parser", "main", "run_attach"]


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(where, __name__), name)
    globals()[name] = value
    return value
