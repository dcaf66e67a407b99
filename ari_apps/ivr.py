"""Runs the pure IVR interpreter against a live call: plays, gathers DTMF, calls connectors.

The interpreter (``ccengine/ivr/interpreter.py``) decides; this driver only executes its
actions on the PBX and reports back digits, silence, prompt ends and dip answers. It
publishes the walk's steps as ``call.ivr_step`` events (never the digits) and a
``call.secure_input`` window around PIN and card entry. Digits typed ahead of a prompt are
kept (type-ahead): callers who know the menu need not listen to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from ccengine.core.events import (
    CallIvrFinished,
    CallIvrStarted,
    CallIvrStep,
    CallMenuSelected,
    CallSecureInput,
    Payload,
)
from ccengine.ivr.connectors import Directory, run_dip
from ccengine.ivr.interpreter import (
    Action,
    Callback,
    Collect,
    Context,
    Digits,
    Dip,
    Done,
    Hangup,
    Input,
    Play,
    Route,
    Terminal,
    Transfer,
    Voicemail,
    Walk,
)
from ccengine.ivr.pci import IVR_MASK_REASON, SecureWindow
from ccengine.ivr.prompts import PromptCache
from ccengine.ivr.registry import TreeRegistry

if TYPE_CHECKING:
    from .inbound import CallSession, InboundApp

PLAY_LIMIT = 120.0  # seconds: no prompt is longer; a lost PlaybackFinished must not hold a caller forever


class IvrDriver:
    def __init__(self, app: InboundApp, registry: TreeRegistry, directory: Directory, prompts: PromptCache,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.app = app
        self.registry = registry
        self.directory = directory
        self.prompts = prompts
        self.clock = clock

    def emit(self, payload: Payload, call: CallSession) -> None:
        self.app.emit(payload, call)

    async def run(self, call: CallSession) -> Terminal:
        """Walk the current tree with ``call``'s caller; returns the terminal action."""
        tree = self.registry.tree
        walk = call.walk = Walk(tree, Context(caller=call.caller_number, now=self.clock))
        self.emit(CallIvrStarted(tree=tree.id, tree_version=tree.version), call)
        action: Action = walk.start()
        while True:
            self._publish_steps(call, walk)
            if walk.ended is not None:
                terminal = walk.ended
                self._finished(call, walk, terminal)
                return terminal
            action = walk.feed(await self._execute(call, action))

    def abandon(self, call: CallSession) -> None:
        """The caller hung up mid-tree: record the drop-off at the node they were on."""
        walk = call.walk
        if walk is None or walk.ended is not None:
            return
        walk.hangup()
        self._publish_steps(call, walk)
        self._finished(call, walk, None)

    def _publish_steps(self, call: CallSession, walk: Walk) -> None:
        tree = walk.tree
        for step in walk.take_steps():
            self.emit(CallIvrStep(tree=tree.id, tree_version=tree.version, node=step.node, kind=step.kind,
                                  exit=step.exit, attempts=step.attempts), call)
            if step.kind == "menu" and step.exit != "hangup":
                digit = step.exit[6:] if step.exit.startswith("press ") else ""
                self.emit(CallMenuSelected(digit=digit, attempts=step.attempts, fallback=digit == ""), call)

    def _finished(self, call: CallSession, walk: Walk, end: Terminal | None) -> None:
        tree = walk.tree
        learned = _jsonable(walk.learned())
        call.ivr = learned
        call.intent = walk.intent
        common: dict[str, Any] = {"tree": tree.id, "tree_version": tree.version, "node": walk.node_id,
                                  "learned": learned, "intent": walk.intent}
        if end is None:
            payload = CallIvrFinished(outcome="abandoned", **common)
        elif isinstance(end, Route):
            call.intent = end.intent
            common["intent"] = end.intent
            payload = CallIvrFinished(outcome="routed", queue=end.queue, skills=dict(end.skills),
                                      priority=end.priority, **common)
        elif isinstance(end, Callback):
            call.intent = end.intent
            common["intent"] = end.intent
            payload = CallIvrFinished(outcome="callback", queue=end.queue, **common)
        elif isinstance(end, Voicemail):
            payload = CallIvrFinished(outcome="voicemail", **common)
        elif isinstance(end, Transfer):
            payload = CallIvrFinished(outcome="transfer", **common)
        else:
            payload = CallIvrFinished(outcome="served" if end.served else "hangup", **common)
        self.emit(payload, call)

    # -- actions -------------------------------------------------------------------------------
    async def _execute(self, call: CallSession, action: Action) -> Input:
        if isinstance(action, Play):
            await self.play(call, await self.prompts.resolve(action.media))
            return Done()
        if isinstance(action, Collect):
            return await self._collect(call, action)
        if isinstance(action, Dip):
            return await run_dip(self.directory, action)
        raise TypeError(f"not an input action: {type(action).__name__}")

    async def play(self, call: CallSession, media: str) -> None:
        if media:
            await self.app.play_and_wait(call, media, PLAY_LIMIT)

    async def _collect(self, call: CallSession, action: Collect) -> Digits:
        started = self.clock()
        if action.secure and not call.digits.empty() and call.digits_since is not None:
            # typed ahead during a play or a dip: the mask starts at the first of those digits
            started = min(started, call.digits_since)
        try:
            return await self._gather(call, action)
        finally:
            if action.secure and call.walk is not None:
                ended = self.clock()
                call.secure_windows.append(SecureWindow(IVR_MASK_REASON, started, ended))  # masked in the recording
                self.emit(CallSecureInput(node=call.walk.node_id, started_at=started, ended_at=ended), call)

    async def _next_digit(self, call: CallSession) -> str:
        """The next digit, skipping a terminator pressed after a full-length entry (it belongs to it)."""
        while True:
            digit = await call.digits.get()
            skip, call.swallow = call.swallow, ""
            if digit != skip:
                return digit

    async def _gather(self, call: CallSession, action: Collect) -> Digits:
        """Prompt with barge-in, then digits until the length, the terminator or silence."""
        loop = asyncio.get_running_loop()
        got = ""
        media = await self.prompts.resolve(action.media)
        if media:
            done: asyncio.Future[None] = loop.create_future()
            playback_id = str(uuid.uuid4())
            self.app.playbacks[playback_id] = done
            first: asyncio.Future[str] = asyncio.ensure_future(self._next_digit(call))
            try:
                await asyncio.sleep(0)  # type-ahead: a digit already waiting skips the prompt
                if not first.done():
                    await self.app.pbx.play(call.customer, media, playback_id)
                    waiters: list[asyncio.Future[Any]] = [first, done]
                    await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED, timeout=PLAY_LIMIT)
                    if first.done() and not done.done():
                        await self.app.pbx.stop_playback(playback_id)
                if first.done():
                    got = first.result()
            finally:
                if not first.done():
                    first.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await first
                self.app.playbacks.pop(playback_id, None)
        timeout = action.timeout if not got else action.inter_digit_timeout
        while True:
            if got and action.terminator and got.endswith(action.terminator):
                return Digits(got[:-1])
            if len(got) >= action.max_digits:
                call.swallow = action.terminator
                return Digits(got)
            try:
                got += await asyncio.wait_for(self._next_digit(call), timeout)
            except TimeoutError:
                return Digits(got)
            timeout = action.inter_digit_timeout


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


__all__ = ["Callback", "Hangup", "IvrDriver", "Route", "Transfer", "Voicemail"]
