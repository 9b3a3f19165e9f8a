"""The rcd relay: routes messages between daemons and clients and keeps session history.

Run it with :func:`serve_relay`; administer a data dir with the functions of
:mod:`relay.admin` (re-exported here).
"""

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
