"""Reading a body line by line as it arrives (uplink requests sent as frames); the HTTP
status each kind of refusal is answered with."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import aclosing
from typing import Any, cast

import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from starlette.requests import Request

import wire
from relay import errors
from relay.errors import BodyTooLarge
from relay.httputil import decode_bytes, http_status, read_body, read_line_groups


class Chunks:
    """Just what :func:`read_line_groups` uses of a request: its body, chunk by chunk."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk


async def groups_of(chunks: list[bytes], limit: int) -> list[list[bytes]]:
    request = cast(Request, cast(Any, Chunks(chunks)))
    async with aclosing(read_line_groups(request, limit, deadline=60.0)) as groups:
        return [group async for group in groups]


async def lines_of(chunks: list[bytes], limit: int) -> list[bytes]:
    return [line for group in await groups_of(chunks, limit) for line in group]


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@given(
    lines=st.lists(st.binary(max_size=30).map(lambda b: b.replace(b"\n", b"")), max_size=8),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
    ended=st.booleans(),
)
def test_lines_come_out_whole_however_the_body_is_cut(
    lines: list[bytes], cuts: list[int], ended: bool
) -> None:
    body = b"\n".join(lines) + (b"\n" if ended else b"")
    got = trio.run(lines_of, split(body, cuts), 30)
    assert got == [line for line in lines if line.strip()]


@given(
    lines=st.lists(
        st.binary(min_size=1, max_size=20).map(lambda b: b.replace(b"\n", b"x")), max_size=8
    ),
    cuts=st.lists(st.integers(0, 10_000), max_size=10),
)
def test_the_lines_one_read_completes_come_together(lines: list[bytes], cuts: list[int]) -> None:
    """Each group holds the lines whose end came in one chunk, and none is empty: the
    uplink stores a group's frames in one transaction."""
    body = b"".join(line + b"\n" for line in lines)
    chunks = split(body, cuts)
    groups = trio.run(groups_of, chunks, 30)
    expected: list[list[bytes]] = []
    done = 0
    for chunk_end in itertools.accumulate(len(c) for c in chunks):
        ends = [
            i
            for i, at in enumerate(itertools.accumulate(len(x) + 1 for x in lines))
            if done < at <= chunk_end
        ]
        done = chunk_end
        group = [lines[i] for i in ends if lines[i].strip()]
        if group:
            expected.append(group)
    assert groups == expected
    assert all(groups)


@given(size=st.integers(11, 40), cuts=st.lists(st.integers(0, 100), max_size=5))
def test_a_line_over_the_limit_is_413_even_before_it_ends(size: int, cuts: list[int]) -> None:
    for body in (b"ok\n" + b"x" * size + b"\nok\n", b"ok\n" + b"x" * size):
        with pytest.raises(BodyTooLarge):
            trio.run(lines_of, split(body, cuts), 10)
    assert trio.run(lines_of, [b"x" * 10 + b"\n", b"y" * 10], 10) == [b"x" * 10, b"y" * 10]


async def test_the_lines_before_one_too_long_come_out_before_its_413() -> None:
    request = cast(Request, cast(Any, Chunks([b"one\ntwo\n" + b"x" * 11 + b"\nthree\n"])))
    got: list[list[bytes]] = []
    with pytest.raises(BodyTooLarge):
        async with aclosing(read_line_groups(request, 10, deadline=60.0)) as groups:
            async for group in groups:
                got.append(group)
    assert got == [[b"one", b"two"]]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (errors.BadRequest("invalid_body", "m"), 400),
        (errors.Unauthenticated(), 401),
        (errors.CredentialRevoked(), 401),
        (errors.Forbidden("wrong_scope", "m"), 403),
        (errors.CsrfMissing(), 403),
        (errors.NotFound("m"), 404),
        (errors.BodyTimeout(30.0), 408),
        (errors.Conflict("permission_already_resolved", "m"), 409),
        (errors.EnvironmentOffline("laptop"), 409),
        (errors.AtCapacity("laptop", 2, 2), 409),
        (errors.SessionEnded("ses_1"), 409),
        (errors.NotResumable("ses_1", "m"), 409),
        (errors.BodyTooLarge("m"), 413),
        (errors.RateLimited("m", retry_after=1.0), 429),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_each_kind_of_refusal_has_its_status(error: errors.ApiError, status: int) -> None:
    assert http_status(error) == status


@pytest.mark.parametrize(
    "raw",
    [
        b'{"session_id": "\\ud800x"}',
        b'{"session_id": "\\uDC00"}',
        '{"session_id": "\ud800"}'.encode("utf-8", "surrogatepass"),
        '{"session_id": "\udfff"}'.encode("utf-16", "surrogatepass"),
        '{"session_id": "\ud800"}'.encode("utf-32-le", "surrogatepass"),
    ],
)
def test_a_lone_surrogate_is_refused_however_it_is_spelled(raw: bytes) -> None:
    with pytest.raises(errors.BadRequest, match="lone UTF-16 surrogate"):
        decode_bytes(raw, wire.Interrupt)


@pytest.mark.parametrize(
    ("raw", "session_id"),
    [
        (b'{"session_id": "\\\\ud800"}', "\\ud800"),  # an escaped backslash: no surrogate
        (b'{"session_id": "\\ud7ff\\ue000"}', "\ud7ff\ue000"),  # either side of them
        ('{"session_id": "\ud55c"}'.encode(), "\ud55c"),  # UTF-8 starting with 0xED
        ('{"session_id": "ok"}'.encode("utf-16"), "ok"),
    ],
)
def test_what_only_looks_like_a_surrogate_is_taken(raw: bytes, session_id: str) -> None:
    assert decode_bytes(raw, wire.Interrupt).session_id == session_id


class Unended:
    """A request whose body came whole, as declared, but whose end never does."""

    def __init__(self, chunks: list[bytes], declared: int | None) -> None:
        self.chunks = chunks
        self.headers = {} if declared is None else {"content-length": str(declared)}

    async def stream(self) -> AsyncIterator[bytes]:
        for chunk in self.chunks:
            yield chunk
        await trio.sleep_forever()


@given(body=st.binary(max_size=64), cuts=st.lists(st.integers(0, 100), max_size=4))
def test_a_body_of_its_declared_length_is_read_without_waiting_for_its_end(
    body: bytes, cuts: list[int]
) -> None:
    async def read() -> bytes:
        request = cast(Request, cast(Any, Unended(split(body, cuts) or [b""], len(body))))
        with trio.fail_after(5):
            return await read_body(request, 1024, deadline=60.0)

    assert trio.run(read) == body


async def test_a_body_without_its_length_is_read_to_its_end() -> None:
    request = cast(Request, cast(Any, Unended([b"abc"], None)))
    with pytest.raises(errors.BodyTimeout):
        await read_body(request, 1024, deadline=0.05)  # clock: the end never comes
