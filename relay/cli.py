"""``rcd relay``: serve the relay, or administer its data directory (tokens, environments,
sign-ins, pairing codes, login links).

:func:`add_relay_parser` imports nothing heavy, so ``rcd --help`` does not load Starlette
and Hypercorn; :func:`run_relay` loads the relay when the command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from common.argtypes import notify_command, port, positive_seconds
from common.dirs import data_dir
from common.visible import visible

if TYPE_CHECKING:
    from .config import RelayConfig

__all__ = ["add_relay_parser", "relay_config", "run_relay"]

#: The options of ``rcd relay`` that set a :class:`relay.config.RelayConfig` field (option
#: dest → field). Their defaults are RelayConfig's alone: an option not given is None here
#: and left out of the config, and ``--help`` reads the default that ``%(config_default)s``
#: stands for from RelayConfig when it is shown (the parser loads no relay module).
_CONFIG_FIELDS = {
    "host": "host",
    "port": "port",
    "public_url": "public_url",
    "tls_cert": "tls_cert",
    "tls_key": "tls_key",
    "insecure_http": "insecure_http",
    "access_token_ttl": "access_token_ttl",
    "keepalive": "keepalive_interval",
    "trusted_proxy": "trusted_proxies",
    "notify_command": "notify_command",
    "push_loopback_http": "push_loopback_http",
    "push_contact": "push_contact",
}


class _ConfigDefaults(argparse.HelpFormatter):
    """Help where ``%(config_default)s`` is the option's default in RelayConfig."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        if text is None or "%(config_default)s" not in text:
            return text
        import attrs

        from .config import RelayConfig

        value = attrs.fields_dict(RelayConfig)[_CONFIG_FIELDS[action.dest]].default
        shown = f"{value:g}" if isinstance(value, float) else str(value)
        return text.replace("%(config_default)s", shown.replace("%", "%%"))


