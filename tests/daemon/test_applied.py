"""What was applied survives a restart, so work is never applied twice."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from daemon.applied import RECORD_SIZE, AppliedStore


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


def test_saved_in_place_as_one_record_of_fixed_size(tmp_path: Path) -> None:
    # A save is one write of the whole record over the last one (no new file renamed over
    # it): the file keeps its inode and size, whatever the number's length.
    store = AppliedStore(tmp_path, "env_1")
    store.path.write_text('{\n  "applied_through": 12345678901234567890123\n}\n')  # older
    store.save(7)
    inode = store.path.stat().st_ino
    for value in (123_456_789_012, 8, 0):
        store.save(value)
        assert store.path.stat().st_ino == inode
        assert store.path.stat().st_size == RECORD_SIZE
        assert AppliedStore(tmp_path, "env_1").load() == value
    store.close()
    store.close()  # twice is harmless
    assert stat.S_IMODE(os.stat(store.path).st_mode) == 0o600
