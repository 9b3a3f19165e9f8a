"""Identifiers the relay hands out: random, URL-safe, prefixed by what they name."""

from __future__ import annotations

import secrets

__all__ = ["new_id"]


def new_id(prefix: str) -> str:
    """``<prefix>_<20 hex digits>``, e.g. ``ses_3f9a...``; 80 random bits."""
    return f"{prefix}_{secrets.token_hex(10)}"
