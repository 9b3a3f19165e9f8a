"""structlog, configured once: JSON lines when not on a terminal, pretty on one."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

__all__ = ["configure_logging"]


def configure_logging(
    *, verbose: bool = False, json_lines: bool | None = None, file: TextIO | None = None
) -> None:
    """Configure structlog for the whole process (call once, from the CLI entry).

    Logs go to ``file`` (default: stderr). ``json_lines`` defaults to "the file is not a
    terminal" (journald, launchd, pipes, log files).
    """
    stream = file or sys.stderr
    if json_lines is None:
        json_lines = not stream.isatty()
    level = logging.DEBUG if verbose else logging.INFO
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    # Third-party loggers (hypercorn, httpx) go through the standard library.
    logging.basicConfig(level=logging.WARNING if not verbose else logging.INFO, stream=stream)
