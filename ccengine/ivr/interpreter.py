"""The IVR interpreter: a pure state machine walking one caller through one tree.

It consumes inputs (digits or silence, end of a prompt, the answer of a data dip) and
returns the next action (play, collect digits, dip, or a terminal: route, callback,
voicemail, transfer, hang-up). It performs no I/O and reads no clock of its own, so a
walk is reproducible in tests and cheap enough to benchmark alone. The ARI driver in
``ari_apps/ivr.py`` executes the actions.

Secure input (PINs, card numbers) is kept apart from the walk's variables: it is only
ever placed in a :class:`Dip`'s ``args`` (hidden from ``repr``) and never in a step,
a variable, or anything published.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from . import checks
from .model import (
    AuthenticateNode,
    BranchNode,
    CallbackNode,
    CollectNode,
    Condition,
    DipNode,
    HangupNode,
    LanguageNode,
    MenuNode,
    PlayNode,
    Prompt,
    RouteNode,
    SetNode,
    TransferNode,
    Tree,
    VoicemailNode,
)

MAX_AUTOMATIC_STEPS = 200  # plays/sets/branches in a row without input: a broken tree, end the call


# -------------------------------------------------------------------- what the driver does


@dataclass(frozen=True)
class Media:
    """A prompt resolved for the caller: speech text in their language and/or a sound URI."""

    text: str | None
    sound: str | None
    language: str


@dataclass(frozen=True)
class Play:
    media: tuple[Media, ...]


@dataclass(frozen=True)
class Collect:
    """Play ``media`` (barge-in allowed), then gather up to ``max_digits`` digits, stopping at
    ``terminator`` (not returned) or after silence; answer with :class:`Digits`."""

    media: tuple[Media, ...]
    max_digits: int
    terminator: str
    timeout: float
    inter_digit_timeout: float
    secure: bool = False


@dataclass(frozen=True)
class Dip:
    operation: str
    args: Mapping[str, str] = field(repr=False)
    timeout: float
    secure: bool = False  # args hold secure input: never log them


@dataclass(frozen=True)
class Route:
    queue: str
    skills: Mapping[str, int]
    priority: int
    intent: str | None
    language: str
    media: tuple[Media, ...] = ()


@dataclass(frozen=True)
class Callback:
    queue: str
    intent: str | None
    language: str
    media: tuple[Media, ...] = ()


@dataclass(frozen=True)
class Voicemail:
    mailbox: str
    max_seconds: int
    media: tuple[Media, ...] = ()


@dataclass(frozen=True)
class Transfer:
    number: str
    timeout: int
    media: tuple[Media, ...] = ()


@dataclass(frozen=True)
class Hangup:
    served: bool
    media: tuple[Media, ...] = ()
    reason: str = ""


Action = Play | Collect | Dip | Route | Callback | Voicemail | Transfer | Hangup
Terminal = Route | Callback | Voicemail | Transfer | Hangup


# -------------------------------------------------------------------- what the driver reports


@dataclass(frozen=True)
class Digits:
    value: str  # "" = nothing before the timeout


@dataclass(frozen=True)
class Done:
    """The prompt finished playing."""


@dataclass(frozen=True)
class DipResult:
    status: Literal["ok", "not_found", "error", "timeout"]
    data: Mapping[str, Any] = field(default_factory=dict)


Input = Digits | Done | DipResult


@dataclass(frozen=True)
class Step:
    """A node left by one exit; what statistics count. Never holds input."""

    node: str
    kind: str
    exit: str
    attempts: int = 1
    secure: bool = False


class WalkError(RuntimeError):
    """An input the current node cannot take (a driver bug)."""


@dataclass
class Context:
    caller: str
    now: Callable[[], datetime]


class _Formatter(string.Formatter):
    def get_value(self, key: int | str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        return kwargs.get(str(key), "") if isinstance(key, str) else ""

    def get_field(self, field_name: str, args: Any, kwargs: Mapping[str, Any]) -> Any:
        try:
            return super().get_field(field_name, args, kwargs)
        except (KeyError, IndexError, TypeError, AttributeError):
            return "", field_name


_FORMAT = _Formatter()


def render(template: str, values: Mapping[str, Any]) -> str:
    try:
        return _FORMAT.vformat(template, (), values)
    except (ValueError, TypeError):
        return template


def lookup(values: Mapping[str, Any], dotted: str) -> Any:
    current: Any = values
    for part in dotted.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


class Walk:
    """One caller's way through one tree version (hot reloads do not affect a walk in progress)."""

    def __init__(self, tree: Tree, context: Context):
        self.tree = tree
        self.context = context
        self.language = tree.language
        self.vars: dict[str, Any] = {"caller": context.caller}
        self._secrets: dict[str, str] = {}
        self.node_id = tree.start
        self.steps: list[Step] = []
        self.ended: Terminal | None = None
        self._attempt = 1
        self._phase = ""
        self._account = ""
        self._failures = 0
        self._pending: Action | None = None

    # -- public --------------------------------------------------------------------------------
    def start(self) -> Action:
        return self._enter(self.tree.start)

    def feed(self, event: Input) -> Action:
        if self.ended is not None:
            raise WalkError("the walk has ended")
        node = self.tree.node(self.node_id)
        handler = getattr(self, f"_on_{node.type}")
        action: Action = handler(node, event)
        return action

    def hangup(self) -> None:
        """The caller left mid-tree: a drop-off at the current node."""
        if self.ended is None:
            self.steps.append(Step(self.node_id, self.tree.node(self.node_id).type, "hangup", self._attempt))
            self.ended = Hangup(served=False, reason="caller hung up")
            self._secrets.clear()

    def take_steps(self) -> list[Step]:
        steps, self.steps = self.steps, []
        return steps

    @property
    def intent(self) -> str | None:
        value = self.vars.get("intent")
        return str(value) if value is not None else None

    def learned(self) -> dict[str, Any]:
        """What the IVR found out, for the agent and the event stream (never secure input)."""
        return {"language": self.language, **self.vars}

    # -- moving --------------------------------------------------------------------------------
    def _exit(self, exit_name: str, target: str, *, secure: bool = False) -> Action:
        node = self.tree.node(self.node_id)
        self.steps.append(Step(self.node_id, node.type, exit_name, self._attempt, secure))
        return self._enter(target)

    def _enter(self, node_id: str) -> Action:
        for _ in range(MAX_AUTOMATIC_STEPS):
            self.node_id, self._attempt, self._phase, self._failures = node_id, 1, "", 0
            node = self.tree.node(node_id)
            if isinstance(node, SetNode):
                self.vars.update(node.vars)
                self.steps.append(Step(node_id, node.type, "next"))
                node_id = node.next
                continue
            if isinstance(node, BranchNode):
                exit_name, node_id = self._branch(node)
                self.steps.append(Step(self.node_id, node.type, exit_name))
                continue
            return self._begin(node)
        return self._end(Hangup(served=False, reason="too many steps without input"))

    def _end(self, action: Terminal) -> Terminal:
        node = self.tree.node(self.node_id)
        self.steps.append(Step(self.node_id, node.type, "end"))
        self.ended = action
        self._secrets.clear()
        return action

    def _media(self, *prompts: Prompt | None) -> tuple[Media, ...]:
        out = []
        cache = self.tree.media_cache
        for prompt in prompts:
            if prompt is None:
                continue
            key = (id(prompt), self.language)
            media = cache.get(key)
            if media is None:
                text = prompt.say
                if isinstance(text, dict):
                    text = text.get(self.language) or text.get(self.tree.language) or next(iter(text.values()))
                if text and "{" in text:  # filled from the walk's variables: not cacheable
                    out.append(Media(render(text, self.vars), prompt.sound, self.language))
                    continue
                media = cache[key] = Media(text or None, prompt.sound, self.language)
            out.append(media)
        return tuple(out)

    def _begin(self, node: Any) -> Action:
        if isinstance(node, PlayNode):
            return Play(self._media(node.say))
        if isinstance(node, (MenuNode, LanguageNode)):
            return Collect(self._media(node.prompt), 1, "", node.timeout, node.timeout)
        if isinstance(node, CollectNode):
            return self._collect(node, ())
        if isinstance(node, AuthenticateNode):
            self._phase = "account"
            return Collect(self._media(node.account_prompt), node.account_length, "#", node.timeout, node.timeout)
        if isinstance(node, DipNode):
            values = {**self.vars, **self._secrets}
            args = {k: render(v, values) for k, v in node.args.items()}
            secure = any(f"{{{name}" in v for v in node.args.values() for name in self._secrets)
            return Dip(node.operation, args, node.timeout, secure)
        if isinstance(node, RouteNode):
            return self._end(Route(node.queue, dict(node.skills), node.priority, node.intent or self.intent,
                                   self.language, self._media(node.say)))
        if isinstance(node, CallbackNode):
            return self._end(Callback(node.queue, node.intent or self.intent, self.language, self._media(node.say)))
        if isinstance(node, VoicemailNode):
            return self._end(Voicemail(node.mailbox, node.max_seconds, self._media(node.say)))
        if isinstance(node, TransferNode):
            return self._end(Transfer(node.number, node.timeout, self._media(node.say)))
        if isinstance(node, HangupNode):
            return self._end(Hangup(node.served, self._media(node.say)))
        raise WalkError(f"node type {node.type} cannot start")

    def _collect(self, node: CollectNode, before: tuple[Media, ...]) -> Collect:
        return Collect(before + self._media(node.prompt), node.max_length, node.terminator, node.timeout,
                       node.inter_digit_timeout, node.secure)

    # -- nodes -------------------------------------------------------------------------------------
    def _on_play(self, node: PlayNode, event: Input) -> Action:
        if not isinstance(event, Done):
            raise WalkError(f"play node {self.node_id} expects Done")
        return self._exit("next", node.next)

    def _on_menu(self, node: MenuNode, event: Input) -> Action:
        digit = _digits(event, self.node_id)
        if digit in node.choices:
            return self._exit(f"press {digit}", node.choices[digit])
        if self._attempt >= node.attempts:
            return self._exit("fallback", node.fallback)
        self._attempt += 1
        retry = node.no_input if digit == "" else node.invalid
        return Collect(self._media(retry, node.prompt), 1, "", node.timeout, node.timeout)

    def _on_language(self, node: LanguageNode, event: Input) -> Action:
        digit = _digits(event, self.node_id)
        if digit in node.choices:
            self.language = node.choices[digit]
            return self._exit("next", node.next)
        if self._attempt >= node.attempts:
            return self._exit("next", node.next)
        self._attempt += 1
        return Collect(self._media(node.prompt), 1, "", node.timeout, node.timeout)

    def _on_collect(self, node: CollectNode, event: Input) -> Action:
        value = _digits(event, self.node_id)
        ok = (value != "" and node.min_length <= len(value) <= node.max_length and value.isdigit()
              and checks.check(node.validate_as, value, node.account_pattern))
        if ok:
            if node.secure:
                self._secrets[node.var] = value
            else:
                self.vars[node.var] = value
            return self._exit("next", node.next, secure=node.secure)
        if self._attempt >= node.attempts:
            return self._exit("fallback", node.fallback, secure=node.secure)
        self._attempt += 1
        return self._collect(node, self._media(node.no_input if value == "" else node.invalid))

    def _on_authenticate(self, node: AuthenticateNode, event: Input) -> Action:
        if self._phase == "account":
            value = _digits(event, self.node_id)
            if len(value) == node.account_length and value.isdigit():
                self._account, self._phase = value, "pin"
                return self._ask_pin(node, ())
            if self._attempt >= node.max_failures:
                return self._exit("fallback", node.fallback, secure=True)
            self._attempt += 1
            return Collect(self._media(node.failed_prompt, node.account_prompt), node.account_length, "#",
                           node.timeout, node.timeout)
        if self._phase == "pin":
            pin = _digits(event, self.node_id)
            if pin == "":
                return self._exit("fallback", node.fallback, secure=True)
            self._phase = "verify"
            return Dip("verify_pin", {"account": self._account, "pin": pin}, node.dip_timeout, secure=True)
        if not isinstance(event, DipResult):
            raise WalkError(f"authenticate node {self.node_id} expects a DipResult")
        if event.status in ("error", "timeout"):
            return self._exit("fallback", node.fallback, secure=True)
        if event.data.get("locked"):
            self._remember_account(event)
            self.vars["locked"] = True
            return self._exit("locked", node.locked, secure=True)
        if event.status == "ok" and event.data.get("verified"):
            self._remember_account(event)
            self.vars["authenticated"] = True
            return self._exit("ok", node.ok, secure=True)
        # an account the directory does not know sounds exactly like a wrong PIN, to the last prompt:
        # anything else would tell a caller which account numbers exist. Nothing is locked for it.
        self._failures += 1
        if self._failures >= node.max_failures:
            if event.status == "not_found":
                self.vars["account_unknown"] = True
            else:
                self._remember_account(event)
                self.vars["locked"] = True
            return self._exit("locked", node.locked, secure=True)
        self._phase = "pin"
        self._attempt += 1
        return self._ask_pin(node, self._media(node.failed_prompt))

    def _remember_account(self, event: DipResult) -> None:
        self.vars["account"] = self._account
        customer = event.data.get("customer")
        if isinstance(customer, Mapping):
            self._remember_customer(customer)

    def _remember_customer(self, customer: Mapping[str, Any]) -> None:
        self.vars["customer"] = dict(customer)
        for key in ("segment", "risk"):
            if customer.get(key) is not None:
                self.vars.setdefault(key, customer[key])

    def _ask_pin(self, node: AuthenticateNode, before: tuple[Media, ...]) -> Collect:
        return Collect(before + self._media(node.pin_prompt), node.pin_length, "#", node.timeout,
                       node.timeout, secure=True)

    def _on_dip(self, node: DipNode, event: Input) -> Action:
        if not isinstance(event, DipResult):
            raise WalkError(f"dip node {self.node_id} expects a DipResult")
        if event.status == "ok":
            self.vars[node.store] = dict(event.data)
            customer = event.data.get("customer")
            if isinstance(customer, Mapping) and "customer" not in self.vars:
                self._remember_customer(customer)
            return self._exit("next", node.next)
        if event.status == "not_found" and node.not_found:
            return self._exit("not_found", node.not_found)
        return self._exit("fallback" if event.status != "timeout" else "timeout", node.fallback)

    # -- branches --------------------------------------------------------------------------------
    def _branch(self, node: BranchNode) -> tuple[str, str]:
        for i, case in enumerate(node.cases):
            if self._holds(case.when):
                return f"case {i + 1}", case.goto
        return "else", node.otherwise

    def _holds(self, cond: Condition) -> bool:
        if cond.var is not None:
            value = lookup(self.vars, cond.var) if cond.var != "language" else self.language
            if cond.exists is not None and (value is not None) != cond.exists:
                return False
            if cond.equals is not None and value != cond.equals and str(value) != str(cond.equals):
                return False
            if cond.one_of is not None and value not in cond.one_of \
                    and str(value) not in {str(v) for v in cond.one_of}:
                return False
            if cond.exists is None and cond.equals is None and cond.one_of is None and not value:
                return False
        if cond.open is not None and not self.tree.calendars[cond.open].is_open(self.context.now()):
            return False
        if cond.holiday is not None:
            calendar = self.tree.calendars[cond.holiday]
            today = self.context.now().astimezone(_zone(calendar.timezone)).date()
            if all(h.date != today for h in calendar.holidays):
                return False
        if cond.caller_prefix is not None:
            prefixes = [cond.caller_prefix] if isinstance(cond.caller_prefix, str) else cond.caller_prefix
            if not any(self.context.caller.startswith(p) for p in prefixes):
                return False
        anonymous = self.context.caller in ("", "anonymous", "unknown", "Anonymous")
        return not (cond.caller_anonymous is not None and anonymous != cond.caller_anonymous)


def _zone(name: str) -> Any:
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def _digits(event: Input, node_id: str) -> str:
    if not isinstance(event, Digits):
        raise WalkError(f"node {node_id} expects Digits, got {type(event).__name__}")
    return event.value
