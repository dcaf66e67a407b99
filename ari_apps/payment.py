"""Agent-requested secure payment on a live call: the caller keys a card into the engine, not to the agent.

The caller leaves the agent's bridge for an engine-driven DTMF capture (what to ask and when to
give up is :class:`~ccengine.payment.capture.CardCapture`'s business); the agent stays in the
bridge on hold music and cannot hear the tones. Between prompts the caller is sent generated
silence: a recording only advances on frames, and without them the capture would vanish from its
timeline and every later mask offset would drift. A PCI mask window covers the call's recording
from just before the caller leaves until they are back, and closes on whatever ends the capture
first: completion, the time limit, a hang-up. The digits live in this module's memory until the
payment connector has them, and go nowhere else: no log, event, table or AMI trace. The caller
then returns to the agent, who hears the outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ccengine.core.events import CallPaymentCaptured, CallPaymentFailed, CallPaymentStarted, PaymentFailure
from ccengine.ivr.pci import SecureWindow
from ccengine.payment.capture import MAX_DIGITS, Ask, Captured, CardCapture, GaveUp
from ccengine.payment.connector import PaymentConnector, PaymentRequest
from ccengine.payment.settings import PaymentSettings
from ccengine.pbx.protocol import PbxError

if TYPE_CHECKING:
    from .inbound import CallSession, InboundApp

log = logging.getLogger(__name__)

PROMPTS = {
    "pay_card": "Please enter your card number, then press hash.",
    "pay_card_again": "That card number is not valid. Please enter it again, then press hash.",
    "pay_expiry": "Enter the expiry date: two digits for the month, two for the year.",
    "pay_expiry_again": "That expiry date is not valid. Enter the month and year again.",
    "pay_cvv": "Enter the security code from the back of your card, then press hash.",
    "pay_cvv_again": "That security code is not valid. Enter it again, then press hash.",
    "pay_thanks": "Thank you. Your payment is complete. Returning you to your adviser.",
    "pay_sorry": "Your payment could not be completed. Returning you to your adviser.",
    "pay_approved": "Payment approved.",
    "pay_declined": "Payment not completed.",
}
PLAY_LIMIT = 30.0  # seconds: no payment prompt is longer; a lost PlaybackFinished must not stall the capture
MASK_REASON = "secure payment"


class PaymentRefused(Exception):
    """The call cannot take a payment now; the message says why (for the agent)."""


@dataclass(frozen=True)
class Outcome:
    token: str | None = None  # set: approved
    failure: PaymentFailure = "error"  # why not, when there is no token
    detail: str = ""


@dataclass
class PaymentSession:
    """One capture in progress on a call (``CallSession.payment``)."""

    id: str
    request: PaymentRequest
    requested_by: str
    window: SecureWindow
    digits: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    last4: str | None = None
    skip_terminator: bool = False  # a "#" after a full-length entry belongs to it
    concluded: bool = False


class SecurePayments:
    def __init__(self, app: InboundApp, settings: PaymentSettings, connector: PaymentConnector,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.app = app
        self.settings = settings
        self.connector = connector
        self.clock = clock

    async def start(self, call: CallSession, request: PaymentRequest, requested_by: str) -> PaymentSession:
        """Take the caller out of the agent's bridge into the card capture; returns once they are out
        (the capture goes on in the background and ends with ``call.payment_captured`` or ``_failed``)."""
        if call.finished or call.state != "talking" or call.bridge_id is None or call.agent_channel is None:
            raise PaymentRefused("the call is not connected to an agent")
        if call.payment is not None:
            raise PaymentRefused("a payment is already being captured on this call")
        if call.recording_held_since is not None or call.recording_busy:
            raise PaymentRefused("the call is on hold because its recording failed")
        payment = PaymentSession(str(uuid.uuid4()), request, requested_by, SecureWindow(MASK_REASON, self.clock()))
        call.payment = payment
        call.secure_windows.append(payment.window)  # open before the caller can key anything
        pbx = self.app.pbx
        try:
            await pbx.remove_from_bridge(call.bridge_id, [call.customer])
            await pbx.start_moh(call.agent_channel, self.app.moh_class(call.queue_id or ""))
            await pbx.start_silence(call.customer)
        except PbxError as exc:
            call.payment = None
            await self._rejoin(call)
            payment.window.close(self.clock())
            raise PaymentRefused(f"the PBX refused: {exc}") from None
        self.app.emit(CallPaymentStarted(payment_id=payment.id, amount=str(request.amount),
                                         currency=request.currency, reference=request.reference,
                                         requested_by=requested_by, window_started_at=payment.window.started_at),
                      call)
        payment.task = self.app.spawn(self._run(call, payment), f"payment-{payment.id}")
        return payment

    def on_digit(self, call: CallSession, digit: str) -> bool:
        """Route a caller's digit to the capture in progress; False if there is none."""
        if call.payment is None:
            return False
        call.payment.digits.put_nowait(digit)
        return True

    def abort(self, call: CallSession) -> None:
        """The call is ending under the capture: close the window now and report the hang-up."""
        payment = call.payment
        if payment is None:
            return
        call.payment = None
        payment.window.close(self.clock())
        if payment.task is not None and payment.task is not asyncio.current_task():
            payment.task.cancel()
        self._report(call, payment, Outcome(failure="hangup"))

    async def interrupted(self, call: CallSession, started: Mapping[str, Any]) -> None:
        """After an engine restart: a capture that was under way when it stopped (``started`` is its
        ``call.payment_started`` data) is over. The caller goes back to the agent, the recording is
        masked from the window's start until now, and the payment is reported failed."""
        await self._rejoin(call)
        window = SecureWindow(MASK_REASON, datetime.fromisoformat(started["window_started_at"]))
        window.close(self.clock())
        call.secure_windows.append(window)
        request = PaymentRequest(call.id, Decimal(started["amount"]), started["currency"], started["reference"])
        payment = PaymentSession(started["payment_id"], request, started["requested_by"], window)
        self._report(call, payment, Outcome(failure="error", detail="the engine restarted during the capture"))

    # -- the capture -----------------------------------------------------------------------------
    async def _run(self, call: CallSession, payment: PaymentSession) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.max_seconds  # the mask window's longest life
        try:
            async with asyncio.timeout_at(deadline):
                outcome = await self._dialogue(call, payment)
            left = deadline - loop.time()
            if left > 1.0:  # the caller hears the outcome too, unless the window is about to expire
                with contextlib.suppress(PbxError, TimeoutError):
                    await self.app.play_and_wait(call, self.app.prompts["pay_thanks" if outcome.token else
                                                                        "pay_sorry"], min(left, PLAY_LIMIT))
        except TimeoutError:
            outcome = Outcome(failure="timeout", detail=f"no complete entry within {self.settings.max_seconds:g} s")
        except PbxError as exc:
            outcome = Outcome(failure="error", detail=str(exc)[:120])
        except Exception as exc:  # a bug must not strand the caller; its text could hold what was keyed
            log.error("payment %s failed: %s", payment.id, type(exc).__name__)
            outcome = Outcome(failure="error", detail=type(exc).__name__)
        if call.payment is not payment:  # the call ended meanwhile: abort() reported it
            return
        await self._rejoin(call)
        call.payment = None
        payment.window.close(self.clock())
        self._report(call, payment, outcome)
        if call.agent_channel is not None:
            with contextlib.suppress(PbxError):
                await self.app.pbx.play(call.agent_channel,
                                        self.app.prompts["pay_approved" if outcome.token else "pay_declined"])

    async def _dialogue(self, call: CallSession, payment: PaymentSession) -> Outcome:
        capture = CardCapture(self.settings.attempts, self.clock().date())
        step: Ask | Captured | GaveUp = capture.start()
        while isinstance(step, Ask):
            prompt = self.app.prompts[f"pay_{step.step}_again" if step.again else f"pay_{step.step}"]
            step = capture.feed(await self._entry(call, payment, prompt, MAX_DIGITS[step.step]))
            if isinstance(step, Ask) and step.again:
                log.info("payment %s: %s entry refused", payment.id, step.step)  # never what was keyed
        if isinstance(step, GaveUp):
            return Outcome(failure=step.reason)
        payment.last4 = step.card.last4
        try:
            answer = await asyncio.wait_for(self.connector.authorize(step.card, payment.request),
                                            self.settings.authorize_timeout)
        except TimeoutError:
            return Outcome(failure="error", detail="the payment connector did not answer in time")
        except Exception as exc:  # a connector bug must not strand the caller away from the agent
            log.error("payment %s: connector failed (%s)", payment.id, type(exc).__name__)
            return Outcome(failure="error", detail="the payment connector failed")
        if not answer.approved or not answer.token:
            return Outcome(failure="declined", detail=answer.decline_reason[:120])
        return Outcome(token=answer.token)

    async def _entry(self, call: CallSession, payment: PaymentSession, prompt: str, max_digits: int) -> str:
        """Prompt (a digit already keyed skips it, the first digit stops it), then digits until "#",
        the entry's full length or silence."""
        got = ""
        if payment.digits.empty():
            got = await self._prompt(call, payment, prompt)
            await self.app.pbx.start_silence(call.customer)  # the playback ended it
        timeout = self.settings.inter_digit_timeout if got else self.settings.first_digit_timeout
        while True:
            if got.endswith("#"):
                return got[:-1]
            if len(got) >= max_digits:
                payment.skip_terminator = True
                return got
            try:
                got += await asyncio.wait_for(self._next_digit(payment), timeout)
            except TimeoutError:
                return got
            timeout = self.settings.inter_digit_timeout

    async def _prompt(self, call: CallSession, payment: PaymentSession, media: str) -> str:
        """Play ``media`` until it ends or a digit arrives; returns that digit or ""."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        playback_id = str(uuid.uuid4())
        self.app.playbacks[playback_id] = done
        first: asyncio.Future[str] = asyncio.ensure_future(self._next_digit(payment))
        try:
            await self.app.pbx.play(call.customer, media, playback_id)
            waiters: list[asyncio.Future[Any]] = [first, done]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED, timeout=PLAY_LIMIT)
            if first.done() and not done.done():
                with contextlib.suppress(PbxError):
                    await self.app.pbx.stop_playback(playback_id)
            return first.result() if first.done() else ""
        finally:
            if not first.done():
                first.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await first
            self.app.playbacks.pop(playback_id, None)

    async def _next_digit(self, payment: PaymentSession) -> str:
        while True:
            digit = await payment.digits.get()
            skip, payment.skip_terminator = payment.skip_terminator, False
            if not (skip and digit == "#"):
                return digit

    async def _rejoin(self, call: CallSession) -> None:
        """Back with the agent: music off, caller into the bridge (each step tried even if one fails)."""
        pbx = self.app.pbx
        with contextlib.suppress(PbxError):
            await pbx.stop_silence(call.customer)
        if call.agent_channel is not None:
            with contextlib.suppress(PbxError):
                await pbx.stop_moh(call.agent_channel)
        if call.bridge_id is not None:
            try:
                await pbx.add_to_bridge(call.bridge_id, [call.customer])
            except PbxError as exc:
                log.warning("call %s: caller not returned to the agent after the payment (%s)", call.id, exc)

    def _report(self, call: CallSession, payment: PaymentSession, outcome: Outcome) -> None:
        if payment.concluded:
            return
        payment.concluded = True
        request, window = payment.request, payment.window
        started, ended = window.span(self.clock())
        common: dict[str, Any] = {"payment_id": payment.id, "amount": str(request.amount),
                                  "currency": request.currency, "reference": request.reference,
                                  "window_started_at": started, "window_ended_at": ended}
        if outcome.token:
            assert payment.last4 is not None
            self.app.emit(CallPaymentCaptured(token=outcome.token, last4=payment.last4, **common), call)
        else:
            self.app.emit(CallPaymentFailed(reason=outcome.failure, detail=outcome.detail, last4=payment.last4,
                                            **common), call)
