"""The rcd relay: routes messages between daemons and clients and keeps session history.

Run it with :func:`serve_relay`; administer a data dir with the functions of
:mod:`relay.admin` (re-exported here).

The names below are imported when first used (PEP 562), not with the package, so that
``relay.cli`` (the parser of ``rcd relay``) and ``rcd --help`` do not load Starlette and
Hypercorn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from common.lazy import lazy_exports

if TYPE_CHECKING:
    from .admin import (
        create_device_token,
        create_environment_credential,
        create_login_link,
        create_pair_code,
        list_device_tokens,
        revoke_device_token,
    )
    from .app import create_app
    from .auth import issue_environment_credential
    from .config import RelayConfig
    from .errors import (
        AdminError,
        ApiError,
        AtCapacity,
        BadRequest,
        BodyTooLarge,
        Conflict,
        EnvironmentOffline,
        NotFound,
        NotResumable,
        RelayError,
        SessionEnded,
        Unauthenticated,
    )
    from .fanout import Hub, HubStatistics
    from .records import (
        DeviceTokenInfo,
        DownlinkRead,
        EnvironmentRecord,
        NewSession,
        QueuedDirective,
        SessionRecord,
        SignInRecord,
    )
    from .server import RunningRelay, read_relay_url, serve_relay
    from .storage import SqliteStorage, Storage

#: Each public name and the module that defines it.
_WHERE = {
    "create_device_token": ".admin",
    "create_environment_credential": ".admin",
    "create_login_link": ".admin",
    "create_pair_code": ".admin",
    "list_device_tokens": ".admin",
    "revoke_device_token": ".admin",
    "create_app": ".app",
    "issue_environment_credential": ".auth",
    "RelayConfig": ".config",
    "AdminError": ".errors",
    "ApiError": ".errors",
    "AtCapacity": ".errors",
    "BadRequest": ".errors",
    "BodyTooLarge": ".errors",
    "Conflict": ".errors",
    "EnvironmentOffline": ".errors",
    "NotFound": ".errors",
    "NotResumable": ".errors",
    "RelayError": ".errors",
    "SessionEnded": ".errors",
    "Unauthenticated": ".errors",
    "Hub": ".fanout",
    "HubStatistics": ".fanout",
    "DeviceTokenInfo": ".records",
    "DownlinkRead": ".records",
    "EnvironmentRecord": ".records",
    "NewSession": ".records",
    "QueuedDirective": ".records",
    "SessionRecord": ".records",
    "SignInRecord": ".records",
    "RunningRelay": ".server",
    "read_relay_url": ".server",
    "serve_relay": ".server",
    "SqliteStorage": ".storage",
    "Storage": ".storage",
}

__all__ = [
    "AdminError",
    "ApiError",
    "AtCapacity",
    "BadRequest",
    "BodyTooLarge",
    "Conflict",
    "DeviceTokenInfo",
    "DownlinkRead",
    "EnvironmentOffline",
    "EnvironmentRecord",
    "Hub",
    "HubStatistics",
    "NewSession",
    "NotFound",
    "NotResumable",
    "QueuedDirective",
    "RelayConfig",
    "RelayError",
    "RunningRelay",
    "SessionEnded",
    "SessionRecord",
    "SignInRecord",
    "SqliteStorage",
    "Storage",
    "Unauthenticated",
    "create_app",
    "create_device_token",
    "create_environment_credential",
    "create_login_link",
    "create_pair_code",
    "issue_environment_credential",
    "list_device_tokens",
    "read_relay_url",
    "revoke_device_token",
    "serve_relay",
]


__getattr__, __dir__ = lazy_exports(__name__, _WHERE, __all__)
