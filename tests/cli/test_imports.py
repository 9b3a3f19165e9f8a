"""What each command loads, and who imports whom.

The light commands (``rcd --help``, ``rcd status``, ``rcd attach``) run in a fresh
interpreter and must not load the relay's web stack (Starlette, Hypercorn) or GitPython:
``rcd`` builds every command's parser but imports a command's package only when it runs.
The package rules of ``docs/architecture.md`` are checked on the source's import statements,
``bench/`` and ``testkit/`` included.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("hypercorn", "starlette", "git")

#: Runs ``rcd ARGS`` in this process, then prints the top-level modules it loaded.
SCRIPT = """
import json, sys
from cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_by(args: list[str], tmp_path: Path) -> set[str]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_STATE_HOME": str(home / ".state"),
        "XDG_DATA_HOME": str(home / ".data"),
        "XDG_RUNTIME_DIR": "",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, *args],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    modules: list[str] = json.loads(done.stdout.splitlines()[-1])
    return set(modules)


@pytest.mark.parametrize(
    ("args", "ran"),
    [
        (["--help"], "argparse"),
        # No daemon serves this directory: status asks its control socket and says so.
        (["status", "."], "trio"),
        # A plain-http relay elsewhere is refused, after the client has been imported.
        (["attach", "ses_x", "--relay", "http://192.0.2.1", "--token", "t"], "httpx"),
    ],
    ids=["help", "status", "attach"],
)
def test_light_commands_do_not_load_the_relay_or_gitpython(
    args: list[str], ran: str, tmp_path: Path
) -> None:
    loaded = loaded_by(args, tmp_path)
    assert ran in loaded  # the command really ran that far
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))


def test_the_parser_alone_loads_no_command() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT.replace("main(sys.argv[1:])", "pass")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    loaded = set(json.loads(done.stdout.splitlines()[-1]))
    assert not loaded & {"trio", "httpx", "structlog", "ssl", *HEAVY}


def imports_of(package: str) -> dict[Path, set[str]]:
    """Each module of ``package`` and the top-level packages it imports (at any depth)."""
    found: dict[Path, set[str]] = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
        found[path.relative_to(ROOT)] = names
    return found


#: What each package must not import (docs/architecture.md). ``daemon/__main__.py`` is the
#: one exception: ``python -m daemon`` is ``rcd``.
FORBIDDEN = {
    "common": {
        "cli",
        "attach",
        "doctor",
        "service",
        "daemon",
        "relay",
        "spawn",
        "worktrees",
        "wire",
    },
    "wire": {"cli", "attach", "doctor", "service", "daemon", "relay", "spawn", "worktrees"},
    "relay": {"cli", "attach", "doctor", "service", "daemon", "spawn", "worktrees"},
    "daemon": {"cli", "attach", "service", "doctor"},
    # attach may use relay.admin, when it runs, to mint a token for the embedded relay.
    "attach": {"cli", "doctor", "service", "spawn", "worktrees"},
    "service": {"cli", "attach", "doctor", "relay", "spawn", "worktrees"},
    # run carries work across surfaces: a client of the relay (attach's) that also reads
    # the local claude's conversations (spawn.transcripts) and asks the local daemon.
    "run": {"cli", "doctor", "service", "worktrees"},
    # doctor checks the machine through daemon.checks; the relay it asks over HTTP.
    "doctor": {"cli", "attach", "relay", "spawn", "worktrees"},
    # The benchmarks use the product and testkit, never the tests.
    "bench": {"tests"},
    # testkit serves tests/ and bench/ alike, so it stands on neither.
    "testkit": {"tests", "bench"},
}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_imports_follow_the_layers(package: str) -> None:
    wrong = {
        str(path): sorted(names & FORBIDDEN[package])
        for path, names in imports_of(package).items()
        if names & FORBIDDEN[package] and path != Path("daemon/__main__.py")
    }
    assert not wrong


#: The product's packages (what ``pip install rcd`` is for).
PRODUCT = (
    "cli",
    "attach",
    "doctor",
    "service",
    "daemon",
    "spawn",
    "relay",
    "worktrees",
    "wire",
    "common",
)


@pytest.mark.parametrize("package", PRODUCT)
def test_the_product_imports_neither_its_tests_nor_their_kit(package: str) -> None:
    outside = {"tests", "testkit", "bench"}
    wrong = {
        str(path): sorted(names & outside)
        for path, names in imports_of(package).items()
        if names & outside
    }
    assert not wrong
