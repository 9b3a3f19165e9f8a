"""Where the service templates are: the source tree, else where ``pip install`` put them."""

from __future__ import annotations

import sys
from pathlib import Path

from daemon.errors import ConfigError

__all__ = ["LAUNCHD_TEMPLATE", "SYSTEMD_TEMPLATE", "read_template"]


def _template(folder: str, name: str) -> Path:
    """A service template: from the source tree, else where ``pip install`` put it
    (``<prefix>/share/rcd/<folder>/``, see ``[tool.setuptools.data-files]``)."""
    source = Path(__file__).resolve().parents[1] / folder / name
    if source.exists():
        return source
    return Path(sys.prefix) / "share" / "rcd" / folder / name


SYSTEMD_TEMPLATE = _template("systemd", "rcd.service.in")
LAUNCHD_TEMPLATE = _template("launchd", "org.rcd.daemon.plist.in")


def read_template(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the service template {path}: {exc}") from exc
