"""The one cattrs converter and the one place where wire documents are decoded.

Every type in :mod:`wire` is an ``attrs`` frozen class. :func:`decode` is the only way
untrusted JSON becomes one: extra keys are refused, and every cattrs or attrs failure is
mapped to :class:`~wire.errors.DecodeError` with a readable list of problems.
"""

from __future__ import annotations

import json
import typing
from typing import Any, TypeVar

import attrs
import cattrs
import cattrs.v
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from .errors import DecodeError

__all__ = ["converter", "decode", "decode_json", "encode", "encode_json"]

T = TypeVar("T")

#: The single converter for every wire type. ``forbid_extra_keys`` keeps unknown fields
#: out: a typo in a client body is a 4xx, never silently ignored.
converter = cattrs.Converter(forbid_extra_keys=True, omit_if_default=False)


def _strict_str(value: Any, _: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _strict_int(value: Any, _: Any) -> int:
    # JSON has one kind of number: 60.0 is the integer 60 (as JSON Schema says), 60.5 is not;
    # past 2**53 a float is no exact integer.
    if isinstance(value, float) and value.is_integer() and abs(value) <= 2**53:
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    return value


def _strict_float(value: Any, _: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    return float(value)


def _strict_bool(value: Any, _: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {type(value).__name__}")
    return value


# cattrs' default hooks coerce (``str(5)``, ``int("5")``); a protocol must not guess.
converter.register_structure_hook(str, _strict_str)
converter.register_structure_hook(int, _strict_int)
converter.register_structure_hook(float, _strict_float)
converter.register_structure_hook(bool, _strict_bool)


def _type_name(cl: Any) -> str:
    args = typing.get_args(cl)
    if args:
        return " | ".join(_type_name(a) for a in args)
    return getattr(cl, "__name__", None) or str(cl)


def _format_exception(exc: BaseException, type_: Any) -> str:
    # Validators (attrs or ours) raise ValueError with a sentence worth showing as is.
    if type(exc) is ValueError and exc.args:
        return f"invalid value ({exc.args[0]})"
    if isinstance(exc, TypeError) and str(exc).startswith("expected "):
        return str(exc)
    return cattrs.v.format_exception(exc, type_)


def decode(cl: type[T] | Any, data: Any) -> T:
    """Structure ``data`` (already parsed JSON) as ``cl``.

    Raises :class:`DecodeError` naming every field that is missing, mistyped or unknown.
    """
    if attrs.has(cl) and not isinstance(data, dict):
        raise DecodeError(_type_name(cl), [f"$: expected a JSON object, got {type(data).__name__}"])
    try:
        return converter.structure(data, cl)  # type: ignore[no-any-return]
    except (ClassValidationError, IterableValidationError, ForbiddenExtraKeysError) as exc:
        problems = cattrs.transform_error(exc, format_exception=_format_exception)
        raise DecodeError(_type_name(cl), problems) from None
    except KeyError as exc:
        # cattrs' literal-field union dispatch: the tag names no known type.
        raise DecodeError(_type_name(cl), [f"$.type: unknown value {exc}"]) from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise DecodeError(_type_name(cl), [f"$: {exc}"]) from None


def decode_json(cl: type[T] | Any, raw: bytes | str) -> T:
    """Parse ``raw`` as JSON and :func:`decode` it; bad JSON is a :class:`DecodeError` too."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError(_type_name(cl), [f"$: not valid JSON ({exc})"]) from None
    result: T = decode(cl, data)
    return result


def encode(obj: Any, unstructure_as: Any = None) -> Any:
    """Unstructure a wire value into plain JSON-able data."""
    return converter.unstructure(obj, unstructure_as)


def encode_json(obj: Any, unstructure_as: Any = None) -> str:
    """Compact JSON text of a wire value."""
    return json.dumps(encode(obj, unstructure_as), separators=(",", ":"), ensure_ascii=False)
