"""``rcd service install|uninstall|status``: run ``rcd start`` as a user service.

Parts: :mod:`.parser` (the command line), :mod:`.commands` (install, uninstall, status),
:mod:`.options` (what a service runs), :mod:`.systemd` (Linux user units), :mod:`.launchd`
(macOS LaunchAgents), :mod:`.manager` (what both managers offer, running their commands),
:mod:`.templates` (the template files). Only the parser is imported with the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

from .parser import add_service_parser

if TYPE_CHECKING:
    from .commands import run_service_command
    from .launchd import render_launchd_plist
    from .options import ServiceOptions, rcd_command, service_options
    from .systemd import render_systemd_unit

_WHERE = {
    "ServiceOptions": ".options",
    "rcd_command": ".options",
    "render_launchd_plist": ".launchd",
    "render_systemd_unit": ".systemd",
    "run_service_command": ".commands",
    "service_options": ".options",
}

__all__ = [
    "ServiceOptions",
    "add_service_parser",
    "rcd_command",
    "render_launchd_plist",
    "render_systemd_unit",
    "run_service_command",
    "service_options",
]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
