"""Which relay and token ``rcd attach`` uses; a token for this machine's embedded relay is
minted once, stored with mode 0600 and reused."""

from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pytest
import trio

from attach.auth import resolve_target, tokens_path
from daemon.errors import ConfigError
from relay import admin
from relay.server import write_relay_info
from testkit.harness import home_env, start_relay
from tests.attach.pty_client import attach_argv, run_attach_plain

EMBEDDED = "http://127.0.0.1:7999"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(home / ".data"))
    return home


@pytest.fixture
def embedded_dir(home: Path) -> Path:
    """The data dir of this machine's embedded relay, as if it had run at EMBEDDED."""
    path = home / ".data" / "rcd" / "relay"
    path.mkdir(parents=True)
    write_relay_info(path, EMBEDDED)
    return path


def _attach_tokens(data_dir: Path) -> list[str]:
    return sorted(t.name for t in admin.list_device_tokens(data_dir))


def test_the_embedded_relay_gets_a_token_minted_once(embedded_dir: Path) -> None:
    first = resolve_target(None, None, {}, hostname="box")
    assert (first.relay, first.source, first.token_name) == (EMBEDDED, "minted", "attach@box")
    assert stat.S_IMODE(tokens_path().stat().st_mode) == 0o600
    stored = json.loads(tokens_path().read_text())
    assert stored == {EMBEDDED: {"name": "attach@box", "token": first.token}}
    again = resolve_target(None, None, {}, hostname="box")
    assert (again.token, again.source) == (first.token, "tokens.json")
    assert _attach_tokens(embedded_dir) == ["attach@box"]
    # The same relay named explicitly is still this machine's one.
    explicit = resolve_target(EMBEDDED + "/", None, {}, hostname="box")
    assert (explicit.relay, explicit.token) == (EMBEDDED, first.token)


def test_a_taken_name_gets_a_suffix(embedded_dir: Path) -> None:
    admin.create_device_token(embedded_dir, "attach@box")
    admin.create_device_token(embedded_dir, "attach@box-2")
    target = resolve_target(None, None, {}, hostname="box")
    assert target.token_name == "attach@box-3"
    assert _attach_tokens(embedded_dir) == ["attach@box", "attach@box-2", "attach@box-3"]


def test_explicit_token_then_environment_then_stored(embedded_dir: Path) -> None:
    stored = resolve_target(None, None, {}, hostname="box")
    from_env = resolve_target(None, None, {"RCD_TOKEN": " env-token\n"})
    assert (from_env.token, from_env.source) == ("env-token", "$RCD_TOKEN")
    explicit = resolve_target(None, "flag-token", {"RCD_TOKEN": "env-token"})
    assert (explicit.token, explicit.source) == ("flag-token", "--token")
    assert resolve_target(None, None, {}).token == stored.token


def test_a_token_file_comes_after_the_flag_and_before_the_environment(
    embedded_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(" file-token \nignored\n")
    token_file.chmod(0o600)
    env = {"RCD_TOKEN": "env-token"}
    target = resolve_target(None, None, env, token_file=token_file)
    assert (target.token, target.source) == ("file-token", "--token-file")
    assert resolve_target(None, "flag", env, token_file=token_file).source == "--token"
    assert capsys.readouterr().err == ""
    token_file.chmod(0o644)
    resolve_target(None, None, env, token_file=token_file)
    assert f"the token file {token_file} can be read by other users" in capsys.readouterr().err
    token_file.write_text("\n")
    with pytest.raises(ConfigError, match="is empty: put the device token on its first line"):
        resolve_target(None, None, env, token_file=token_file)
    with pytest.raises(ConfigError, match=r"cannot read the token file .*No such file"):
        resolve_target(None, None, env, token_file=tmp_path / "missing")


def test_config_toml_names_the_relay(home: Path, embedded_dir: Path) -> None:
    config = home / ".config" / "rcd"
    config.mkdir(parents=True)
    (config / "config.toml").write_text('relay = "https://relay.example.org/"\n')
    target = resolve_target(None, "t", {})
    assert target.relay == "https://relay.example.org"
    # Not this machine's relay: no token is minted for it.
    with pytest.raises(ConfigError, match=re.escape("no token for https://relay.example.org:")):
        resolve_target(None, None, {})
    assert _attach_tokens(embedded_dir) == []


def test_no_relay_anywhere(home: Path) -> None:
    with pytest.raises(ConfigError, match="no relay to attach to: pass --relay URL"):
        resolve_target(None, None, {})


async def test_attach_to_the_embedded_relay_with_no_options(tmp_path: Path) -> None:
    """A real relay on the embedded data dir of a throwaway home: ``rcd attach S`` alone
    finds it, mints its token (accepted by the relay: the answer is about the session)."""
    env = home_env(tmp_path / "home")
    env.pop("RCD_TOKEN", None)
    data_dir = Path(env["XDG_DATA_HOME"]) / "rcd" / "relay"
    async with trio.open_nursery() as nursery:
        relay = await start_relay(nursery, data_dir)
        for _ in range(2):
            result = await run_attach_plain(attach_argv("ses_nope"), env)
            assert result.returncode == 1, result
            assert result.stderr.decode().strip() == (
                f"rcd attach: no session ses_nope on {relay.url}"
            )
        names = await trio.to_thread.run_sync(_attach_tokens, data_dir)
        assert len([n for n in names if n.startswith("attach@")]) == 1, names
        await relay.client.aclose()
        nursery.cancel_scope.cancel()