def add_relay_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``relay`` and its subcommands to ``rcd``'s (dispatch with :func:`run_relay`)."""
    relay = subparsers.add_parser(
        "relay",
        help="run a relay, or manage its tokens and codes",
        description="Run the relay server (Starlette on Hypercorn). It binds 127.0.0.1 unless told "
        "otherwise; a non-loopback bind needs --tls-cert/--tls-key or --insecure-http.",
        formatter_class=_ConfigDefaults,
    )
    relay.add_argument("--host", help="address to bind (default: %(config_default)s)")
    relay.add_argument("--port", type=port, help="port to bind (default: %(config_default)s)")
    relay.add_argument("--data-dir", type=Path, help="where the relay keeps its database")
    relay.add_argument(
        "--public-url", metavar="URL", help="the URL clients use (for links it prints)"
    )
    relay.add_argument("--tls-cert", type=Path, metavar="FILE", help="TLS certificate (PEM)")
    relay.add_argument("--tls-key", type=Path, metavar="FILE", help="TLS private key (PEM)")
    relay.add_argument(
        "--insecure-http",
        action="store_true",
        default=None,
        help="allow plain HTTP on a non-loopback address (not recommended)",
    )
    relay.add_argument(
        "--access-token-ttl",
        type=positive_seconds,
        metavar="SECONDS",
        help="lifetime of daemons' link and session access tokens (default: %(config_default)s)",
    )
    relay.add_argument(
        "--keepalive",
        type=positive_seconds,
        metavar="SECONDS",
        help="keep-alive interval on idle streams; a revoked daemon credential also ends "
        "its open downlink within it (default: %(config_default)s)",
    )
    relay.add_argument(
        "--trusted-proxy",
        action="append",
        type=_trusted_proxy,
        metavar="ADDRESS",
        help="a reverse proxy (address or network) whose X-Forwarded-For names the client "
        "that failed sign-in and pairing attempts count against; repeatable (default: none, "
        "the header is ignored)",
    )
    relay.add_argument(
        "--notify-command",
        type=notify_command,
        metavar="CMD",
        help="run CMD for every notification (a permission request, a long turn, an error, a"
        " session that ended by itself, a machine offline), with it as JSON on its standard"
        " input: to route them to ntfy, a chat webhook... CMD is split as a shell would, not"
        " run by one",
    )
    relay.add_argument(
        "--push-contact",
        type=_push_contact,
        metavar="mailto:YOU@HOST|https://HOST",
        help="who runs this relay, as Web Push services are told (Apple's wants a real"
        " one); default: the relay's https host, else a placeholder address",
    )
    relay.add_argument(
        "--push-loopback-http",
        action="store_true",
        default=None,
        help="take Web Push endpoints on plain HTTP at loopback addresses: a push service"
        " on this machine, as the tests run one (never for a relay people use)",
    )
    relay.add_argument("--verbose", "-v", action="store_true", help="log more")
    relay_sub = relay.add_subparsers(dest="relay_command", metavar="SUBCOMMAND")

    def data_dir_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--data-dir", type=Path, dest="sub_data_dir", help="the relay's data directory"
        )

    token = relay_sub.add_parser("token", help="manage client (device) tokens")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)
    t_create = token_sub.add_parser(
        "create", help="create a token; it is printed once, on the last line"
    )
    t_create.add_argument("--name", required=True, help="a name for the device, e.g. phone")
    data_dir_arg(t_create)
    t_list = token_sub.add_parser("list", help="list tokens with their last use")
    data_dir_arg(t_list)
    t_revoke = token_sub.add_parser("revoke", help="revoke a token (effective at once)")
    t_revoke.add_argument("name")
    data_dir_arg(t_revoke)
    environment = relay_sub.add_parser(
        "environment", help="list environments, or revoke a machine's credential"
    )
    env_sub = environment.add_subparsers(
        dest="environment_command", metavar="ACTION", required=True
    )
    e_list = env_sub.add_parser("list", help="list environments with their machine and state")
    data_dir_arg(e_list)
    e_revoke = env_sub.add_parser(
        "revoke",
        help="revoke the credential of the machine serving an environment (effective at once)",
        description="Revoke the environment credential that registered ENVIRONMENT (its id or "
        "name). Every environment registered with that credential goes offline for good and "
        "its live sessions end; the daemons exit with an error and must be paired again.",
    )
    e_revoke.add_argument("environment", metavar="ENVIRONMENT", help="an environment id or name")
    data_dir_arg(e_revoke)
    sign_ins = relay_sub.add_parser(
        "sign-ins",
        help="list the browsers signed in to the web app, or sign them out",
        description="Browsers signed in to the web app with a one-time link from "
        "'rcd relay login-link'. Each is listed with its id, its browser and system (from its "
        "User-Agent), the address it signed in from, and when it signed in and was last used. "
        "Signing one out takes effect at once: its cookie is refused and its open event "
        "streams end within a second. (Called sign-ins, not sessions: in rcd a session is "
        "an agent's conversation.)",
    )
    sign_ins_sub = sign_ins.add_subparsers(dest="sign_ins_command", metavar="ACTION", required=True)
    s_list = sign_ins_sub.add_parser(
        "list", help="list signed-in browsers, the most recently used first"
    )
    data_dir_arg(s_list)
    s_revoke = sign_ins_sub.add_parser(
        "revoke",
        help="sign a browser out, or every browser with --all (effective at once)",
        description="Sign out the browser NAME|ID names (an id from 'rcd relay sign-ins list', "
        "or its name there, e.g. 'Chrome on Android', if only one sign-in has it), or every "
        "browser with --all. Its cookie is refused from the next request on and its open "
        "event streams end within a second; it needs a new login link to sign in again.",
    )
    s_revoke.add_argument(
        "sign_in", metavar="NAME|ID", nargs="?", help="a sign-in id (signin_...) or name"
    )
    s_revoke.add_argument(
        "--all", dest="all_sign_ins", action="store_true", help="sign out every browser"
    )
    data_dir_arg(s_revoke)
    pair_code = relay_sub.add_parser("pair-code", help="print a one-time code to pair a daemon")
    data_dir_arg(pair_code)
    login = relay_sub.add_parser("login-link", help="print a one-time sign-in URL for a browser")
    data_dir_arg(login)


