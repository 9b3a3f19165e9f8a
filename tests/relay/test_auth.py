from __future__ import annotations

import re
from pathlib import Path

import pytest

from relay import SqliteStorage, admin
from relay.auth import hash_secret, new_pair_code, normalize_pair_code
from relay.sqlite import database_path


def test_pair_codes_are_short_and_typable() -> None:
    codes = {new_pair_code() for _ in range(200)}
    assert len(codes) == 200
    for code in codes:
        assert re.fullmatch(r"[A-HJKMNP-TV-Z2-9]{4}-[A-HJKMNP-TV-Z2-9]{4}", code)


@pytest.mark.parametrize("typed", ["k7qm-3xrd", "K7QM3XRD", " k7qm 3xrd ", "K7QM-3XRD"])
def test_pair_code_normalisation_accepts_what_people_type(typed: str) -> None:
    assert normalize_pair_code(typed) == "K7QM3XRD"


def test_hash_is_sha256_hex() -> None:
    assert hash_secret("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


async def test_no_secret_is_stored_in_clear(data_dir: Path, storage: SqliteStorage) -> None:
    secrets = [
        admin.create_device_token(data_dir, "phone"),
        normalize_pair_code(admin.create_pair_code(data_dir)),
        admin.create_login_link(data_dir, public_url="http://x").split("code=")[1],
        admin.create_environment_credential(data_dir, "m1"),
        await storage.create_environment_credential("m2"),
    ]
    raw = b"".join(
        p.read_bytes()
        for p in data_dir.iterdir()
        if p.name.startswith(database_path(data_dir).name)
    )
    assert raw  # the database and its WAL hold the rows
    for secret in secrets:
        assert secret.encode() not in raw
        assert hash_secret(secret).encode() in raw
