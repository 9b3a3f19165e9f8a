"""Admin commands on a relay's data dir (``rcd relay token|environment|sign-ins|pair-code|
login-link``).

Synchronous, for the CLI. They open the database directly; a relay may be running on the
same data dir at the same time (SQLite WAL), and it sees every change on its next request,
so a revoked token stops working at once. Errors are :class:`~relay.errors.AdminError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .auth import (
    hash_secret,
    new_device_token,
    new_environment_credential,
    new_login_code,
    new_pair_code,
    normalize_pair_code,
)
from .errors import AdminError
from .records import DeviceTokenInfo, EnvironmentRecord, SignInRecord
from .server import read_relay_url
from .sqlite import SqliteDatabase, database_path

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


@contextmanager
def _database(data_dir: Path) -> Iterator[SqliteDatabase]:
    db = SqliteDatabase(database_path(data_dir))
    try:
        yield db
    finally:
        db.close()


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
    with _database(data_dir) as db:
        db.add_device_token(name, hash_secret(token))
    return token


def list_device_tokens(data_dir: Path) -> list[DeviceTokenInfo]:
    with _database(data_dir) as db:
        return db.list_device_tokens()


def revoke_device_token(data_dir: Path, name: str) -> None:
    """Delete the token; requests using it fail from now on. AdminError if unknown."""
    with _database(data_dir) as db:
        if not db.revoke_device_token(name.strip()):
            raise AdminError(f"no device token named {name!r}")


def create_pair_code(data_dir: Path, ttl: float = DEFAULT_CODE_TTL) -> str:
    """A one-time code (``K7QM-3XRD``) for ``rcd pair``, valid for ``ttl`` seconds."""
    _check_ttl(ttl)
    code = new_pair_code()
    with _database(data_dir) as db:
        db.add_pair_code(hash_secret(normalize_pair_code(code)), ttl)
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
    with _database(data_dir) as db:
        db.add_login_code(hash_secret(code), ttl)
    return f"{url.rstrip('/')}/login?code={code}"


def create_environment_credential(data_dir: Path, machine: str) -> str:
    """Mint an environment credential without pairing (the daemon's embedded relay).

    Returns the secret; only its hash is stored. From async code with a running relay,
    use :func:`relay.auth.issue_environment_credential` on its storage instead.
    """
    credential = new_environment_credential()
    with _database(data_dir) as db:
        db.add_environment_credential(machine, hash_secret(credential))
    return credential


def list_environments(data_dir: Path) -> list[EnvironmentRecord]:
    with _database(data_dir) as db:
        return db.list_environments()


def revoke_environment(data_dir: Path, environment: str) -> list[EnvironmentRecord]:
    """Revoke the credential that registered ``environment`` (an id, or a name that names
    exactly one environment); returns every environment that credential had registered.

    The relay refuses the credential and its access tokens from the next request on; open
    downlinks end within one keep-alive. AdminError if unknown, ambiguous or already revoked.
    """
    with _database(data_dir) as db:
        envs = db.list_environments()
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
        revoked = set(db.revoke_environment(matches[0].id))
        if not revoked:
            raise AdminError(f"environment {environment!r} is already revoked")
        return [e for e in envs if e.id in revoked]


def list_sign_ins(data_dir: Path) -> list[SignInRecord]:
    """Browsers signed in now (with a login link), the most recently used first."""
    with _database(data_dir) as db:
        return db.list_sign_ins()


def revoke_sign_in(data_dir: Path, sign_in: str) -> list[SignInRecord]:
    """Sign out one browser: ``sign_in`` is its id, or a name (``Chrome on Android``, any
    case) that names exactly one sign-in. Returns what was revoked.

    Its cookie is refused from the relay's next request on, and its open event streams end
    within about a second. AdminError if unknown or ambiguous.
    """
    wanted = sign_in.strip()
    with _database(data_dir) as db:
        current = db.list_sign_ins()
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
        if db.revoke_sign_in(matches[0].id) is None:
            raise AdminError(f"sign-in {wanted!r} ended meanwhile")
        return matches


def revoke_all_sign_ins(data_dir: Path) -> int:
    """Sign out every browser at once; returns how many were signed in."""
    with _database(data_dir) as db:
        return db.revoke_all_sign_ins()
