"""Run the relay: storage + app + Hypercorn's trio worker, as one nursery-started service
(:func:`serve_relay`), or until a signal stops it (:func:`serve_until_signalled`, the
process of ``rcd relay``)."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any, cast

import attrs
import httpx
import hypercorn.trio
import structlog
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.typing import ASGIFramework

from .app import create_app
from .config import RelayConfig, is_loopback
from .errors import RelayError
from .fanout import Hub
from .inprocess import InProcessTransport
from .notify import Notifier
from .push import PushSender, load_vapid_key
from .storage import SqliteStorage
from .tokens import AnswerTokens, TokenIssuer

__all__ = [
    "RELAY_INFO_FILENAME",
    "RelayConfig",
    "RunningRelay",
    "check_bind",
    "read_relay_url",
    "serve_relay",
    "serve_until_signalled",
]

log = structlog.get_logger("relay")

#: ``<data_dir>/relay.json``: ``{"url": ...}``, so admin commands can print links.
RELAY_INFO_FILENAME = "relay.json"


@attrs.frozen(kw_only=True)
class RunningRelay:
    """What :func:`serve_relay` reports once it is listening."""

    #: The public base URL (no trailing slash): ``public_url``, or derived from the bind.
    url: str
    #: The URL of the socket it binds (``url`` unless ``public_url`` is set).
    local_url: str
    #: The port actually bound (useful with ``port=0``).
    port: int
    #: Open while the relay serves; ``await storage.create_environment_credential(machine)``
    #: mints a credential without pairing (embedded mode).
    storage: SqliteStorage
    hub: Hub
    #: The relay's app as an httpx transport for a client in this process (the embedded
    #: relay's daemon): no socket, no HTTP parsing (see :mod:`relay.inprocess`).
    local: InProcessTransport


def check_bind(config: RelayConfig) -> None:
    """Refuse plain HTTP off loopback unless ``insecure_http``; raises :class:`RelayError`."""
    if (config.tls_cert is None) != (config.tls_key is None):
        raise RelayError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
    if config.lan_host is not None and not config.tls:
        raise RelayError(f"refusing to serve {config.lan_host} without TLS (a certificate and key)")
    if not config.tls and not is_loopback(config.host):
        if not config.insecure_http:
            raise RelayError(
                f"refusing to serve plain HTTP on {config.host}: anyone on the network could "
                "read tokens and sessions. Pass --tls-cert and --tls-key, put the relay behind "
                "a TLS proxy on 127.0.0.1, or pass --insecure-http if you really mean it"
            )
        log.warning("serving plain HTTP on a non-loopback address", host=config.host)


def write_relay_info(data_dir: Path, url: str, local: str | None = None) -> None:
    """Write ``relay.json`` (mode 0600) atomically: the public ``url`` (links), and the
    ``local`` one of its socket when that differs (this machine's commands)."""
    path = data_dir / RELAY_INFO_FILENAME
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o600)
        json.dump({"url": url} | ({"local": local} if local and local != url else {}), f)
        f.write("\n")
    os.replace(tmp, path)


