"""Parsing JSON the relay can store: the one definition of "strict" for the product.

:func:`wire.decode_json` takes what Python's ``json`` takes (NaN, 1e400, integers of any
size); that is fine for documents the relay wrote itself. What comes from outside (a
client's body, an agent's output line) goes through :func:`loads` first: SQLite and most
clients hold integers in signed 64 bits and no JSON writer can carry NaN or infinity back
out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = ["INT64_LIMIT", "finite_float", "int64", "loads"]

#: Integers must lie in ``-INT64_LIMIT <= n < INT64_LIMIT`` (signed 64 bits).
INT64_LIMIT = 2**63


def int64(text: str) -> int:
    """``text`` (JSON integer digits) as an ``int``; ``ValueError`` outside signed 64 bits."""
    # Checking the length first also avoids Python's 4300-digit conversion limit.
    if len(text.lstrip("-")) > 19 or not -INT64_LIMIT <= int(text) < INT64_LIMIT:
        raise ValueError(f"integer out of the signed 64-bit range: {text[:30]}")
    return int(text)


def finite_float(text: str) -> float:
    """``text`` (a JSON number with a fraction or exponent) as a finite ``float``;
    ``ValueError`` for one that overflows (``1e400`` parses as infinity)."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number out of range: {text[:30]}")
    return value


def _no_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def loads(
    raw: bytes | str,
    *,
    parse_int: Callable[[str], Any] = int64,
    parse_float: Callable[[str], Any] = finite_float,
) -> Any:
    """Parse ``raw``: never ``NaN``/``Infinity``; integers and fractions as ``parse_int`` and
    ``parse_float`` say (by default: signed 64 bits, finite).

    Raises ``ValueError`` (``json.JSONDecodeError`` and ``UnicodeDecodeError`` are ones) for
    what is not JSON or out of range, ``RecursionError`` for absurd nesting.
    """
    return json.loads(
        raw, parse_int=parse_int, parse_float=parse_float, parse_constant=_no_constant
    )
