"""Options classes whose fields are command-line options, written once.

A field made with :func:`option` carries its flag, help, default, parser and how it is
written back on a command line; :func:`options_of` lists them, :func:`add_options` adds them to
an argparse parser, :func:`option_words` renders parsed values back as ``--flag=value`` words
(what a service file runs). ``rcd start``'s :class:`daemon.options.StartOptions` is one.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Option", "add_options", "option", "option_words", "options_of"]


@attrs.frozen(kw_only=True)
class Option:
    """One command-line option: how argparse reads it and how a command line renders it."""

    flags: tuple[str, ...]
    dest: str
    help: str
    default: Any = None
    parse: Callable[[str], Any] | None = None
    choices: tuple[str, ...] | None = None
    metavar: str | None = None
    store_true: bool = False
    always: bool = False
    """Written into the service even at its default (the service's stop deadline uses it)."""
    render: Callable[[Any], str] = str
    #: Given any number of times: the field holds the values in order.
    repeat: bool = False


_OPTION = "rcd.option"


def option(
    *flags: str,
    help: str,
    default: Any = None,
    parse: Callable[[str], Any] | None = None,
    choices: tuple[str, ...] | None = None,
    metavar: str | None = None,
    store_true: bool = False,
    always: bool = False,
    render: Callable[[Any], str] = str,
    repeat: bool = False,
) -> Any:
    """A field of an options class that is also a command-line option (``flags[0]``'s name
    is the field's: ``--stop-timeout`` is ``stop_timeout``)."""
    spec = {
        "flags": flags,
        "help": help,
        "default": False if store_true else default,
        "parse": parse,
        "choices": choices,
        "metavar": metavar,
        "store_true": store_true,
        "always": always,
        "render": render,
        "repeat": repeat,
    }
    default = () if repeat else spec["default"]
    return attrs.field(
        default=default, converter=tuple if repeat else None, metadata={_OPTION: spec}
    )


def options_of(cls: type) -> tuple[Option, ...]:
    """The command-line options of an options class, in field order."""
    found = []
    for field in attrs.fields(cls):
        spec = field.metadata.get(_OPTION)
        if spec is None:
            continue
        dest = spec["flags"][0].removeprefix("--").replace("-", "_")
        if dest != field.name:
            raise TypeError(f"option {spec['flags'][0]} is field {field.name!r}: name it {dest}")
        found.append(Option(dest=dest, **spec))
    return tuple(found)


def add_options(parser: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    """Add ``options`` to ``parser``, each with its type, choices and default."""
    for spec in options:
        if spec.store_true:
            parser.add_argument(*spec.flags, action="store_true", help=spec.help)
            continue
        kwargs: dict[str, Any] = {"help": spec.help}
        if spec.default is not None:
            kwargs["default"] = spec.default
        if spec.parse is not None:
            kwargs["type"] = spec.parse
        if spec.choices is not None:
            kwargs["choices"] = list(spec.choices)
        if spec.metavar is not None:
            kwargs["metavar"] = spec.metavar
        if spec.repeat:
            kwargs.update(action="append", default=[])
        parser.add_argument(*spec.flags, **kwargs)


def option_words(args: argparse.Namespace, options: tuple[Option, ...]) -> list[str]:
    """The ``options`` in ``args`` as ``--flag=value`` words.

    Options left at their default are omitted, except those marked ``always``. The
    ``--flag=value`` form keeps a value that starts with '-' from reading as an option.
    """
    words: list[str] = []
    for spec in options:
        value = getattr(args, spec.dest)
        if spec.store_true:
            if value:
                words.append(spec.flags[0])
        elif spec.repeat:
            words.extend(f"{spec.flags[0]}={spec.render(v)}" for v in value or ())
        elif value is not None and (spec.always or value != spec.default):
            words.append(f"{spec.flags[0]}={spec.render(value)}")
    return words
