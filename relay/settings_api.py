"""``/api/environments/{environment_id}/settings``: an environment's settings, as its daemon
applies them (see :mod:`wire.settings`), read and changed by a signed-in client.

``GET`` answers the view the daemon last reported: the names of the variables set, never
their values. ``PUT`` (a :class:`wire.SettingsUpdate`) queues the change for the daemon and
waits (up to ``config.settings_wait``, 10 s) for the view that says the daemon took it
(``last_update`` is its id): ``200`` with it, ``409 settings_refused`` with the daemon's
reason, or ``202`` with the view before when the daemon has not answered yet. A setting the
daemon's command line pins is refused (``409 pinned``), as is a daemon that cannot keep
settings (``409 settings_unsupported``), one that is offline, and a capacity over the
relay's limit (``409 capacity_too_large``).
"""

from __future__ import annotations

import attrs
import trio
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from wire import SettingsUpdate, SettingsView, UpdateSettings, encode

from .auth import authenticate_client
from .config import RelayConfig
from .errors import Conflict
from .fanout import Hub, environment_key, settings_key
from .httputil import CLIENT_BODY_LIMIT, decode_body, json_response
from .ids import new_id
from .storage import Storage

__all__ = ["SettingsApi"]


@attrs.define(eq=False)
class SettingsApi:
    storage: Storage
    hub: Hub
    config: RelayConfig

    def routes(self) -> list[Route]:
        path = "/api/environments/{environment_id}/settings"
        return [Route(path, self.settings, methods=["GET", "PUT"])]

    async def view(self, environment_id: str) -> SettingsView:
        view = await self.storage.read_settings(environment_id)
        if view is None:
            raise Conflict(
                "settings_unsupported",
                "this environment's daemon has not reported settings: it is older than"
                " them, or has not connected since this relay started keeping them",
            )
        return view

    async def settings(self, request: Request) -> Response:
        client = await authenticate_client(request, self.storage)
        environment_id = request.path_params["environment_id"]
        before = await self.view(environment_id)
        if request.method == "GET":
            return json_response(encode(before))
        update = await decode_body(
            request, SettingsUpdate, CLIENT_BODY_LIMIT, self.config.body_deadline
        )
        self._check(update, before, await self.storage.environment_features(environment_id))
        directive = UpdateSettings(id=new_id("set"), update=update, origin=client.name)
        view = await self.send(environment_id, directive, "settings_refused")
        return json_response(encode(view or before), status=202 if view is None else 200)

    async def send(
        self, environment_id: str, directive: UpdateSettings, refused: str
    ) -> SettingsView | None:
        """Queue ``directive`` for the daemon and wait (up to ``config.settings_wait``) for
        the view that says it took it: that view, or None when it has not answered yet;
        Conflict ``refused`` with the daemon's reason when it refused."""
        await self.storage.queue_settings(environment_id, directive)
        self.hub.notify(environment_key(environment_id))
        with trio.move_on_after(self.config.settings_wait):
            while True:
                reported = self.hub.watch(settings_key(environment_id))
                view = await self.view(environment_id)
                if view.last_update == directive.id:
                    if view.last_refusal is not None:
                        raise Conflict(refused, view.last_refusal)
                    return view
                await reported.wait()
        return None

    def _check(
        self, update: SettingsUpdate, before: SettingsView, features: frozenset[str]
    ) -> None:
        if "settings" not in features:
            raise Conflict(
                "settings_unsupported",
                "this environment's daemon cannot keep settings: upgrade rcd on its machine",
            )
        pinned = [s for s in before.pinned if getattr(update, s) is not None]
        if pinned:
            raise Conflict(
                "pinned", f"set by the daemon's command line, not here: {', '.join(pinned)}"
            )
        limit = self.config.max_sessions_per_environment
        if update.capacity is not None and update.capacity > limit:
            raise Conflict(
                "capacity_too_large",
                f"capacity {update.capacity} is over this relay's limit of {limit} sessions"
                " per environment",
            )
