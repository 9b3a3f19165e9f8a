"""``rcd pair RELAY_URL CODE``: exchange a one-time code for this machine's environment
credential (stored with mode 0600)."""

from __future__ import annotations

import argparse
import socket
from pathlib import Path

from daemon.transport import CA_CERT_HELP, INSECURE_HTTP_HELP

__all__ = ["add_pair_parser", "run_pair"]


def add_pair_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``pair`` to ``rcd``'s subcommands (dispatch with :func:`run_pair`)."""
    pair = subparsers.add_parser(
        "pair",
        help="pair this machine with a relay",
        description="Exchange a one-time code (from `rcd relay pair-code`) for "
        "this machine's environment credential, stored with mode 0600.",
    )
    pair.add_argument("relay_url", metavar="RELAY_URL")
    pair.add_argument("code", metavar="CODE")
    pair.add_argument("--insecure-http", action="store_true", help=INSECURE_HTTP_HELP)
    pair.add_argument("--ca-cert", type=Path, metavar="PATH", help=CA_CERT_HELP)


def run_pair(args: argparse.Namespace) -> int:
    """Run ``rcd pair`` with parsed ``args``; raises ``DaemonError`` for the caller to report."""
    import httpx
    import trio

    from daemon.paths import save_credential
    from daemon.registration import machine_id
    from daemon.relay_client import RelayClient
    from daemon.transport import check_relay_url, tls_context, warn_insecure_http

    relay = check_relay_url(args.relay_url, insecure_http=args.insecure_http)
    warn_insecure_http(relay)
    verify = tls_context(args.ca_cert) if relay.startswith("https://") else True

    async def pair() -> str:
        async with httpx.AsyncClient(verify=verify) as http:
            return await RelayClient(http=http, relay=relay).pair(args.code.strip(), machine_id())

    credential = trio.run(pair)
    path = save_credential(relay, credential)
    print(f"paired {socket.gethostname()} with {relay}; credential stored in {path}")
    print(f"run: rcd start --relay {relay}")
    return 0
