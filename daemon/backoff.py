"""The daemon's name for :mod:`common.backoff` (``daemon/run.py`` still imports it here)."""

from __future__ import annotations

from common.backoff import full_jitter

__all__ = ["full_jitter"]
