"""rcd's XDG base directories (``$XDG_CONFIG_HOME``, ``$XDG_STATE_HOME``, ``$XDG_DATA_HOME``),
so a service, a shell and the relay agree on where things are."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["config_dir", "data_dir", "state_dir"]


def _xdg(var: str, fallback: str) -> Path:
    value = os.environ.get(var)
    return Path(value) if value else Path.home() / fallback


def config_dir() -> Path:
    return _xdg("XDG_CONFIG_HOME", ".config") / "rcd"


def state_dir() -> Path:
    return _xdg("XDG_STATE_HOME", ".local/state") / "rcd"


def data_dir() -> Path:
    return _xdg("XDG_DATA_HOME", ".local/share") / "rcd"
