"""``rcd``: parses the command line and hands each command to its package (see :mod:`cli.main`).

Nothing else in the project imports this package.
"""

from .main import build_parser, main

__all__ = ["build_parser", "main"]
