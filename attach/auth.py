"""Which relay ``rcd attach`` talks to, and with which device token.

Relay: ``--relay URL``, else ``relay`` in ``~/.config/rcd/config.toml``, else the embedded
relay of this machine (the URL it wrote to ``<data dir>/relay/relay.json``).

Token: ``--token``, else the first line of ``--token-file``, else ``$RCD_TOKEN``, else the
one stored for that relay in ``~/.config/rcd/tokens.json`` (mode 0600), else, for the
embedded relay of this machine only, a device token minted once as ``attach@<hostname>``
(``-2``, ``-3``… if that name is taken) and stored there for the next time. (``--token``
puts the token in the process's arguments, which every user of the machine can read with
``ps``: the file and the variable do not.) Synchronous: call it before the event loop.

Plain ``http://`` to a relay that is not on this machine is refused unless
``insecure_http`` (see :func:`daemon.transport.check_relay_url`).
"""

from __future__ import annotations

import os
import socket
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import attrs

from daemon.errors import ConfigError
from daemon.paths import (
    config_dir,
    data_dir,
    default_relay,
    normalise_relay_url,
    read_private_json,
    write_private_json,
)
from daemon.transport import check_relay_url

__all__ = ["Target", "load_token", "resolve_target", "save_token", "tokens_path"]

TokenSource = Literal["--token", "--token-file", "$RCD_TOKEN", "tokens.json", "minted"]
_MAX_NAME = 64


@attrs.frozen(kw_only=True)
class Target:
    relay: str
    token: str
    source: TokenSource
    #: The device token's name when this client minted it (now or earlier).
    token_name: str | None = None


def tokens_path() -> Path:
    return config_dir() / "tokens.json"


def _read_tokens() -> dict[str, dict[str, str]]:
    data = read_private_json(tokens_path(), "relay URL → token")
    return {
        url: entry
        for url, entry in data.items()
        if isinstance(entry, dict) and isinstance(entry.get("token"), str)
    }


def load_token(relay: str) -> tuple[str, str | None] | None:
    """The stored ``(token, name)`` for ``relay``, or None."""
    entry = _read_tokens().get(normalise_relay_url(relay))
    return None if entry is None else (entry["token"], entry.get("name"))


def save_token(relay: str, token: str, name: str) -> Path:
    """Store a token for ``relay`` in a file only this user can read (0600), atomically."""
    tokens = _read_tokens()
    tokens[normalise_relay_url(relay)] = {"name": name, "token": token}
    path = tokens_path()
    write_private_json(path, tokens)
    return path


def _embedded() -> tuple[Path, str | None]:
    """The embedded relay's data dir and the URL it last announced (None if it never ran)."""
    from relay import RelayError, read_relay_url

    relay_dir = data_dir() / "relay"
    try:
        url = read_relay_url(relay_dir, local=True)
    except RelayError as exc:
        raise ConfigError(str(exc)) from exc
    return relay_dir, normalise_relay_url(url) if url else None


def mint_token(relay_dir: Path, hostname: str) -> tuple[str, str]:
    """Create a device token on the relay data dir ``relay_dir``; returns ``(token, name)``.

    The name is ``attach@<hostname>``, or the first of ``-2``, ``-3``… that is free.
    """
    from relay import AdminError, create_device_token, list_device_tokens

    base = f"attach@{hostname}"[: _MAX_NAME - 4]
    try:
        taken = {t.name for t in list_device_tokens(relay_dir)}
    except AdminError as exc:
        raise ConfigError(f"cannot create a token on {relay_dir}: {exc}") from exc
    for n in range(1, 1000):
        name = base if n == 1 else f"{base}-{n}"
        if name in taken:
            continue
        try:
            return create_device_token(relay_dir, name), name
        except AdminError:
            continue  # taken since we listed them: try the next name
    raise ConfigError(f"cannot find a free token name like {base!r} on {relay_dir}")


def read_token_file(path: Path) -> str:
    """The token on the first line of ``path``. Raises :class:`ConfigError` for a file that
    cannot be read or holds no token; warns on stderr when other users may read it."""
    try:
        with open(path, encoding="utf-8") as f:
            mode = stat.S_IMODE(os.fstat(f.fileno()).st_mode)
            first = f.readline().strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"cannot read the token file {path}: {reason}") from None
    if not first:
        raise ConfigError(f"the token file {path} is empty: put the device token on its first line")
    if mode & 0o077:
        print(
            f"rcd attach: warning: the token file {path} can be read by other users "
            f"(mode {mode:04o}): chmod 600 {path}",
            file=sys.stderr,
        )
    return first


def resolve_target(
    relay: str | None,
    token: str | None,
    environ: Mapping[str, str],
    hostname: str | None = None,
    *,
    token_file: Path | None = None,
    insecure_http: bool = False,
) -> Target:
    """Pick the relay and the token (see the module docstring). Raises ConfigError."""
    embedded: tuple[Path, str | None] | None = None
    url = relay or default_relay()
    if url is None:
        embedded = _embedded()
        url = embedded[1]
    if url is None:
        raise ConfigError(
            'no relay to attach to: pass --relay URL, set relay = "URL" in '
            f"{config_dir() / 'config.toml'}, or run `rcd start` here (it embeds one)"
        )
    url = check_relay_url(url, insecure_http=insecure_http)
    if token:
        return Target(relay=url, token=token.strip(), source="--token")
    if token_file is not None:
        return Target(relay=url, token=read_token_file(token_file), source="--token-file")
    if environ.get("RCD_TOKEN", "").strip():
        return Target(relay=url, token=environ["RCD_TOKEN"].strip(), source="$RCD_TOKEN")
    stored = load_token(url)
    if stored is not None:
        return Target(relay=url, token=stored[0], source="tokens.json", token_name=stored[1])
    relay_dir, embedded_url = embedded or _embedded()
    if url == embedded_url:
        minted, name = mint_token(relay_dir, hostname or socket.gethostname())
        save_token(url, minted, name)
        return Target(relay=url, token=minted, source="minted", token_name=name)
    raise ConfigError(
        f"no token for {url}: pass --token-file PATH (or set $RCD_TOKEN, or pass --token "
        "TOKEN). Create one where the relay runs with `rcd relay token create --name NAME` "
        "(it prints the token last)"
    )
