"""Errors raised while decoding what crosses the network."""

from __future__ import annotations

__all__ = ["DecodeError", "WireError"]


class WireError(Exception):
    """Root of every error raised by :mod:`wire`."""


class DecodeError(WireError):
    """A JSON document did not match the wire type it was decoded as.

    ``type_name`` names the expected type; ``problems`` lists each mismatch as a short
    human sentence (``"$.text: missing required field"``), ready to go into an HTTP 4xx body.
    """

    def __init__(self, type_name: str, problems: list[str]) -> None:
        self.type_name = type_name
        self.problems = problems
        super().__init__(f"invalid {type_name}: " + "; ".join(problems))
