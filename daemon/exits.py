"""The exit statuses of ``rcd`` (documented in ``docs/cli.md``, "Exit status")."""

from __future__ import annotations

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_RELAY_OUTAGE", "EXIT_USAGE"]

EXIT_OK = 0
#: An error, with a message on stderr naming what was wrong.
EXIT_ERROR = 1
#: A usage error (bad options): running again the same way cannot help.
EXIT_USAGE = 2
#: ``rcd start`` gave up after the relay was unreachable for ``--outage-timeout`` seconds
#: (sysexits' EX_TEMPFAIL: try again later; a service manager restarts it).
EXIT_RELAY_OUTAGE = 75
