"""Tests that need root (network namespaces, other users' directories)."""

from __future__ import annotations

import os

import pytest

__all__ = ["needs_root"]


def needs_root(why: str) -> None:
    """Skip without root, or fail under the suite's own command: ``tests/run.sh`` (what CI
    runs) sets ``RCD_FULL_SUITE``, and there a test that cannot run fails with the fix
    rather than passing by skipping."""
    if os.getuid() == 0:
        return
    if os.environ.get("RCD_FULL_SUITE"):
        pytest.fail(
            f"needs root, {why}: run the suite as root (sudo bash tests/run.sh), as CI does"
        )
    pytest.skip(f"needs root, {why}")
