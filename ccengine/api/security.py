"""Credentials, roles and the per-event-type permission rules; pure functions, no I/O.

Passwords are hashed with scrypt (memory-hard, in the standard library); API tokens are
256-bit random strings, so a single SHA-256 is enough to store them (no dictionary to attack)
and lets a request be authenticated by one indexed lookup.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["agent", "supervisor", "qa", "compliance", "admin", "auditor"]
ROLES: tuple[Role, ...] = ("agent", "supervisor", "qa", "compliance", "admin", "auditor")
TOKEN_PREFIX = "cce_"

_SCRYPT = {"n": 2**14, "r": 8, "p": 1}

# event types each role may receive on the stream / webhooks (prefix match on "family.")
EVENT_FAMILIES: dict[Role, tuple[str, ...]] = {
    "agent": ("call.", "agent."),
    "supervisor": ("call.", "agent.", "engine."),
    "qa": ("call.",),
    "compliance": ("call.", "engine."),
    "admin": ("call.", "agent.", "engine."),
    "auditor": ("call.", "agent.", "engine."),
}


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    if not stored:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p),
                               dklen=len(digest) // 2)
    return hmac.compare_digest(candidate.hex(), digest)


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Principal:
    """Who is calling: resolved from a token on every request."""

    username: str
    role: Role
    agent_id: str | None = None
    # the token this request came with (revoking it ends its open streams); not part of the identity
    token_id: int | None = field(default=None, compare=False)

    def may_see_event(self, event_type: str, agent_id: str | None) -> bool:
        """Per-event-type rule; an agent only sees events that carry their own agent id."""
        if not event_type.startswith(EVENT_FAMILIES[self.role]):
            return False
        return self.role != "agent" or (agent_id is not None and agent_id == self.agent_id)


@dataclass
class LoginPolicy:
    """Lockout after ``failures`` wrong passwords in a row, for ``seconds``."""

    failures: int
    seconds: float

    def after_failure(self, failed_before: int, now: float) -> tuple[int, float | None]:
        """(new failure count, locked-until epoch or None)."""
        failed = failed_before + 1
        return (failed, now + self.seconds) if failed >= self.failures else (failed, None)


@dataclass
class RateLimiter:
    """Token bucket per client key: ``rate`` requests per second, bursts of ``burst``."""

    rate: float
    burst: int
    clock: Callable[[], float] = time.monotonic
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _pruned: float = float("-inf")

    def check(self, key: str) -> float:
        """0 if the request may go on, else the seconds to wait before retrying."""
        now = self.clock()
        full = self.burst / self.rate
        if len(self._buckets) > 10_000 and now - self._pruned >= full:
            # forget clients whose bucket has refilled (memory stays bounded), at most once per refill time
            self._pruned = now
            self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < full}
        tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate
