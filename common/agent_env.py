"""The environment an agent starts with: the daemon's, less what is rcd's own.

An agent runs every tool its model asks for, and whatever those tools print can end up in
the session's log. So nothing that gives power over rcd itself is handed down:

* every ``RCD_*`` variable (``RCD_TOKEN`` is a device token that drives every environment
  on its relay; the others configure rcd, not the agent);
* the service manager's handles meant for the daemon alone: systemd's ``NOTIFY_SOCKET``
  and ``WATCHDOG_*`` (an agent could report the daemon ready or stopping) and socket
  activation's ``LISTEN_*``.

Everything else is kept, because that is what makes the agent work as in the user's shell:
``PATH``, ``HOME``, locale, proxies (``HTTPS_PROXY``, ``NO_PROXY``), CA bundles
(``SSL_CERT_FILE``), and the agent's own keys and settings (``ANTHROPIC_API_KEY``,
``ANTHROPIC_BASE_URL``, Bedrock's ``AWS_*``, Vertex's ``CLOUD_ML_*``/``GOOGLE_*``).
The daemon then adds one variable of its own, ``RCD_AGENT_OF`` (see
:mod:`daemon.agents_record`), which names no secret.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["WITHHELD_NAMES", "WITHHELD_PREFIXES", "agent_environment", "withheld"]

#: Variables whose name starts with one of these (compared in upper case) are withheld.
WITHHELD_PREFIXES = ("RCD_", "WATCHDOG_", "LISTEN_")
#: Variables withheld by exact name.
WITHHELD_NAMES = frozenset({"NOTIFY_SOCKET"})


def withheld(name: str) -> bool:
    """True for a variable the agent must not inherit (see the module docstring)."""
    upper = name.upper()
    return upper in WITHHELD_NAMES or upper.startswith(WITHHELD_PREFIXES)


def agent_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``environ`` without the variables the agent must not inherit."""
    return {name: value for name, value in environ.items() if not withheld(name)}