def _trusted_proxy(text: str) -> str:
    from .config import proxy_network

    try:
        proxy_network(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text.strip()


def _push_contact(text: str) -> str:
    from .config import push_contact as check

    try:
        return check(text) or text
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _relay_data_dir(path: Path | None) -> Path:
    return path or data_dir() / "relay"


def run_relay(args: argparse.Namespace) -> int:
    """Run ``rcd relay`` (serve, or one admin subcommand) with parsed ``args``; returns the
    exit status."""
    from common.logs import configure_logging

    from . import admin
    from .errors import RelayError

    # Admin commands log nothing as a rule; whatever they do log goes to stderr too.
    configure_logging(verbose=args.verbose)
    try:
        if args.relay_command is None:
            return _serve_relay(args)
        data = _relay_data_dir(args.sub_data_dir or args.data_dir)
        if args.relay_command == "token":
            if args.token_command == "create":
                token = admin.create_device_token(data, args.name)
                print(f"Token for {args.name!r} (shown once; send it as 'Authorization: Bearer'):")
                print(token)
            elif args.token_command == "list":
                tokens = admin.list_device_tokens(data)
                if not tokens:
                    print("no device tokens")
                for t in tokens:
                    used = _when(t.last_used_at)
                    print(f"{t.name}\tcreated {_when(t.created_at)}\tlast used {used}")
            elif args.token_command == "revoke":
                admin.revoke_device_token(data, args.name)
                print(f"revoked {args.name!r}")
        elif args.relay_command == "environment":
            if args.environment_command == "list":
                envs = admin.list_environments(data)
                if not envs:
                    print("no environments")
                for e in envs:
                    state = "revoked" if e.revoked else "online" if e.online else "offline"
                    # Names, machines and directories are what daemons registered.
                    print(
                        f"{visible(e.id)}\t{visible(e.name)}\t{visible(e.machine)}\t{state}"
                        f"\t{visible(e.directory)}"
                    )
            elif args.environment_command == "revoke":
                revoked = admin.revoke_environment(data, args.environment)
                print(f"revoked the credential of {len(revoked)} environment(s):")
                for e in revoked:
                    print(f"{visible(e.id)}\t{visible(e.name)}\t{visible(e.machine)}")
        elif args.relay_command == "sign-ins":
            return _sign_ins(args, data)
        elif args.relay_command == "pair-code":
            code = admin.create_pair_code(data)
            print("Pair a daemon with: rcd pair RELAY_URL CODE  (one use, expires in 10 minutes)")
            print(code)
        elif args.relay_command == "login-link":
            print("Open this link once to sign in a browser (expires in 10 minutes):")
            print(admin.create_login_link(data))
        return 0
    except RelayError as exc:
        print(f"rcd relay: {exc}", file=sys.stderr)
        return 1


def _sign_ins(args: argparse.Namespace, data: Path) -> int:
    """``rcd relay sign-ins list|revoke``; raises RelayError for the caller to report."""
    from . import admin

    if args.sign_ins_command == "list":
        sign_ins = admin.list_sign_ins(data)
        if not sign_ins:
            print("no browser is signed in")
        for s in sign_ins:
            print(
                f"{s.id}\t{s.name}\tfrom {s.address or 'an unknown address'}"
                f"\tsigned in {_when(s.created_at)}\tlast used {_when(s.last_used_at)}"
            )
        return 0
    if (args.sign_in is None) == (not args.all_sign_ins):
        print(
            "rcd relay sign-ins revoke: give a NAME, an ID or --all (one of them);"
            " 'rcd relay sign-ins list' shows them",
            file=sys.stderr,
        )
        return 2
    if args.all_sign_ins:
        count = admin.revoke_all_sign_ins(data)
        print(f"signed out {count} browser{'' if count == 1 else 's'}")
        return 0
    (revoked,) = admin.revoke_sign_in(data, args.sign_in)
    print(f"signed out 1 browser: {revoked.id}\t{revoked.name}")
    return 0


def _when(ts: float | None) -> str:
    import datetime

    if ts is None:
        return "never"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def relay_config(args: argparse.Namespace) -> RelayConfig:
    """The settings ``rcd relay`` serves with: the options given, RelayConfig's defaults
    for the others."""
    from .config import RelayConfig

    given = {
        field: value
        for dest, field in _CONFIG_FIELDS.items()
        if (value := getattr(args, dest)) is not None
    }
    return RelayConfig(data_dir=_relay_data_dir(args.data_dir), **given)


def _serve_relay(args: argparse.Namespace) -> int:
    import trio

    from .server import serve_until_signalled

    config = relay_config(args)

    async def serve() -> None:
        async with trio.open_nursery() as nursery:
            running = await nursery.start(serve_until_signalled, config)
            print(f"rcd relay: serving {running.url} (data in {config.data_dir})", flush=True)

    trio.run(serve)
    return 0
