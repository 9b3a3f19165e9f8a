"""structlog, configured once: JSON lines when not on a terminal, pretty on one.

The standard library's loggers (Hypercorn's error log, httpx) are rendered by the same
processors (structlog's ``ProcessorFormatter``), so a service manager gets one format: a
line from Hypercorn is a JSON object like any other, with the logger's name.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

__all__ = ["configure_logging"]


class _Handler(logging.StreamHandler[TextIO]):
    """The root logger's handler that :func:`configure_logging` installed (a later call
    replaces it)."""


def configure_logging(
    *, verbose: bool = False, json_lines: bool | None = None, file: TextIO | None = None
) -> None:
    """Configure structlog and the standard library's logging for the whole process (call
    once, from the CLI entry; a second call replaces the first).

    Logs go to ``file`` (default: stderr). ``json_lines`` defaults to "the file is not a
    terminal" (journald, launchd, pipes, log files). Third-party loggers log warnings and
    worse, or with ``verbose`` from info on.
    """
    stream = file or sys.stderr
    if json_lines is None:
        json_lines = not stream.isatty()
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json_lines else structlog.dev.ConsoleRenderer()
    )
    # What every line gets, structlog's own and the standard library's alike.
    stamped: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*stamped, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if verbose else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=True,
    )
    handler = _Handler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *stamped],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for installed in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(installed)
    root.addHandler(handler)
    root.setLevel(logging.INFO if verbose else logging.WARNING)
