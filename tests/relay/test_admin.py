from __future__ import annotations

import stat
from pathlib import Path

import httpx
import pytest
import trio

from relay import AdminError, SqliteStorage, admin
from relay.server import write_relay_info
from relay.sqlite import database_path

from .conftest import register


def test_device_tokens_create_list_revoke(data_dir: Path) -> None:
    token = admin.create_device_token(data_dir, "phone")
    assert token.startswith("rcd_dev_") and len(token) > 40
    admin.create_device_token(data_dir, "tablet")
    infos = admin.list_device_tokens(data_dir)
    assert [i.name for i in infos] == ["phone", "tablet"]
    assert all(i.last_used_at is None and i.created_at > 0 for i in infos)

    admin.revoke_device_token(data_dir, "phone")
    assert [i.name for i in admin.list_device_tokens(data_dir)] == ["tablet"]


def test_database_is_private(data_dir: Path) -> None:
    admin.create_device_token(data_dir, "phone")
    assert stat.S_IMODE(database_path(data_dir).stat().st_mode) == 0o600
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700


def test_duplicate_token_name_is_refused(data_dir: Path) -> None:
    admin.create_device_token(data_dir, "phone")
    with pytest.raises(AdminError, match="already exists"):
        admin.create_device_token(data_dir, "phone")
    assert len(admin.list_device_tokens(data_dir)) == 1


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "bad\nname"])
def test_bad_token_names_are_refused(data_dir: Path, name: str) -> None:
    with pytest.raises(AdminError, match="printable"):
        admin.create_device_token(data_dir, name)


def test_revoking_an_unknown_token_is_a_clear_error(data_dir: Path) -> None:
    with pytest.raises(AdminError, match="no device token named 'ghost'"):
        admin.revoke_device_token(data_dir, "ghost")


def test_login_link_uses_relay_json_or_the_given_url(data_dir: Path) -> None:
    with pytest.raises(AdminError, match="URL is unknown"):
        admin.create_login_link(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    write_relay_info(data_dir, "https://relay.example.org")
    link = admin.create_login_link(data_dir)
    assert link.startswith("https://relay.example.org/login?code=")
    other = admin.create_login_link(data_dir, public_url="http://other:1/")
    assert other.startswith("http://other:1/login?code=")
    assert link.split("=")[1] != other.split("=")[1]


def test_ttl_must_be_positive(data_dir: Path) -> None:
    with pytest.raises(AdminError):
        admin.create_pair_code(data_dir, ttl=0)


async def test_revocation_takes_effect_at_once(
    data_dir: Path, client: httpx.AsyncClient, storage: SqliteStorage
) -> None:
    # The relay holds its own connection open while the admin command uses another.
    token = await trio.to_thread.run_sync(admin.create_device_token, data_dir, "phone")
    headers = {"authorization": f"Bearer {token}"}
    assert (await client.get("/api/sessions", headers=headers)).status_code == 200
    (info,) = await trio.to_thread.run_sync(admin.list_device_tokens, data_dir)
    assert info.last_used_at is not None

    await trio.to_thread.run_sync(admin.revoke_device_token, data_dir, "phone")
    response = await client.get("/api/sessions", headers=headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthenticated"


async def test_environment_credential_from_admin_registers(
    data_dir: Path, client: httpx.AsyncClient, storage: SqliteStorage
) -> None:
    credential = await trio.to_thread.run_sync(admin.create_environment_credential, data_dir, "m1")
    assert credential.startswith("rcd_env_")
    response = await client.post(
        "/daemon/v1/register",
        json={
            "name": "n",
            "machine": "m1",
            "directory": "/d",
            "spawn": "worktree",
            "capacity": 1,
            "agent": "claude",
        },
        headers={"authorization": f"Bearer {credential}"},
    )
    assert response.status_code == 200
    assert response.json()["environment_id"].startswith("env_")
    # ...and a second environment from the storage's own minting helper.
    other = await register(client, storage, machine="m2")
    assert other.environment_id != response.json()["environment_id"]
