"""What was applied survives a restart, so work is never applied twice."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from daemon.applied import AppliedStore


def test_round_trip_and_private(tmp_path: Path) -> None:
    store = AppliedStore(tmp_path / "state", "env_1")
    assert store.load() == 0
    store.save(41)
    store.save(42)
    assert AppliedStore(tmp_path / "state", "env_1").load() == 42
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
    assert AppliedStore(tmp_path / "state", "env_2").load() == 0


def test_a_damaged_file_is_ignored_not_fatal(tmp_path: Path) -> None:
    store = AppliedStore(tmp_path, "env_1")
    for junk in ("{", '{"applied_through": -3}', '{"applied_through": "7"}', "[]"):
        store.path.write_text(junk)
        assert store.load() == 0
