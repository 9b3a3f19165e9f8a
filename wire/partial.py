"""A reply while it is written: the agent's text (or a tool's input) before its message ends.

The session log keeps finished messages only. While the agent writes one, the daemon sends
what it wrote so far up as :class:`SessionPartial` (on the uplink, never stored), and the
relay hands it to every open event stream as an SSE event :data:`PARTIAL_EVENT` without
``id:``, whose data is an :class:`AssistantPartial`. A stream opened mid-message gets the
text so far first (``offset`` 0).

A partial belongs to the moment after the log's event ``after_seq``: once any later event
is in the log (the finished message, an error, the turn's end), it is over, and a reader
drops it. Its ``block`` is the content block of the message being written; ``offset`` is
where ``text`` goes in that block's text so far. :func:`apply_partial` is the one rule for
joining them, the same in the relay, the web app and ``rcd attach``.
"""

from __future__ import annotations

from typing import Literal

import attrs

__all__ = [
    "MAX_PARTIAL_TEXT",
    "PARTIAL_EVENT",
    "AssistantPartial",
    "PartialKind",
    "SessionPartial",
    "Shown",
    "apply_partial",
]

#: The SSE event name of a partial on a client's event stream.
PARTIAL_EVENT = "assistant_partial"
#: Characters of one block's text so far that are streamed at most; the rest shows when
#: the message is finished.
MAX_PARTIAL_TEXT = 65_536

#: ``text``: the agent's words; ``tool_input``: the JSON of a tool's input, as written.
PartialKind = Literal["text", "tool_input"]


@attrs.frozen(kw_only=True)
class AssistantPartial:
    """Part of a message being written (see the module docstring)."""

    #: The log's last event when this was written; a later event ends the partial.
    after_seq: int = attrs.field(validator=attrs.validators.ge(0))
    #: The content block of the message (from 0).
    block: int = attrs.field(validator=attrs.validators.ge(0))
    kind: PartialKind
    #: The tool's name, for ``tool_input``.
    name: str | None = None
    #: Where ``text`` starts in the block's text so far.
    offset: int = attrs.field(validator=attrs.validators.ge(0))
    text: str = attrs.field(validator=attrs.validators.max_len(MAX_PARTIAL_TEXT))


@attrs.frozen(kw_only=True)
class SessionPartial:
    """One session's partial on the uplink, with that session's token."""

    session_id: str
    token: str
    partial: AssistantPartial


@attrs.frozen(kw_only=True)
class Shown:
    """What a reader shows of a message being written: its block, and the text so far."""

    after_seq: int
    block: int
    kind: PartialKind
    name: str | None
    text: str


def apply_partial(shown: Shown | None, partial: AssistantPartial, last_seq: int) -> Shown | None:
    """What to show after ``partial`` arrives, given what is shown and the log's last event
    the reader has (``last_seq``). A partial older than that event shows nothing; one of a
    new block starts over (only from offset 0: a later piece waits for its message); one
    that starts past the text so far (a piece was lost) changes nothing, and so does one
    the text so far already holds (a piece twice, or late). Applying the same partial twice
    is the same as once."""
    if partial.after_seq < last_seq:
        return None
    same = (
        shown is not None and shown.after_seq == partial.after_seq and shown.block == partial.block
    )
    base = shown.text if same and shown is not None else ""
    if partial.offset > len(base):
        return shown if same else None
    end = partial.offset + len(partial.text)
    if same and end < len(base) and base[partial.offset : end] == partial.text:
        return shown
    text = (base[: partial.offset] + partial.text)[:MAX_PARTIAL_TEXT]
    return Shown(
        after_seq=partial.after_seq,
        block=partial.block,
        kind=partial.kind,
        name=partial.name,
        text=text,
    )
