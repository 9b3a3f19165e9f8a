"""Every wire type survives encode → JSON → decode, and decoding refuses what it should."""

from __future__ import annotations

import base64
import json
import types
import typing
from typing import Any, Literal, get_args, get_origin

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

import wire

json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
json_objects = st.dictionaries(st.text(max_size=8), json_values, max_size=5)

ALL_TYPES: list[type[Any]] = [
    obj for name in wire.__all__ if attrs.has(obj := getattr(wire, name)) and isinstance(obj, type)
]


ENV_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,10}", fullmatch=True).filter(
    lambda n: not wire.settings.RESERVED_ENV.fullmatch(n.upper())
)
SETTINGS_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "capacity": st.integers(1, wire.settings.MAX_CAPACITY),
    "env": st.dictionaries(
        ENV_NAMES, st.none() | st.text(max_size=20).filter(lambda t: "\0" not in t), max_size=4
    ),
    "allowed_tools": st.lists(
        st.from_regex(wire.settings.TOOL_RULE_PATTERN, fullmatch=True).filter(
            lambda t: len(t) < 100
        ),
        max_size=3,
    ),
    "sandbox_allow_hosts": st.lists(
        st.from_regex(wire.settings.HOST_PATTERN, fullmatch=True).filter(lambda h: len(h) < 250),
        max_size=3,
    ),
}


