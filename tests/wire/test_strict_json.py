"""wire.strict_json: what the relay stores parses as it is; what it cannot store does not."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire import strict_json

INT64 = st.integers(-(2**63), 2**63 - 1)
storable = st.recursive(
    st.none()
    | st.booleans()
    | INT64
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(storable)
def test_what_can_be_stored_parses_as_it_was_written(value: object) -> None:
    assert strict_json.loads(json.dumps(value)) == value


@pytest.mark.parametrize(
    "raw", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e400", str(2**63).encode(), b"{"]
)
def test_what_cannot_be_stored_is_a_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        strict_json.loads(raw)


def test_the_caller_decides_what_an_integer_out_of_range_becomes() -> None:
    assert strict_json.loads(str(2**64), parse_int=str) == str(2**64)
