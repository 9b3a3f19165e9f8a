"""The one helper that makes text from the network safe to print, and its users' rendering."""

from __future__ import annotations

import re
import unicodedata

from hypothesis import given
from hypothesis import strategies as st

import wire
from attach.api import parse_entry
from attach.render import Style, render_entry, render_header
from attach.state import SessionView
from common.visible import visible
from daemon.display import DisplayState, SessionLine, render

BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
#: What a hostile title or tool output may carry: OSC (window title), CSI (clear screen,
#: cursor moves), BEL, backspace, carriage return, a C1 CSI, a bidi override, a newline.
HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x1b[1;1Hx\x08\rover\x9b31m\u202egnp.exe\nsecond"


def unsafe(char: str, multiline: bool) -> bool:
    if multiline and char in "\n\t":
        return False
    return unicodedata.category(char) == "Cc" or char in BIDI or char in "\u2028\u2029"


def leftovers(text: str, multiline: bool = False) -> list[str]:
    return [c for c in text if unsafe(c, multiline)]


@given(st.text(), st.booleans())
def test_no_control_character_survives(text: str, multiline: bool) -> None:
    assert leftovers(visible(text, multiline=multiline), multiline) == []


def safe_characters(include: str = "") -> st.SearchStrategy[str]:
    return st.characters(
        codec="utf-8",
        exclude_categories=["Cc"],
        exclude_characters=BIDI + "\u2028\u2029",
        include_characters=include,
    )


@given(st.text(safe_characters()))
def test_printable_text_is_unchanged(text: str) -> None:
    assert visible(text) == text
    assert visible(text, multiline=True) == text


@given(st.text(safe_characters(include="\n\t")))
def test_multiline_text_keeps_its_lines_and_tabs(text: str) -> None:
    assert visible(text, multiline=True) == text


def test_sequences_are_shown_not_interpreted() -> None:
    assert visible(HOSTILE) == (
        "\\x1b]0;pwned\\x07\\x1b[2J\\x1b[1;1Hx\\x08\\rover\\x9b31m\\u202egnp.exe\\nsecond"
    )
    assert visible("a\r\nb\tc\n", multiline=True) == "a\nb\tc\n"
    assert visible("a\rb", multiline=True) == "a\\rb"


def test_the_live_screen_shows_hostile_titles_and_activity_escaped() -> None:
    session = SessionLine(
        id="ses_1\x1b[2J",
        title=HOSTILE,
        state="busy",
        activity="Bash: \x1b]52;c;Y3VybCBldmls\x07",
        url="http://127.0.0.1:7878/s/ses_1\x07",
    )
    screen = render(
        DisplayState(
            name="repo\x1b]0;x\x07@box",
            relay="http://127.0.0.1:7878",
            connected=True,
            spawn="same-dir",
            capacity=4,
            sign_in=None,
            sessions=(session,),
        ),
        show_qr=False,
    )
    # Only the screen's own colours remain as escape sequences.
    own = re.sub(r"\x1b\[[0-9;]*m", "", screen)
    assert leftovers(own, multiline=True) == [], repr(own)
    assert visible(HOSTILE)[:39] in own  # (a title is clipped to 40 columns)
    assert "Bash: \\x1b]52;c;Y3VybCBldmls\\x07" in own
    assert "repo\\x1b]0;x\\x07@box" in own


def test_attach_keeps_titles_on_one_line_and_output_escaped() -> None:
    info = wire.SessionInfo(
        id="ses_1",
        environment_id="env_1",
        title=HOSTILE,
        state="idle",
        spawn="worktree",
        cwd="/tmp/x\x1b[2J",
        branch="rcd/a\nb",
        created_at=1.0,
        updated_at=1.0,
        url="http://127.0.0.1:1/s/ses_1",
    )
    header = render_header(info, "http://127.0.0.1:1", Style())
    assert "\n" not in header[0] and "\n" not in header[2]
    assert header[0] == f"━━ {visible(HOSTILE)} ━━"
    view = SessionView()
    lines: list[str] = []
    payloads: list[wire.EventData] = [
        wire.AssistantText(text=HOSTILE),
        wire.ToolUse(id="t1", name="Ba\x1bsh", input={"command": HOSTILE}),
        wire.ToolResult(tool_use_id="t1", content=HOSTILE, is_error=False),
        wire.Error(code="x\x07", message=HOSTILE),
    ]
    for seq, payload in enumerate(payloads, start=1):
        entry = parse_entry(wire.encode(wire.make_event(seq, 1.0, payload)))
        assert view.accept(entry)
        lines += render_entry(entry, view, Style(), width=200)
    for line in lines:
        assert leftovers(line, multiline=True) == [], repr(line)
    assert "\\rover" in lines[0] and "\\x9b31m\\u202e" in lines[0]
    assert "\\x1b]0;pwned\\x07" in lines[0]
