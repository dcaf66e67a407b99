"""Payment connectors: where captured card details go, and the only place they go.

A connector receives the card once, authorises the amount and answers with an opaque token (for
the agent's system to settle or refund against) or a decline reason. Real gateways implement
:class:`PaymentConnector`; :class:`LabConnector` is the lab's stand-in.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Protocol

from .capture import CardDetails, card_number_ok, cvv_ok


@dataclass(frozen=True)
class PaymentRequest:
    """What the agent asked the caller to pay."""

    call_id: str
    amount: Decimal
    currency: str  # ISO 4217
    reference: str


@dataclass(frozen=True)
class Authorization:
    approved: bool
    token: str | None = None  # opaque, never derived from the card
    decline_reason: str = ""


class PaymentConnector(Protocol):
    async def authorize(self, card: CardDetails, request: PaymentRequest) -> Authorization: ...


_TOKEN_ALPHABET = string.ascii_letters  # no digits: a token can never look like a card number


class LabConnector:
    """Approves any well-formed, unexpired card; keeps nothing."""

    def __init__(self, today: date | None = None):
        self._today = today

    async def authorize(self, card: CardDetails, request: PaymentRequest) -> Authorization:
        today = self._today or datetime.now(UTC).date()
        if not card_number_ok(card.number):
            return Authorization(False, decline_reason="invalid card number")
        if (card.expiry_year, card.expiry_month) < (today.year, today.month):
            return Authorization(False, decline_reason="card expired")
        if not cvv_ok(card.cvv):
            return Authorization(False, decline_reason="invalid security code")
        return Authorization(True, token="tok_" + "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(24)))


def make_connector(kind: str) -> PaymentConnector:
    if kind == "lab":
        return LabConnector()
    raise ValueError(f"unknown payment connector {kind!r}")
