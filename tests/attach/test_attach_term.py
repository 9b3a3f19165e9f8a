"""The line editor and the prompt line, without a terminal."""

from __future__ import annotations

import io

from attach.term import Console, CtrlC, EndOfInput, LineEditor, Submit


def test_typing_editing_and_submitting() -> None:
    editor = LineEditor()
    assert editor.feed(b"helo") == []
    assert editor.feed(b"\x7flo wor") == []
    assert editor.text == "hello wor"
    assert editor.feed(b"\x17world\r") == [Submit("hello world")]
    assert editor.text == ""
    assert editor.feed(b"one\ntwo\rthr") == [Submit("one"), Submit("two")]
    assert editor.feed(b"\x15") == [] and editor.text == ""


def test_utf8_split_across_reads_and_escape_sequences_skipped() -> None:
    editor = LineEditor()
    data = "héllo ⚙".encode()
    for byte in data:
        editor.feed(bytes([byte]))
    assert editor.text == "héllo ⚙"
    # Arrow keys (CSI and SS3 forms), Alt-x and a bell are not text.
    editor.feed(b"\x1b[A\x1b[1;5C\x1bOB\x1bx\x07!")
    assert editor.text == "héllo ⚙!"


def test_ctrl_c_and_ctrl_d() -> None:
    editor = LineEditor()
    assert editor.feed(b"abc\x03") == [CtrlC("abc")]
    assert editor.feed(b"\x03") == [CtrlC("")]
    assert editor.feed(b"x\x04") == []  # Ctrl-D with text typed does nothing
    assert editor.feed(b"\x7f\x04") == [EndOfInput()]


def test_console_keeps_the_prompt_line_below_the_output() -> None:
    out = io.StringIO()
    console = Console(out=out, interactive=True)
    console.set_prompt("idle > ")
    console.editor.feed(b"typing")
    console.print(["an event"])
    assert out.getvalue() == "\r\x1b[Kidle > \r\x1b[Kan event\nidle > typing"
    plain = io.StringIO()
    off = Console(out=plain, interactive=False)
    off.set_prompt("idle > ")
    off.print(["a", "b"])
    off.close()
    assert plain.getvalue() == "a\nb\n"


def test_a_long_line_shows_its_end_on_one_row() -> None:
    out = io.StringIO()
    console = Console(out=out, interactive=True, columns=20)
    console.set_prompt("\x1b[33m>\x1b[0m ")
    console.editor.feed(b"x" * 50 + b"END")
    console.redraw()
    last = out.getvalue().rsplit("\r\x1b[K", 1)[1]
    assert last.startswith("\x1b[33m>\x1b[0m …") and last.endswith("END")
    assert len(last) - len("\x1b[33m\x1b[0m") == 19
