"""What the API's handlers reach: database, users, event hub, audit, and the live engine parts."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy import Engine

from ari_apps.inbound import CallSession, InboundApp
from ari_apps.payment import SecurePayments
from ari_apps.supervision import Supervision

from ..acd.service import Acd
from ..audit.chain import AuditTrail
from ..pbx.protocol import PbxAdapter
from ..recording.keeping import Keeping
from .security import LoginPolicy, Principal, RateLimiter
from .settings import ApiSettings
from .stream import EventHub
from .users import UserStore

if TYPE_CHECKING:
    from ..dialer.host import CampaignHost


@dataclass
class Metrics:
    requests: dict[tuple[str, int], int] = field(default_factory=dict)
    webhook_deliveries: dict[str, int] = field(default_factory=dict)  # outcome → count
    logins: dict[str, int] = field(default_factory=dict)

    def count(self, table: dict[Any, int], key: Any) -> None:
        table[key] = table.get(key, 0) + 1


@dataclass
class ApiContext:
    settings: ApiSettings
    db: Engine
    hub: EventHub
    acd: Acd | None = None
    pbx: PbxAdapter | None = None
    reasons: tuple[str, ...] = ("break",)
    supervision: Supervision | None = None  # listen / whisper / barge, when the engine runs
    live_call: Callable[[str], CallSession | None] | None = None  # call id → the engine's live call
    inbound: Callable[[], InboundApp | None] = lambda: None  # the engine's inbound calls (transfers)
    keeping: Keeping | None = None  # legal holds, purge and erasure of sealed recordings
    campaigns: CampaignHost | None = None  # blended campaigns started through the API
    payments: SecurePayments | None = None  # agent-requested card capture, when the engine runs
    users: UserStore = field(init=False)
    audit: AuditTrail = field(init=False)
    limiter: RateLimiter = field(init=False)
    metrics: Metrics = field(default_factory=Metrics)
    extras: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.users = UserStore(self.db, LoginPolicy(self.settings.lockout_failures, self.settings.lockout_seconds),
                               self.settings.session_seconds)
        self.audit = AuditTrail(self.db)
        self.limiter = RateLimiter(self.settings.rate_per_second, self.settings.rate_burst)

    async def record(self, who: Principal | str, action: str, target: str = "", *, request: web.Request | None = None,
                     outcome: str = "success", details: Mapping[str, Any] | None = None) -> None:
        """Append a privileged action to the hash-chained audit trail (off the event loop)."""
        actor = who.username if isinstance(who, Principal) else who
        source = request.remote or "" if request is not None else ""
        await asyncio.to_thread(self.audit.append, actor, action, target, source=source, outcome=outcome,
                                details=details)


CONTEXT: web.AppKey[ApiContext] = web.AppKey("ccengine_api", ApiContext)
