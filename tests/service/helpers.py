"""Shared by the service tests: the parser as ``rcd`` will build it, and a reader of
ExecStart that undoes systemd's quoting."""

from __future__ import annotations

import argparse
import shlex

from service.parser import add_service_parser


def service_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rcd")
    add_service_parser(parser.add_subparsers(dest="command", required=True))
    return parser


def parse(*argv: str) -> argparse.Namespace:
    return service_parser().parse_args(["service", *argv])


def unit_value(unit: str, key: str) -> str:
    values = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(f"{key}=")]
    assert len(values) == 1, (key, values)
    return values[0]


def exec_start_argv(unit: str) -> list[str]:
    """ExecStart as the argv systemd runs (its quoting is a subset of POSIX shell quoting
    here: double quotes with backslash escapes; '%%' and '$$' stand for '%' and '$')."""
    line = unit_value(unit, "ExecStart").replace("%%", "%")
    return [word.replace("$$", "$") for word in shlex.split(line)]
