"""``rcd attach``: a terminal client of one session (see :mod:`attach.client`).

Only the parser is imported with the package; the client (httpx, trio) loads when the
command runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

from .parser import add_attach_parser

if TYPE_CHECKING:
    from .client import Attach
    from .command import main, run_attach

_WHERE = {"Attach": ".client", "main": ".command", "run_attach": ".command"}

__all__ = ["Attach", "add_attach_parser", "main", "run_attach"]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