def read_relay_url(data_dir: Path, *, local: bool = False) -> str | None:
    """The URL a relay on ``data_dir`` last announced (``local``: the URL of its socket,
    for a command on this machine, when it differs), or None if it never ran."""
    try:
        info = json.loads((data_dir / RELAY_INFO_FILENAME).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise RelayError(f"cannot read {data_dir / RELAY_INFO_FILENAME}: {exc}") from exc
    if not isinstance(info, dict):
        return None
    url = info.get("local") if local and "local" in info else info.get("url")
    return url if isinstance(url, str) else None


async def _bind(host: str, port: int) -> socket.socket:
    try:
        infos = await trio.socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except OSError as exc:
        raise RelayError(f"cannot resolve {host!r}: {exc}") from exc
    # IPv4 first: "localhost" should mean the address browsers try first.
    family, type_, proto, _, address = sorted(infos, key=lambda i: i[0] != socket.AF_INET)[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise RelayError(f"cannot listen on {host}:{port}: {exc}") from exc
    return sock


def _hypercorn_config(
    config: RelayConfig, sock: socket.socket, lan: socket.socket | None = None
) -> HypercornConfig:
    hconfig = HypercornConfig()
    # Hypercorn adopts the bound sockets (and closes them); they must not be closed here too.
    if lan is not None:
        # With a certificate, ``bind`` is TLS and ``insecure_bind`` plain: TLS on the LAN
        # address, plain HTTP on loopback only.
        hconfig.bind = [f"fd://{lan.detach()}"]
        hconfig.insecure_bind = [f"fd://{sock.detach()}"]
    else:
        hconfig.bind = [f"fd://{sock.detach()}"]
    if config.tls:
        hconfig.certfile = str(config.tls_cert)
        hconfig.keyfile = str(config.tls_key)
    hconfig.accesslog = None
    hconfig.errorlog = logging.getLogger("relay.hypercorn")
    hconfig.graceful_timeout = config.stop_timeout
    hconfig.keep_alive_timeout = config.keep_alive_timeout
    hconfig.include_server_header = False
    # Hypercorn reads a request body off the socket ahead of the app, queueing up to this
    # many chunks (of up to 64 KiB) per request. Until the app has checked the caller's
    # credential nothing of the body is wanted: with hypercorn's default (10), 2,000
    # connections with bogus credentials and big bodies parked over 1 GiB here while their
    # credentials waited their turn on the storage. With 1 the app still takes a body as
    # fast as it comes. (:func:`_drop_unread` keeps room for the end of the request.)
    hconfig.max_app_queue_size = 1
    return hconfig


def _drop_unread(app: ASGIFramework) -> ASGIFramework:
    """``app``, with whatever of a request it left unread dropped while its answer ends.

    Hypercorn tells the app that the request is over (``http.disconnect``) through the same
    bounded queue that carries the body, from inside the send of the answer's last part. A
    body the app never read (a 401 before the body; a GET's empty end) would leave no room
    for it, and the connection would wait forever. So while the last part goes out, what
    arrives is taken and dropped (freed at once); then the connection closes, or, when the
    request had ended, serves the next one.
    """

    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return

        async def send_dropping_unread(message: Any) -> None:
            if message["type"] != "http.response.body" or message.get("more_body", False):
                await send(message)
                return
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_drop_until_disconnect, receive)
                await send(message)
                nursery.cancel_scope.cancel()

        await app(scope, receive, send_dropping_unread)

    return cast(ASGIFramework, wrapped)


async def _drop_until_disconnect(receive: Any) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def serve_relay(
    config: RelayConfig,
    *,
    tokens: TokenIssuer | None = None,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    task_status: trio.TaskStatus[RunningRelay] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the relay until ``shutdown_trigger`` returns, then stop gracefully; without a
    trigger, serve until cancelled.

    Opens (or creates) the database in ``config.data_dir``, marks every environment offline
    (no downlink survives a restart), writes ``relay.json`` and reports a
    :class:`RunningRelay` through ``task_status`` once the socket is listening. Raises
    :class:`RelayError` if it cannot bind, or if binding off loopback without TLS and
    without ``insecure_http``. ``tokens`` replaces the access-token issuer (tests pass one
    on a virtual clock).

    A graceful stop takes no new connections and ends the live streams (daemons'
    environments go offline, as when they disconnect); the requests in flight get
    ``config.stop_timeout`` seconds to finish (Hypercorn's graceful timeout), then are
    cancelled; the database is closed and this returns. On cancellation everything stops at
    once (the streams' cleanups still run, shielded) and the database is closed.
    """
    check_bind(config)
    await trio.to_thread.run_sync(
        partial(config.data_dir.mkdir, mode=0o700, parents=True, exist_ok=True)
    )
    async with SqliteStorage.in_data_dir(config.data_dir) as storage:
        # Bound before anything is written: a second relay started on the same data dir
        # and port fails here, without taking the running one's environments offline.
        sock = await _bind(config.host, config.port)
        port = sock.getsockname()[1]
        bound = attrs.evolve(config, port=port)
        lan = None
        try:
            if config.lan_host is not None:
                lan = await _bind(config.lan_host, port)
            await storage.mark_all_offline()
            await trio.to_thread.run_sync(
                write_relay_info, config.data_dir, bound.url, bound.local_url
            )
        except BaseException:
            sock.close()
            if lan is not None:
                lan.close()
            raise
        hub = Hub()
        key = await trio.to_thread.run_sync(load_vapid_key, config.data_dir)
        answers = AnswerTokens()
        app = create_app(storage, hub, bound, tokens=tokens, answers=answers)
        hconfig = _hypercorn_config(bound, sock, lan)

        async def stopping(trigger: Callable[[], Awaitable[None]]) -> None:
            await trigger()
            log.info("relay stopping", grace=config.stop_timeout)
            hub.stopping.set()

        async with (
            httpx.AsyncClient(follow_redirects=False) as push_client,
            trio.open_nursery() as background,
        ):
            notifier = Notifier(
                storage,
                PushSender(key, bound.push_subject, push_client),
                offline_grace=config.offline_grace,
                answers=answers,
                command=config.notify_command,
                base_url=bound.url,
            )
            hub.listeners.append(notifier.offer)
            hub.offline_listeners.append(notifier.offline)
            background.start_soon(notifier.run)
            async with trio.open_nursery() as nursery:
                await nursery.start(
                    partial(
                        hypercorn.trio.serve,
                        _drop_unread(cast(ASGIFramework, app)),
                        hconfig,
                        shutdown_trigger=shutdown_trigger and partial(stopping, shutdown_trigger),
                        mode="asgi",
                    )
                )
                log.info("relay listening", url=bound.url, port=port, tls=bound.tls)
                local = InProcessTransport(app, nursery, server=(bound.host, port))
                task_status.started(
                    RunningRelay(
                        url=bound.url,
                        local_url=bound.local_url,
                        port=port,
                        storage=storage,
                        hub=hub,
                        local=local,
                    )
                )
            background.cancel_scope.cancel()  # pushes not sent yet are lost with the relay
    if shutdown_trigger is None:
        raise RelayError("the relay stopped serving")
    log.info("relay stopped")


async def serve_until_signalled(
    config: RelayConfig, *, task_status: trio.TaskStatus[RunningRelay] = trio.TASK_STATUS_IGNORED
) -> None:
    """:func:`serve_relay` until SIGINT or SIGTERM, then stop gracefully; a second signal
    stops at once. Call it from the main thread."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        stop = trio.Event()
        async with trio.open_nursery() as nursery:

            async def relay(task_status: trio.TaskStatus[RunningRelay]) -> None:
                await serve_relay(config, shutdown_trigger=stop.wait, task_status=task_status)
                nursery.cancel_scope.cancel()  # stopped: signals are not awaited any more

            task_status.started(await nursery.start(relay))
            async for signum in signals:
                if stop.is_set():
                    log.warning("second signal: stopping now", signal=signum)
                    nursery.cancel_scope.cancel()
                stop.set()
