"""The rule that joins a reply's pieces (wire.apply_partial): order, duplicates, staleness."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import wire
from wire import AssistantPartial, Shown, apply_partial


def piece(offset: int, text: str, *, after_seq: int = 5, block: int = 0) -> AssistantPartial:
    return AssistantPartial(after_seq=after_seq, block=block, kind="text", offset=offset, text=text)


@st.composite
def cut_text(draw: st.DrawFn) -> tuple[str, list[AssistantPartial]]:
    """A text, and the pieces a writer sends of it (in order, each from where the last ended)."""
    text = draw(st.text(min_size=1, max_size=60))
    cuts = sorted(draw(st.sets(st.integers(1, len(text)), max_size=8)) | {len(text)})
    pieces, start = [], 0
    for end in cuts:
        pieces.append(piece(start, text[start:end]))
        start = end
    return text, pieces


def join(pieces: list[AssistantPartial], last_seq: int = 5) -> Shown | None:
    shown = None
    for p in pieces:
        shown = apply_partial(shown, p, last_seq)
    return shown


@given(cut_text())
def test_pieces_in_order_give_the_whole_text(case: tuple[str, list[AssistantPartial]]) -> None:
    text, pieces = case
    shown = join(pieces)
    assert shown is not None and shown.text == text


@given(cut_text(), st.data())
def test_a_piece_again_or_late_changes_nothing(
    case: tuple[str, list[AssistantPartial]], data: st.DataObject
) -> None:
    text, pieces = case
    # Each piece may come again, later than the ones after it (two routes to the relay).
    delivered = list(pieces)
    for _ in range(data.draw(st.integers(0, 6))):
        again = data.draw(st.sampled_from(pieces))
        delivered.insert(data.draw(st.integers(pieces.index(again) + 1, len(delivered))), again)
    shown = join(delivered)
    assert shown is not None and shown.text == text


@given(cut_text(), st.data())
def test_a_lost_piece_stops_the_text_where_it_was(
    case: tuple[str, list[AssistantPartial]], data: st.DataObject
) -> None:
    text, pieces = case
    lost = data.draw(st.integers(1, len(pieces))) if len(pieces) > 1 else 1
    shown = join(pieces[: lost - 1] + pieces[lost:]) if lost > 1 else None
    if lost > 1:
        assert shown is not None and shown.text == "".join(p.text for p in pieces[: lost - 1])
    # Started over from offset 0 (the writer does after a failed send): whole again.
    assert join([*pieces[: lost - 1], piece(0, text)]).text == text  # type: ignore[union-attr]


@given(cut_text())
def test_applying_the_same_piece_twice_is_applying_it_once(
    case: tuple[str, list[AssistantPartial]],
) -> None:
    _, pieces = case
    shown = None
    for p in pieces:
        once = apply_partial(shown, p, 5)
        assert apply_partial(once, p, 5) == once
        shown = once


def test_a_later_event_ends_it_and_an_older_piece_shows_nothing() -> None:
    shown = apply_partial(None, piece(0, "hello"), 5)
    assert shown is not None
    assert apply_partial(shown, piece(5, " world"), last_seq=6) is None
    # A reader that has not seen the events up to after_seq yet shows it anyway.
    assert apply_partial(None, piece(0, "hi", after_seq=9), last_seq=5) is not None


def test_a_new_block_starts_only_from_its_first_character() -> None:
    shown = apply_partial(None, piece(0, "text"), 5)
    tool = AssistantPartial(
        after_seq=5, block=1, kind="tool_input", name="Write", offset=0, text='{"file'
    )
    assert apply_partial(shown, piece(3, "zz", block=1), 5) is None
    joined = apply_partial(shown, tool, 5)
    assert joined == Shown(after_seq=5, block=1, kind="tool_input", name="Write", text='{"file')


def test_the_text_so_far_is_capped() -> None:
    big = "x" * wire.MAX_PARTIAL_TEXT
    shown = apply_partial(None, piece(0, big), 5)
    shown = apply_partial(shown, piece(len(big), "more"), 5)
    assert shown is not None and len(shown.text) == wire.MAX_PARTIAL_TEXT


def test_an_uplink_request_without_partials_says_nothing_of_them() -> None:
    """A relay of before partials refuses the key: it is left out when there are none."""
    plain = wire.UplinkRequest(sessions=[], ack=3)
    assert wire.encode(plain) == {"sessions": [], "ack": 3}
    assert wire.decode(wire.UplinkRequest, {"sessions": [], "ack": 3}) == plain
    one = wire.SessionPartial(session_id="s", token="t", partial=piece(0, "hi"))
    with_one = wire.UplinkRequest(sessions=[], partials=[one])
    assert wire.decode_json(wire.UplinkRequest, wire.encode_json(with_one)) == with_one
