"""Validation of collected digits: card numbers (Luhn), dates, account numbers."""

from __future__ import annotations

import re
from datetime import date

from ..recording.pcimask import luhn_valid

DEFAULT_ACCOUNT = r"[0-9]{8}"


def valid_card(digits: str) -> bool:
    return 12 <= len(digits) <= 19 and digits.isdigit() and luhn_valid(digits)


def valid_date(digits: str) -> bool:
    """DDMMYYYY, a real calendar day."""
    if len(digits) != 8 or not digits.isdigit():
        return False
    try:
        date(int(digits[4:]), int(digits[2:4]), int(digits[:2]))
    except ValueError:
        return False
    return True


def valid_account(digits: str, pattern: str | None = None) -> bool:
    return re.fullmatch(pattern or DEFAULT_ACCOUNT, digits) is not None


def check(kind: str, digits: str, pattern: str | None = None) -> bool:
    if kind == "luhn":
        return valid_card(digits)
    if kind == "date":
        return valid_date(digits)
    if kind == "account":
        return valid_account(digits, pattern)
    return True
