"""The secure-payment driver against a scripted PBX: the caller leaves the agent for the capture and
comes back, the window closes on completion, time-out and hang-up, and the digits reach only the
connector."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from ari_apps.inbound import CallSession
from ari_apps.payment import PROMPTS, PaymentRefused, SecurePayments
from ccengine.core.events import CallPaymentCaptured, CallPaymentFailed, CallPaymentStarted, Payload
from ccengine.payment.capture import CardDetails
from ccengine.payment.connector import Authorization, LabConnector, PaymentRequest
from ccengine.payment.settings import PaymentSettings
from ccengine.recording.pcimask import find_card_numbers

CARD = "4111111111111111"


class ScriptedPbx:
    """Records requests; every playback finishes at once (as PlaybackFinished would report)."""

    def __init__(self, app: FakeApp):
        self.app = app
        self.requests: list[tuple[str, ...]] = []

    def __getattr__(self, name: str) -> Any:
        async def request(*args: Any) -> None:
            self.requests.append((name, *[str(a) for a in args]))
        return request

    async def play(self, channel_id: str, media: str, playback_id: str | None = None) -> str:
        self.requests.append(("play", channel_id, media))
        future = self.app.playbacks.get(playback_id or "")
        if future is not None:
            asyncio.get_running_loop().call_soon(lambda: future.done() or future.set_result(None))
        return playback_id or ""


@dataclass
class FakeApp:
    """What the driver uses of InboundApp."""

    prompts: dict[str, str] = field(default_factory=lambda: {name: f"sound:{name}" for name in PROMPTS})
    playbacks: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    events: list[Payload] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.pbx = ScriptedPbx(self)

    def emit(self, payload: Payload, call: CallSession | None = None) -> None:
        self.events.append(payload)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self.tasks.append(task)
        return task

    def moh_class(self, queue_id: str) -> str:
        return "default"

    async def play_and_wait(self, call: CallSession, media: str, limit: float = 30.0) -> None:
        self.pbx.requests.append(("play", call.customer, media))


class KeepingConnector(LabConnector):
    def __init__(self) -> None:
        super().__init__()
        self.cards: list[CardDetails] = []

    async def authorize(self, card: CardDetails, request: PaymentRequest) -> Authorization:
        self.cards.append(card)
        return await super().authorize(card, request)


def talking_call() -> CallSession:
    return CallSession(id="call-1", customer="cust", caller_number="5550100", state="talking", queue_id="general",
                       agent_id="agent1", agent_channel="agent-ch", bridge_id="bridge-1")


def settings(**changes: Any) -> PaymentSettings:
    values = {**PaymentSettings().model_dump(), "first_digit_timeout": 0.5, "inter_digit_timeout": 0.3, **changes}
    return PaymentSettings.model_construct(**values)  # time limits below the configurable floor, for speed


REQUEST = PaymentRequest("call-1", Decimal("49.90"), "EUR", "INV-1")


async def key(payments: SecurePayments, call: CallSession, *entries: str) -> None:
    """Each entry keyed after the prompt before it began (digits keyed earlier would skip it)."""
    for entry in entries:
        await asyncio.sleep(0.05)
        for digit in entry:
            payments.on_digit(call, digit)
            await asyncio.sleep(0.005)


async def test_capture_returns_the_caller_with_a_token_and_nothing_else() -> None:
    app, call, connector = FakeApp(), talking_call(), KeepingConnector()
    payments = SecurePayments(app, settings(), connector)  # type: ignore[arg-type]
    payment = await payments.start(call, REQUEST, "ann")
    assert app.pbx.requests == [("remove_from_bridge", "bridge-1", "['cust']"), ("start_moh", "agent-ch", "default"),
                                ("start_silence", "cust")]
    assert call.payment is payment and call.secure_windows == [payment.window] and payment.window.ended_at is None
    await key(payments, call, "4111111111111112#", CARD + "#", "1230#", "737#")
    await asyncio.wait_for(payment.task, 5)  # type: ignore[arg-type]

    assert [c.last4 for c in connector.cards] == ["1111"]
    assert call.payment is None and payment.window.ended_at is not None
    started, captured = app.events
    assert isinstance(started, CallPaymentStarted) and isinstance(captured, CallPaymentCaptured)
    data = captured.model_dump(mode="json")
    assert data["token"].startswith("tok_") and data["last4"] == "1111" and data["amount"] == "49.90"
    assert data["window_ended_at"] >= data["window_started_at"]
    plays = [r[2] for r in app.pbx.requests if r[0] == "play"]
    assert plays == ["sound:pay_card", "sound:pay_card_again", "sound:pay_expiry", "sound:pay_cvv",
                     "sound:pay_thanks", "sound:pay_approved"]
    requests = app.pbx.requests
    rejoin = requests.index(("add_to_bridge", "bridge-1", "['cust']"))
    assert requests.index(("stop_moh", "agent-ch")) < rejoin and requests[-1] == ("play", "agent-ch",
                                                                                   "sound:pay_approved")
    cvv = re.compile(r"(?<!\d)737(?!\d)")  # on its own: a timestamp's microseconds may hold "737" by chance
    for text in [str(e.model_dump()) for e in app.events] + [str(r) for r in requests]:
        assert find_card_numbers(text) == [] and CARD not in text and not cvv.search(text)


async def test_time_limit_unmasks_and_returns_the_caller() -> None:
    app, call = FakeApp(), talking_call()
    payments = SecurePayments(app, settings(max_seconds=0.4, first_digit_timeout=5.0), LabConnector())  # type: ignore[arg-type]
    payment = await payments.start(call, REQUEST, "ann")
    await key(payments, call, "4111")
    await asyncio.wait_for(payment.task, 5)  # type: ignore[arg-type]
    [failed] = [e for e in app.events if isinstance(e, CallPaymentFailed)]
    assert failed.reason == "timeout" and failed.last4 is None
    assert call.payment is None and payment.window.ended_at is not None
    assert ("add_to_bridge", "bridge-1", "['cust']") in app.pbx.requests
    assert app.pbx.requests[-1] == ("play", "agent-ch", "sound:pay_declined")


async def test_attempts_run_out() -> None:
    app, call = FakeApp(), talking_call()
    payments = SecurePayments(app, settings(attempts=2), LabConnector())  # type: ignore[arg-type]
    payment = await payments.start(call, REQUEST, "ann")
    await key(payments, call, "1234#", "5678#")
    await asyncio.wait_for(payment.task, 5)  # type: ignore[arg-type]
    failed = app.events[-1]
    assert isinstance(failed, CallPaymentFailed) and failed.reason == "card_invalid"


async def test_hang_up_closes_the_window_at_once_and_reports_once() -> None:
    app, call = FakeApp(), talking_call()
    payments = SecurePayments(app, settings(first_digit_timeout=5.0), LabConnector())  # type: ignore[arg-type]
    payment = await payments.start(call, REQUEST, "ann")
    await key(payments, call, "41")
    payments.abort(call)
    payments.abort(call)
    await asyncio.gather(payment.task, return_exceptions=True)  # type: ignore[arg-type]
    assert payment.task is not None and payment.task.cancelled()
    started, failed = app.events
    assert isinstance(started, CallPaymentStarted) and isinstance(failed, CallPaymentFailed)
    assert failed.reason == "hangup" and payment.window.ended_at is not None
    assert not payments.on_digit(call, "1"), "digits after the capture go nowhere"
    assert ("add_to_bridge", "bridge-1", "['cust']") not in app.pbx.requests  # the call is ending


async def test_refusals() -> None:
    app, call = FakeApp(), talking_call()
    payments = SecurePayments(app, settings(first_digit_timeout=5.0), LabConnector())  # type: ignore[arg-type]
    call.state = "queued"
    with pytest.raises(PaymentRefused, match="not connected"):
        await payments.start(call, REQUEST, "ann")
    call.state, call.recording_held_since = "talking", 1.0
    with pytest.raises(PaymentRefused, match="recording failed"):
        await payments.start(call, REQUEST, "ann")
    call.recording_held_since = None
    await payments.start(call, REQUEST, "ann")
    with pytest.raises(PaymentRefused, match="already"):
        await payments.start(call, REQUEST, "ann")
    payments.abort(call)
    assert [type(e) for e in app.events] == [CallPaymentStarted, CallPaymentFailed]
