"""Text from the network, made safe to print on a terminal.

Session titles, agent and tool output, environment names, error messages from a relay:
all of it can carry bytes that a terminal *interprets* — ESC sequences (CSI cursor moves,
OSC window titles or clipboard writes, a "clear screen"), BEL, backspace and carriage
return (which overwrite what was printed), C1 controls (U+0080 to U+009F, which some
terminals read as ESC sequences too), and Unicode bidi overrides (which reorder what is
shown). :func:`visible` shows each of them as an escape (``\\x1b``, ``\\r``, ``\\u202e``)
instead, so the text reads as what it is and never reprograms the terminal. Every string
from the network goes through it before it reaches a terminal (``rcd status``, the live
screen of ``rcd start``, ``rcd attach``, error messages).
"""

from __future__ import annotations

import re

__all__ = ["visible"]

#: DEL, C1 controls; the Arabic letter mark, LRM/RLM, bidi embeddings and overrides
#: (U+202A to U+202E), isolates (U+2066 to U+2069); line and paragraph separators.
_UNSAFE_ABOVE_C0 = "\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
#: ... and every C0 control.
_ONE_LINE = re.compile(f"[\x00-\x1f{_UNSAFE_ABOVE_C0}]")
#: ... and every C0 control but tab (\x09) and newline (\x0a).
_MULTI_LINE = re.compile(f"[\x00-\x08\x0b-\x1f{_UNSAFE_ABOVE_C0}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    named = _NAMED.get(char)
    if named is not None:
        return named
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def visible(text: str, *, multiline: bool = False) -> str:
    """``text`` with every control character shown as an escape (``\\x1b``, ``\\n``).

    With ``multiline`` newlines and tabs are kept (a Windows line end, CRLF, becomes a
    newline); otherwise they are escaped too, so the text stays on one line. Printable
    text is returned unchanged.
    """
    if multiline:
        return _MULTI_LINE.sub(_escape, text.replace("\r\n", "\n"))
    return _ONE_LINE.sub(_escape, text)
