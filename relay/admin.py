"""Admin commands on a relay's data dir (``rcd relay token|environment|sign-ins|pair-code|
login-link``).

Synchronous, for the CLI (and usable from any thread, one that runs trio included). Each
works through the :class:`~relay.storage.Storage` of the data dir, opened for the command
in a trio run of its own; a relay may be running on the same data dir at the same time
(SQLite WAL), and it sees every change on its next request, so a revoked token stops
working at once. Errors are :class:`~relay.errors.AdminError`.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import trio

from .auth import (
    hash_secret,
    issue_environment_credential,
    new_device_token,
    new_login_code,
    new_pair_code,
    normalize_pair_code,
)
from .errors import AdminError
from .records import DeviceTokenInfo, EnvironmentRecord, SignInRecord
from .server import read_relay_url
from .sqlite import SqliteStorage
from .storage import Storage

__all__ = [
    "DEFAULT_CODE_TTL",
    "create_device_token",
    "create_environment_credential",
    "create_login_link",
    "create_pair_code",
    "list_device_tokens",
    "list_environments",
    "list_sign_ins",
    "revoke_all_sign_ins",
    "revoke_device_token",
    "revoke_environment",
    "revoke_sign_in",
]

#: Pair codes and login links expire after this many seconds unless told otherwise.
DEFAULT_CODE_TTL = 600.0
_MAX_NAME = 64

T = TypeVar("T")


def _on_storage(data_dir: Path, work: Callable[[Storage], Awaitable[T]]) -> T:
    """``work`` on the storage of ``data_dir``, opened for it and closed after; returns what
    it returns, raises what it raises.

    It runs in a thread of its own with its own trio run, so the caller may be plain
    synchronous code or a thread that runs trio itself (blocked meanwhile, as by any
    synchronous call)."""

    async def run() -> T:
        async with SqliteStorage.in_data_dir(data_dir) as storage:
            return await work(storage)

    done: list[T] = []
    failed: list[BaseException] = []

    def in_thread() -> None:
        try:
            done.append(trio.run(run))
        except BaseException as exc:
            failed.append(exc)

    thread = threading.Thread(target=in_thread, name="rcd relay admin")
    thread.start()
    thread.join()
    if failed:
        raise failed[0]
    return done[0]


def _check_ttl(ttl: float) -> None:
    if ttl <= 0:
        raise AdminError(f"ttl must be positive, got {ttl}")


def create_device_token(data_dir: Path, name: str) -> str:
    """Create a client token called ``name``; returns the secret (shown once, stored hashed).

    Raises AdminError if the name is empty, too long or already taken.
    """
    name = name.strip()
    if not name or len(name) > _MAX_NAME or not name.isprintable():
        raise AdminError(f"a token name must be 1 to {_MAX_NAME} printable characters")
    token = new_device_token()
    _on_storage(data_dir, lambda storage: storage.add_device_token(name, hash_secret(token)))
    return token


def list_device_tokens(data_dir: Path) -> list[DeviceTokenInfo]:
    return _on_storage(data_dir, lambda storage: storage.list_device_tokens())


def revoke_device_token(data_dir: Path, name: str) -> None:
    """Delete the token; requests using it fail from now on. AdminError if unknown."""
    if not _on_storage(data_dir, lambda storage: storage.revoke_device_token(name.strip())):
        raise AdminError(f"no device token named {name!r}")


def create_pair_code(data_dir: Path, ttl: float = DEFAULT_CODE_TTL) -> str:
    """A one-time code (``K7QM-3XRD``) for ``rcd pair``, valid for ``ttl`` seconds."""
    _check_ttl(ttl)
    code = new_pair_code()
    code_hash = hash_secret(normalize_pair_code(code))
    _on_storage(data_dir, lambda storage: storage.add_pair_code(code_hash, ttl))
    return code


def create_login_link(
    data_dir: Path, ttl: float = DEFAULT_CODE_TTL, public_url: str | None = None
) -> str:
    """A one-time sign-in URL ``<url>/login?code=...`` valid for ``ttl`` seconds.

    The URL is ``public_url`` or the one the relay wrote to ``relay.json`` when it started;
    AdminError if there is neither.
    """
    _check_ttl(ttl)
    url = public_url or read_relay_url(data_dir)
    if url is None:
        raise AdminError(
            f"no relay has run on {data_dir} yet, so its URL is unknown; start it or pass a URL"
        )
    code = new_login_code()
    _on_storage(data_dir, lambda storage: storage.add_login_code(hash_secret(code), ttl))
    return f"{url.rstrip('/')}/login?code={code}"


def create_environment_credential(data_dir: Path, machine: str) -> str:
    """Mint an environment credential without pairing (the daemon's embedded relay).

    Returns the secret; only its hash is stored. From async code with a running relay,
    use :func:`relay.auth.issue_environment_credential` on its storage instead.
    """
    return _on_storage(data_dir, lambda storage: issue_environment_credential(storage, machine))


def list_environments(data_dir: Path) -> list[EnvironmentRecord]:
    return _on_storage(data_dir, lambda storage: storage.list_environments())


def revoke_environment(data_dir: Path, environment: str) -> list[EnvironmentRecord]:
    """Revoke the credential that registered ``environment`` (an id, or a name that names
    exactly one environment); returns every environment that credential had registered.

    The relay refuses the credential and its access tokens from the next request on; open
    downlinks end within one keep-alive. AdminError if unknown, ambiguous or already revoked.
    """

    async def revoke(storage: Storage) -> list[EnvironmentRecord]:
        envs = await storage.list_environments()
        matches = [e for e in envs if e.id == environment] or [
            e for e in envs if e.name == environment
        ]
        if not matches:
            raise AdminError(f"no environment {environment!r}; see 'rcd relay environment list'")
        if len(matches) > 1:
            ids = ", ".join(e.id for e in matches)
            raise AdminError(
                f"{len(matches)} environments are named {environment!r}: use an id ({ids})"
            )
        revoked = set(await storage.revoke_environment(matches[0].id))
        if not revoked:
            raise AdminError(f"environment {environment!r} is already revoked")
        return [e for e in envs if e.id in revoked]

    return _on_storage(data_dir, revoke)


def list_sign_ins(data_dir: Path) -> list[SignInRecord]:
    """Browsers signed in now (with a login link), the most recently used first."""
    return _on_storage(data_dir, lambda storage: storage.list_sign_ins())


def revoke_sign_in(data_dir: Path, sign_in: str) -> list[SignInRecord]:
    """Sign out one browser: ``sign_in`` is its id, or a name (``Chrome on Android``, any
    case) that names exactly one sign-in. Returns what was revoked.

    Its cookie is refused from the relay's next request on, and its open event streams end
    within about a second. AdminError if unknown or ambiguous.
    """
    wanted = sign_in.strip()

    async def revoke(storage: Storage) -> list[SignInRecord]:
        current = await storage.list_sign_ins()
        matches = [s for s in current if s.id == wanted] or [
            s for s in current if s.name.casefold() == wanted.casefold()
        ]
        if not matches:
            raise AdminError(
                f"no sign-in {wanted!r} (signed out already, or expired);"
                " see 'rcd relay sign-ins list'"
            )
        if len(matches) > 1:
            ids = ", ".join(s.id for s in matches)
            raise AdminError(f"{len(matches)} sign-ins are {matches[0].name!r}: use an id ({ids})")
        if await storage.revoke_sign_in(matches[0].id) is None:
            raise AdminError(f"sign-in {wanted!r} ended meanwhile")
        return matches

    return _on_storage(data_dir, revoke)


def revoke_all_sign_ins(data_dir: Path) -> int:
    """Sign out every browser at once; returns how many were signed in."""
    return _on_storage(data_dir, lambda storage: storage.revoke_all_sign_ins())
