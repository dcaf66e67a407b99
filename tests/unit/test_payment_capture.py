"""The card-capture dialogue (pure), the lab payment connector and the secure-window bookkeeping."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError

from ccengine.ivr.pci import SecureWindow, mask_windows
from ccengine.payment.capture import Ask, Captured, CardCapture, CardDetails, GaveUp, card_number_ok, parse_expiry
from ccengine.payment.connector import LabConnector, PaymentRequest
from ccengine.payment.settings import PaymentSettings

TODAY = date(2026, 11, 26)
CARD = "4111111111111111"


def test_card_expiry_and_code_in_turn() -> None:
    capture = CardCapture(3, TODAY)
    assert capture.start() == Ask("card")
    assert capture.feed(CARD) == Ask("expiry")
    assert capture.feed("1230") == Ask("cvv")
    done = capture.feed("737")
    assert isinstance(done, Captured)
    assert (done.card.number, done.card.expiry_month, done.card.expiry_year, done.card.cvv) == (CARD, 12, 2030, "737")


def test_a_refused_entry_is_asked_again_until_the_attempts_run_out() -> None:
    capture = CardCapture(2, TODAY)
    capture.start()
    assert capture.feed("4111111111111112") == Ask("card", again=True)  # Luhn fails
    assert capture.feed(CARD) == Ask("expiry")  # tries are counted per entry
    assert capture.feed("") == Ask("expiry", again=True)  # nothing keyed counts as a try
    assert capture.feed("1325") == GaveUp("expiry_invalid")  # month 13


def test_security_code_attempts() -> None:
    capture = CardCapture(1, TODAY)
    capture.start()
    capture.feed(CARD)
    capture.feed("1126")  # this month is still valid
    assert capture.feed("12") == GaveUp("cvv_invalid")


def test_one_attempt_at_the_card() -> None:
    capture = CardCapture(1, TODAY)
    capture.start()
    assert capture.feed("1234") == GaveUp("card_invalid")
    with pytest.raises(ValueError):
        CardCapture(0, TODAY)


@pytest.mark.parametrize(("digits", "ok"), [
    (CARD, True), ("4111111111111112", False), ("4222222222222", True),  # 13 digits
    ("411111111111", False), ("41111111111111111111", False), ("", False), ("4111-1111", False),
])
def test_card_number_shape(digits: str, ok: bool) -> None:
    assert card_number_ok(digits) is ok


@pytest.mark.parametrize(("digits", "expected"), [
    ("1126", (11, 2026)), ("1026", None), ("0027", None), ("1327", None), ("127", None), ("01a7", None),
    ("0199", (1, 2099)),
])
def test_expiry(digits: str, expected: tuple[int, int] | None) -> None:
    assert parse_expiry(digits, TODAY) == expected


def test_card_details_never_print_the_number() -> None:
    card = CardDetails(CARD, 12, 2030, "737")
    for text in (repr(card), str(card), f"{card}", repr([card])):
        assert CARD not in text and "737" not in text and "1111" in text


async def test_lab_connector_approves_good_cards_with_an_opaque_token() -> None:
    connector = LabConnector(TODAY)
    request = PaymentRequest("call-1", Decimal("49.90"), "EUR", "INV-1")
    first = await connector.authorize(CardDetails(CARD, 12, 2030, "737"), request)
    second = await connector.authorize(CardDetails(CARD, 12, 2030, "737"), request)
    assert first.approved and first.token and first.token.startswith("tok_")
    assert first.token != second.token and not any(ch.isdigit() for ch in first.token)
    expired = await connector.authorize(CardDetails(CARD, 10, 2026, "737"), request)
    assert not expired.approved and expired.token is None and "expired" in expired.decline_reason
    bad = await connector.authorize(CardDetails("4111111111111112", 12, 2030, "737"), request)
    assert not bad.approved


def test_settings_are_bounded() -> None:
    assert PaymentSettings().max_seconds == 120
    with pytest.raises(ValidationError):
        PaymentSettings(max_seconds=5)
    with pytest.raises(ValidationError):
        PaymentSettings(attempts=0)
    with pytest.raises(ValidationError):
        PaymentSettings(connector="acme")  # type: ignore[arg-type]


def test_secure_window_closes_once_and_masks_under_its_reason() -> None:
    t0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
    window = SecureWindow("secure payment", t0 + timedelta(seconds=5))
    assert window.span(t0 + timedelta(seconds=9)) == (t0 + timedelta(seconds=5), t0 + timedelta(seconds=9))
    window.close(t0 + timedelta(seconds=20))
    window.close(t0 + timedelta(seconds=30))  # the first end stands
    assert window.ended_at == t0 + timedelta(seconds=20)
    [mask] = mask_windows(t0, t0 + timedelta(seconds=60), [window.span(t0)], window.reason)
    assert (mask.start_ms, mask.end_ms, mask.reason) == (4750, 20250, "secure payment")
    clock_skew = SecureWindow("x", t0)
    clock_skew.close(t0 - timedelta(seconds=1))  # never ends before it began
    assert clock_skew.ended_at == t0