GRANT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "tools": st.lists(
        st.from_regex(wire.grants.TOOL_NAME_PATTERN, fullmatch=True), min_size=1, max_size=3
    ),
    "minutes": st.integers(1, wire.grants.MAX_MINUTES),
    "path": st.none() | st.from_regex(r"[a-z]{1,8}(/[a-z][a-z._-]{0,7}){0,3}/?", fullmatch=True),
    "command": st.none() | st.from_regex(r"[a-z]{1,8}( [a-z-]{1,8}){0,2}", fullmatch=True),
}


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    origin = get_origin(tp)
    if tp is str:
        return st.text(min_size=1, max_size=30).filter(str.strip)
    if tp is int:
        return st.integers(1, 2**40)
    if tp is float:
        return st.floats(allow_nan=False, allow_infinity=False, width=64)
    if tp is bool:
        return st.booleans()
    if tp is type(None):
        return st.none()
    if origin is Literal:
        return st.sampled_from(get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return st.one_of(*(strategy_for(a) for a in get_args(tp)))
    if origin is list:
        return st.lists(strategy_for(get_args(tp)[0]), max_size=3)
    if origin is dict:
        return json_objects
    if attrs.has(tp):
        return builds(tp)
    raise AssertionError(f"no strategy for {tp!r}")


def builds(cls: type[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in attrs.fields(cls):
        if field.name == "type":
            continue  # a tag with its one literal default
        if cls is wire.Event and field.name == "kind":
            fields[field.name] = st.sampled_from(wire.EVENT_KINDS)
        elif cls is wire.Event and field.name == "data":
            fields[field.name] = json_objects
        elif cls is wire.SettingsUpdate and field.name in SETTINGS_FIELDS:
            fields[field.name] = st.none() | SETTINGS_FIELDS[field.name]
        elif cls is wire.LandRequest and field.name == "confirm":
            tokens = st.from_regex(wire.changes.CONFIRM_PATTERN, fullmatch=True)
            fields[field.name] = st.none() | tokens
        elif cls is wire.PushKeys:
            size = 64 if field.name == "p256dh" else 16
            prefix = b"\x04" if field.name == "p256dh" else b""
            fields[field.name] = st.binary(min_size=size, max_size=size).map(
                lambda raw, p=prefix: base64.urlsafe_b64encode(p + raw).decode().rstrip("=")
            )
        elif cls is wire.PushSubscribe and field.name == "endpoint":
            fields[field.name] = st.from_regex(wire.push.ENDPOINT_PATTERN, fullmatch=True).filter(
                lambda e: len(e) <= wire.push.MAX_ENDPOINT_LENGTH
            )
        elif cls is wire.PushSettings and field.name == "long_turn_seconds":
            fields[field.name] = st.integers(*wire.push.LONG_TURN_RANGE)
        elif cls is wire.GrantRequest and field.name in GRANT_FIELDS:
            fields[field.name] = GRANT_FIELDS[field.name]
        elif field.name == "grant_id" or (cls is wire.Grant and field.name == "id"):
            ids = st.from_regex(wire.grants.GRANT_ID_PATTERN, fullmatch=True)
            fields[field.name] = ids if field.name == "id" else st.none() | ids
        elif cls is wire.CreateSession and field.name == "agent":
            names = st.from_regex(wire.api.AGENT_NAME_PATTERN, fullmatch=True)
            fields[field.name] = st.none() | names
        elif field.name == "conversation":
            ids = st.from_regex(wire.api.CONVERSATION_ID_PATTERN, fullmatch=True)
            fields[field.name] = st.none() | ids
        else:
            fields[field.name] = strategy_for(hints[field.name])
    return st.builds(cls, **fields)


def test_every_type_is_covered() -> None:
    names = {cls.__name__ for cls in ALL_TYPES}
    assert {"Event", "StartSession", "SendMessage", "RegisterRequest", "SessionInfo"} <= names
    assert len(ALL_TYPES) >= 30


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_round_trip(cls: type[Any], data: st.DataObject) -> None:
    value = data.draw(builds(cls))
    text = wire.encode_json(value)
    assert wire.decode_json(cls, text) == value


@given(
    value=builds(wire.StartSession)
    | builds(wire.SendMessage)
    | builds(wire.DecidePermission)
    | builds(wire.ResumeSession)
    | builds(wire.StopSession)
    | builds(wire.Interrupt)
)
def test_directives_round_trip_through_the_union(value: wire.Directive) -> None:
    text = wire.encode_json(value, wire.Directive)
    assert json.loads(text)["type"] == value.type
    assert wire.decode_json(wire.Directive, text) == value


@given(st.sampled_from(list(wire.EVENT_KINDS)), st.data())
def test_event_payloads_round_trip(kind: str, data: st.DataObject) -> None:
    payload_cls = {wire.event_kind(c.__new__(c)): c for c in typing.get_args(wire.EventData)}[kind]
    payload = data.draw(builds(payload_cls))
    event = wire.make_event(data.draw(st.integers(1, 10**9)), 1.5, payload)
    assert event.kind == kind
    again = wire.decode_json(wire.Event, wire.encode_json(event))
    assert wire.decode_event_data(again) == payload


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
@given(data=st.data())
def test_extra_keys_are_refused(cls: type[Any], data: st.DataObject) -> None:
    encoded = wire.encode(data.draw(builds(cls)))
    encoded["surprise"] = 1
    with pytest.raises(wire.DecodeError, match="surprise"):
        wire.decode(cls, encoded)


@pytest.mark.parametrize("cls", ALL_TYPES, ids=lambda c: c.__name__)
@given(raw=json_values | st.binary(max_size=50))
def test_arbitrary_input_decodes_or_says_why(cls: type[Any], raw: Any) -> None:
    text = raw if isinstance(raw, bytes) else json.dumps(raw)
    try:
        wire.decode_json(cls, text)
    except wire.DecodeError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


def test_types_are_not_coerced() -> None:
    with pytest.raises(wire.DecodeError, match="expected a string"):
        wire.decode(wire.PostMessage, {"id": "a", "text": 5})
    with pytest.raises(wire.DecodeError, match="expected an integer"):
        wire.decode(wire.Ack, {"through": True})
    with pytest.raises(wire.DecodeError, match="expected an integer"):
        wire.decode(wire.Ack, {"through": 3.5})
    assert wire.decode(wire.Ack, {"through": 3.0}).through == 3  # JSON's 3.0 is 3
    with pytest.raises(wire.DecodeError, match="not valid JSON"):
        wire.decode_json(wire.Ack, b"{")
    with pytest.raises(wire.DecodeError, match="must not be empty"):
        wire.decode(wire.PostMessage, {"id": "a", "text": "  "})
    with pytest.raises(wire.DecodeError, match="unknown value"):
        wire.decode(wire.Directive, {"type": "nope", "session_id": "s"})
