"""Where the daemon keeps things: config, state and the control socket.

Follows the XDG base directories (``$XDG_CONFIG_HOME``, ``$XDG_STATE_HOME``,
``$XDG_DATA_HOME``, ``$XDG_RUNTIME_DIR``), so a service and a shell agree.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tempfile
from pathlib import Path
from typing import Any

from common.dirs import config_dir, data_dir, state_dir

from .errors import ConfigError

__all__ = [
    "agents_record_path",
    "config_dir",
    "control_socket_path",
    "data_dir",
    "directory_key",
    "load_credential",
    "load_embedded_credential",
    "runtime_dir",
    "save_credential",
    "save_embedded_credential",
    "state_dir",
]


#: Unix socket paths are limited to 108 bytes on Linux (104 on macOS), the final NUL included.
_MAX_SOCKET_PATH = 103
_warned: set[Path] = set()


def _private_dir_problem(path: Path) -> str | None:
    """Make ``path`` a directory only this user can enter, or say why it cannot be one.

    A missing directory is created with mode 0700. An existing one is used only if it is a
    real directory (not a symbolic link), belongs to this user and nobody else could ever
    have written in it (no group or other write bit); its mode is then tightened to 0700.
    One that others could write in is never used, not even after a chmod: they may have
    put a socket of their own in it already.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        return f"cannot be created ({exc.strerror})"
    try:
        st = os.lstat(path)
    except OSError as exc:
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory"
    if st.st_uid != os.getuid():
        return f"belongs to another user (uid {st.st_uid}, you are uid {os.getuid()})"
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        return f"is writable by other users (mode {mode:04o}, not 0700)"
    if mode != 0o700:
        os.chmod(path, 0o700)
    return None


def runtime_dir() -> Path:
    """The private directory of control sockets (mode 0700, this user's own).

    ``$XDG_RUNTIME_DIR/rcd`` when ``$XDG_RUNTIME_DIR`` is set (refused with a
    :class:`ConfigError` when that is not private). Otherwise ``$TMPDIR/rcd-<uid>`` (usually
    ``/tmp``), unless another user made it or it is not private: then
    ``$XDG_STATE_HOME/rcd/run`` (usually ``~/.local/state/rcd/run``), with a warning on
    stderr. Every process of this user (the daemon, ``rcd status``) picks the same one.
    """
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        root = Path(base) / "rcd"
        Path(base).mkdir(mode=0o700, parents=True, exist_ok=True)
        problem = _private_dir_problem(root)
        if problem is not None:
            raise ConfigError(
                f"{root} {problem}, so it cannot hold rcd's control sockets: remove it, or "
                "set XDG_RUNTIME_DIR to a directory of your own (mode 0700)"
            )
        return root
    shared = Path(tempfile.gettempdir()) / f"rcd-{os.getuid()}"
    problem = _private_dir_problem(shared)
    if problem is None:
        return shared
    fallback = state_dir() / "run"
    fallback.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    other = _private_dir_problem(fallback)
    if other is not None:
        raise ConfigError(
            f"no private directory for rcd's control sockets: {shared} {problem}, and "
            f"{fallback} {other}. Set XDG_RUNTIME_DIR to a directory of your own (mode 0700)"
        )
    if shared not in _warned:
        _warned.add(shared)
        print(
            f"rcd: warning: not using {shared}: it {problem}; control sockets go in "
            f"{fallback} instead (set XDG_RUNTIME_DIR to choose)",
            file=sys.stderr,
        )
    return fallback


def directory_key(directory: Path) -> str:
    """A short name for ``directory`` in file names (a hash of its resolved path)."""
    return hashlib.sha256(str(directory.resolve()).encode()).hexdigest()[:16]


def control_socket_path(directory: Path) -> Path:
    """The control socket of the daemon serving ``directory`` (one daemon per directory).

    A hash keeps the path short: Unix socket paths are limited to about 100 bytes. Raises
    :class:`ConfigError` when the runtime directory's path is too long even so.
    """
    path = runtime_dir() / f"{directory_key(directory)}.sock"
    if len(os.fsencode(path)) > _MAX_SOCKET_PATH:
        raise ConfigError(
            f"the control socket's path {path} is too long for a Unix socket "
            f"({len(os.fsencode(path))} bytes, at most {_MAX_SOCKET_PATH}): set "
            "XDG_RUNTIME_DIR to a short directory of your own (mode 0700)"
        )
    return path


def agents_record_path(directory: Path) -> Path:
    """The record of the agent processes of the daemon serving ``directory`` (see
    :mod:`daemon.agents_record`)."""
    return state_dir() / "agents" / f"{directory_key(directory)}.json"


def _credentials_file() -> Path:
    return config_dir() / "credentials.json"


def read_private_json(path: Path, what: str) -> dict[str, Any]:
    """A JSON object kept in a private file (``{}`` when it does not exist yet).

    Raises :class:`ConfigError` naming the file when it is unreadable or not an object.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a JSON object of {what}")
    return data


def write_private_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically with ``data``, readable by this user only (0600)."""
    write_private(path, (json.dumps(data, indent=2) + "\n").encode())


def write_private(path: Path, data: bytes) -> None:
    """Replace ``path`` atomically with ``data``, readable by this user only (0600)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        os.fchmod(f.fileno(), 0o600)
        f.write(data)
    os.replace(tmp, path)


def _read_credentials() -> dict[str, str]:
    path = _credentials_file()
    data = read_private_json(path, "relay URL → credential")
    if not all(isinstance(v, str) for v in data.values()):
        raise ConfigError(f"{path} is not a JSON object of relay URL → credential")
    return data


def normalise_relay_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"relay URL must start with http:// or https://, got {url!r}")
    return url


def load_credential(relay: str) -> str | None:
    """The environment credential stored for ``relay``, or None."""
    return _read_credentials().get(normalise_relay_url(relay))


def save_credential(relay: str, credential: str) -> Path:
    """Store the credential for ``relay`` in a file only this user can read (0600)."""
    creds = _read_credentials()
    creds[normalise_relay_url(relay)] = credential
    path = _credentials_file()
    write_private_json(path, creds)
    return path


def _embedded_credential_file(relay_data_dir: Path) -> Path:
    # Beside the embedded relay's database: the credential is worth nothing without it.
    return relay_data_dir / "daemon-credential.json"


def load_embedded_credential(relay_data_dir: Path) -> str | None:
    """The environment credential this machine's daemons use with the embedded relay
    whose data dir is ``relay_data_dir``, or None."""
    path = _embedded_credential_file(relay_data_dir)
    value = read_private_json(path, "credential").get("credential")
    return value if isinstance(value, str) else None


def save_embedded_credential(relay_data_dir: Path, credential: str) -> Path:
    """Keep the embedded relay's environment credential (0600), so every start of the
    daemon presents the same one and so registers the same environment."""
    path = _embedded_credential_file(relay_data_dir)
    write_private_json(path, {"credential": credential})
    return path


def default_relay() -> str | None:
    """The relay named in ``config.toml`` (``relay = "https://..."``), if any."""
    import tomllib

    path = config_dir() / "config.toml"
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from exc
    relay = data.get("relay")
    if relay is not None and not isinstance(relay, str):
        raise ConfigError(f"{path}: relay must be a string URL")
    return relay
