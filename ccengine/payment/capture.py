"""The card-capture dialogue as a pure state machine: which entry to ask for next, when to retry,
when to give up. The driver (``ari_apps/payment.py``) plays the prompts and gathers the digits;
nothing here does I/O, so every rule is unit-tested without a PBX.

Entries are checked for shape only (card: 13-19 digits passing Luhn; expiry: MMYY not in the past;
security code: 3 or 4 digits). Whether the card is good is the payment connector's business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Literal

from ..recording.pcimask import luhn_valid

Step = Literal["card", "expiry", "cvv"]
FailReason = Literal["card_invalid", "expiry_invalid", "cvv_invalid"]
STEPS: tuple[Step, ...] = ("card", "expiry", "cvv")
MAX_DIGITS: dict[Step, int] = {"card": 19, "expiry": 4, "cvv": 4}


@dataclass(frozen=True)
class CardDetails:
    """What the caller keyed. Never logged: ``repr`` shows the last four digits only."""

    number: str = field(repr=False)
    expiry_month: int = field(repr=False)
    expiry_year: int = field(repr=False)  # four digits
    cvv: str = field(repr=False)

    @property
    def last4(self) -> str:
        return self.number[-4:]

    def __repr__(self) -> str:
        return f"CardDetails(last4={self.last4!r})"


@dataclass(frozen=True)
class Ask:
    """Prompt for ``step``; ``again`` after an entry that was refused."""

    step: Step
    again: bool = False


@dataclass(frozen=True)
class Captured:
    card: CardDetails


@dataclass(frozen=True)
class GaveUp:
    """The caller used up their attempts at ``reason``'s step."""

    reason: FailReason


def card_number_ok(digits: str) -> bool:
    return digits.isdigit() and 13 <= len(digits) <= 19 and luhn_valid(digits)


def parse_expiry(digits: str, today: date) -> tuple[int, int] | None:
    """(month, four-digit year) of an MMYY entry still valid on ``today`` (a card expires after
    the last day of its month), or None."""
    if len(digits) != 4 or not digits.isdigit():
        return None
    month, year = int(digits[:2]), 2000 + int(digits[2:])
    if not 1 <= month <= 12 or (year, month) < (today.year, today.month):
        return None
    return month, year


def cvv_ok(digits: str) -> bool:
    return digits.isdigit() and 3 <= len(digits) <= 4


class CardCapture:
    """Card number, then expiry, then security code; each step may be tried ``attempts`` times
    (a missing entry counts as a try)."""

    def __init__(self, attempts: int, today: date):
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.attempts = attempts
        self.today = today
        self._step = 0
        self._tries = 0
        self._entries: dict[Step, str] = {}
        self._expiry: tuple[int, int] | None = None

    @property
    def step(self) -> Step:
        return STEPS[self._step]

    def start(self) -> Ask:
        return Ask("card")

    def feed(self, entry: str) -> Ask | Captured | GaveUp:
        """The caller's entry for the current step ("" when they keyed nothing)."""
        step = self.step
        self._tries += 1
        if not self._accept(step, entry):
            if self._tries >= self.attempts:
                return GaveUp(_REASON[step])
            return Ask(step, again=True)
        self._entries[step] = entry
        self._step += 1
        self._tries = 0
        if self._step < len(STEPS):
            return Ask(self.step)
        assert self._expiry is not None
        card = CardDetails(self._entries["card"], self._expiry[0], self._expiry[1], self._entries["cvv"])
        self._entries.clear()
        return Captured(card)

    def _accept(self, step: Step, entry: str) -> bool:
        if step == "card":
            return card_number_ok(entry)
        if step == "expiry":
            self._expiry = parse_expiry(entry, self.today)
            return self._expiry is not None
        return cvv_ok(entry)


_REASON: dict[Step, FailReason] = {"card": "card_invalid", "expiry": "expiry_invalid", "cvv": "cvv_invalid"}
