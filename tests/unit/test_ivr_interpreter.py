"""The pure IVR interpreter on the lab tree: every path, secure input kept out of steps and variables."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from ccengine.ivr.checks import valid_account, valid_card, valid_date
from ccengine.ivr.interpreter import (
    Collect,
    Context,
    Digits,
    Dip,
    DipResult,
    Done,
    Hangup,
    Play,
    Route,
    Walk,
    WalkError,
)
from ccengine.ivr.model import load_tree, tree_from_text
from ccengine.yamlconf import ConfigError

ROOT = Path(__file__).resolve().parents[2]
TREE = load_tree(ROOT / "config" / "ivr" / "lab-bank.yaml")
CARD = "4539578763621486"
NOON = datetime(2026, 3, 4, 12, 0, tzinfo=UTC)


def walk(caller: str = "5551001", when: datetime = NOON) -> Walk:
    return Walk(TREE, Context(caller=caller, now=lambda: when))


def to_menu(w: Walk) -> Collect:
    action = w.start()
    assert isinstance(action, Dip) and action.operation == "lookup_caller"
    assert action.args == {"number": "5551001"}
    action = w.feed(DipResult("not_found"))
    assert isinstance(action, Play) and action.media[0].text == "Welcome to Lab Bank."
    action = w.feed(Done())
    assert isinstance(action, Collect) and action.max_digits == 1
    return action


def test_balance_is_self_served_after_pin() -> None:
    w = walk()
    to_menu(w)
    ask_account = w.feed(Digits("1"))
    assert isinstance(ask_account, Collect) and ask_account.max_digits == 8 and not ask_account.secure
    ask_pin = w.feed(Digits("12345678"))
    assert isinstance(ask_pin, Collect) and ask_pin.secure and ask_pin.max_digits == 4
    verify = w.feed(Digits("2468"))
    assert isinstance(verify, Dip) and verify.secure and verify.operation == "verify_pin"
    assert verify.args == {"account": "12345678", "pin": "2468"}
    assert "2468" not in repr(verify)
    dip = w.feed(DipResult("ok", {"verified": True, "customer": {"id": "c1", "segment": "premier"}}))
    assert isinstance(dip, Dip) and dip.operation == "balance" and dip.args == {"account": "12345678"}
    say = w.feed(DipResult("ok", {"amount": "1520.75", "currency": "dollars"}))
    assert isinstance(say, Play) and say.media[0].text == "Your available balance is 1520.75 dollars."
    end = w.feed(Done())
    assert isinstance(end, Hangup) and end.served and (end.media[0].text or "").startswith("Thank you")
    assert w.ended is end
    assert w.vars["authenticated"] is True and w.vars["segment"] == "premier"
    assert w.intent == "balance_inquiry"
    steps = [(s.node, s.exit) for s in w.take_steps()]
    assert steps == [("screen", "else"), ("identify", "not_found"), ("welcome", "next"), ("main", "press 1"),
                     ("balance_auth", "ok"), ("balance_dip", "next"), ("say_balance", "next"),
                     ("balance_served", "next"), ("goodbye", "end")]
    assert "2468" not in repr(w.learned())


def test_three_wrong_pins_lock_and_route_to_fraud() -> None:
    w = walk()
    to_menu(w)
    w.feed(Digits("1"))
    w.feed(Digits("12345678"))
    for attempt in range(3):
        action = w.feed(Digits("9999"))
        assert isinstance(action, Dip)
        action = w.feed(DipResult("ok", {"verified": False}))
        if attempt < 2:
            assert isinstance(action, Collect) and action.secure
            assert action.media[0].text == "That PIN is not correct."
    assert isinstance(action, Route)
    assert action.queue == "fraud" and action.intent == "account_locked"
    assert action.skills == {"fraud": 5} and action.priority == 20
    assert w.vars["locked"] is True and w.vars["account"] == "12345678"
    [auth] = [s for s in w.take_steps() if s.node == "balance_auth"]
    assert auth.exit == "locked" and auth.attempts == 3 and auth.secure


def test_directory_lock_wins_at_once() -> None:
    w = walk()
    to_menu(w)
    w.feed(Digits("1"))
    w.feed(Digits("12345678"))
    w.feed(Digits("0000"))
    action = w.feed(DipResult("ok", {"verified": False, "locked": True}))
    assert isinstance(action, Route) and action.queue == "fraud"


def test_an_unknown_account_sounds_like_a_wrong_pin_and_locks_nothing() -> None:
    """A caller must not learn which account numbers exist: the same prompts and the same end
    as three wrong PINs on a real account, but no account is remembered or said to be locked."""
    def run(result: DipResult) -> tuple[list[object], Walk]:
        w = walk()
        to_menu(w)
        w.feed(Digits("1"))
        w.feed(Digits("99999999"))
        heard: list[object] = []
        for _ in range(3):
            w.feed(Digits("2468"))
            heard.append(w.feed(result))
        return heard, w

    unknown, w = run(DipResult("not_found"))
    wrong, real = run(DipResult("ok", {"verified": False}))
    assert unknown == wrong
    assert isinstance(unknown[-1], Route) and unknown[-1].queue == "fraud"
    assert w.vars.get("account_unknown") is True
    assert "locked" not in w.vars and "account" not in w.vars and "authenticated" not in w.vars
    assert real.vars["locked"] is True and real.vars["account"] == "99999999"
    [auth] = [s for s in w.take_steps() if s.node == "balance_auth"]
    assert auth.exit == "locked" and auth.secure


def test_anonymous_callers_skip_the_directory_lookup() -> None:
    for caller in ("", "anonymous"):
        w = walk(caller=caller)
        action = w.start()
        assert isinstance(action, Play) and action.media[0].text == "Welcome to Lab Bank."
        assert [(s.node, s.exit) for s in w.take_steps()] == [("screen", "case 1")]


FORMS = """
version: 1
id: forms
start: birth
nodes:
  birth:
    type: collect
    prompt: Date of birth, day month year.
    var: birth
    validate: date
    min_length: 8
    max_length: 8
    terminator: ""
    attempts: 2
    invalid: Not a date.
    next: account
    fallback: agent
  account:
    type: collect
    prompt: Account.
    var: account
    validate: account
    account_pattern: "9[0-9]{5}"
    max_length: 6
    next: known
    fallback: agent
  known:
    type: branch
    cases:
      - {if: {var: account, equals: 912345}, goto: served}
      - {if: {var: nothing, exists: false}, goto: agent}
    else: served
  served: {type: hangup, served: true}
  agent: {type: route, queue: general}
"""


def test_collect_checks_length_terminator_dates_and_account_formats() -> None:
    tree = tree_from_text(FORMS)
    w = Walk(tree, Context("5551001", lambda: NOON))
    ask = w.start()
    assert isinstance(ask, Collect) and ask.max_digits == 8 and ask.terminator == "" and not ask.secure
    retry = w.feed(Digits("31022026"))  # no 31 February
    assert isinstance(retry, Collect) and retry.media[0].text == "Not a date."
    ask = w.feed(Digits("29022024"))
    assert isinstance(ask, Collect) and ask.max_digits == 6 and ask.terminator == "#"
    assert w.vars["birth"] == "29022024"
    for wrong in ("812345", "91234", "9123456"):  # pattern, then too short, then too long
        again = w.feed(Digits(wrong))
        if wrong != "9123456":
            assert isinstance(again, Collect)
    assert isinstance(again, Route) and "account" not in w.vars  # three attempts: the fallback
    w = Walk(tree, Context("5551001", lambda: NOON))
    w.start()
    w.feed(Digits("01012000"))
    end = w.feed(Digits("912345"))
    assert isinstance(end, Hangup) and end.served and w.vars["account"] == "912345"
    assert ("known", "case 1") in [(s.node, s.exit) for s in w.take_steps()]


def test_invalid_and_silent_menu_input_loops_then_falls_back_to_an_agent() -> None:
    w = walk()
    to_menu(w)
    again = w.feed(Digits("7"))
    assert isinstance(again, Collect) and again.media[0].text == "Sorry, that is not a valid choice."
    again = w.feed(Digits(""))
    assert isinstance(again, Collect) and again.media[0].text == "Sorry, I did not hear a choice."
    end = w.feed(Digits(""))
    assert isinstance(end, Route) and end.queue == "general" and end.intent == "general_enquiry"
    [menu] = [s for s in w.take_steps() if s.node == "main"]
    assert menu.exit == "fallback" and menu.attempts == 3


def test_dip_timeout_takes_the_fallback_branch() -> None:
    w = walk()
    to_menu(w)
    w.feed(Digits("1"))
    w.feed(Digits("12345678"))
    w.feed(Digits("2468"))
    w.feed(DipResult("ok", {"verified": True}))
    end = w.feed(DipResult("timeout"))
    assert isinstance(end, Route) and end.queue == "general" and end.intent == "balance_inquiry"
    assert ("balance_dip", "timeout") in [(s.node, s.exit) for s in w.take_steps()]


def test_card_capture_is_secure_and_validated() -> None:
    w = walk()
    to_menu(w)
    ask = w.feed(Digits("2"))
    assert isinstance(ask, Collect) and ask.secure and ask.max_digits == 19
    retry = w.feed(Digits("4539578763621487"))  # Luhn fails
    assert isinstance(retry, Collect) and retry.media[0].text == "That card number is not valid."
    lookup = w.feed(Digits(CARD))
    assert isinstance(lookup, Dip) and lookup.secure and lookup.args == {"card": CARD}
    assert CARD not in repr(lookup)
    end = w.feed(DipResult("ok", {"customer": {"id": "c1"}}))
    assert isinstance(end, Route) and end.queue == "cards" and end.intent == "card_block"
    assert end.skills == {"cards": 3}
    assert CARD not in repr(w.learned()) and CARD not in repr(w.take_steps())


def test_hangup_mid_tree_is_a_drop_off() -> None:
    w = walk()
    to_menu(w)
    w.hangup()
    assert w.take_steps()[-1].exit == "hangup"
    try:
        w.feed(Digits("1"))
    except WalkError:
        pass
    else:
        raise AssertionError("a finished walk must refuse input")


BRANCHY = """
version: 1
id: branchy
start: b
language: en
calendars:
  office:
    timezone: Europe/London
    open: {mon-fri: ["09:00-17:00"]}
    holidays: [{date: 2026-12-25, name: Christmas}]
nodes:
  b:
    type: branch
    cases:
      - {if: {holiday: office}, goto: closed}
      - {if: {caller_prefix: ["44", "0044"]}, goto: lang}
      - {if: {open: office}, goto: lang}
    else: closed
  lang:
    type: language
    prompt: {say: {en: "For English press 1", zh: "zh prompt"}}
    choices: {"1": en, "2": zh}
    next: seg
  seg:
    type: set
    vars: {segment: premier, intent: open_hours}
    next: vip
  vip:
    type: branch
    cases:
      - {if: {var: segment, one_of: [premier, private]}, goto: hello}
    else: bye
  hello:
    type: route
    queue: general
    say: {en: "Hello", zh: "Ni hao"}
  closed: {type: voicemail, mailbox: general, say: "We are closed."}
  bye: {type: hangup}
"""


def test_branches_on_calendar_holiday_caller_and_variables_and_language() -> None:
    tree = tree_from_text(BRANCHY)
    xmas = datetime(2026, 12, 25, 12, tzinfo=UTC)
    night = datetime(2026, 3, 4, 22, tzinfo=UTC)
    assert Walk(tree, Context("4420", lambda: xmas)).start().__class__.__name__ == "Voicemail"
    assert isinstance(Walk(tree, Context("4420", lambda: night)).start(), Collect)  # caller prefix wins
    assert Walk(tree, Context("3312", lambda: night)).start().__class__.__name__ == "Voicemail"
    w = Walk(tree, Context("3312", lambda: NOON))
    w.start()
    end = w.feed(Digits("2"))
    assert isinstance(end, Route) and end.language == "zh" and end.media[0].text == "Ni hao"
    assert end.intent == "open_hours"


def test_checks() -> None:
    assert valid_card(CARD) and not valid_card(CARD[:-1] + "7") and not valid_card("0")
    assert valid_date("29022024") and not valid_date("29022023") and not valid_date("3112")
    assert valid_account("12345678") and not valid_account("1234567") and valid_account("AB12", "[A-Z]{2}[0-9]{2}")


def feed_inputs(w: Walk, action: object, inputs: list[str]) -> object:
    """Answer any action: digits from ``inputs`` (then silence), dips alternate ok/failed answers."""
    fed = 0
    for _ in range(200):
        if w.ended is not None:
            return action
        if isinstance(action, Collect):
            action = w.feed(Digits(inputs[fed] if fed < len(inputs) else ""))
            fed += 1
        elif isinstance(action, Play):
            action = w.feed(Done())
        elif isinstance(action, Dip):
            status: Literal["ok", "timeout"] = "ok" if fed % 2 else "timeout"
            action = w.feed(DipResult(status, {"verified": fed % 3 == 0, "amount": "1", "currency": "d"}))
        else:
            raise AssertionError(action)
    raise AssertionError("the walk did not end")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(alphabet="0123456789#*", min_size=0, max_size=20), max_size=25))
def test_any_input_ends_the_walk_and_no_secure_digits_leak(inputs: list[str]) -> None:
    w = walk()
    end = feed_inputs(w, w.start(), inputs)
    assert end is w.ended
    steps = w.take_steps()
    assert steps[-1].exit == "end"
    for step in steps:
        assert step.node in TREE.nodes
    card_like = [i for i in inputs if valid_card(i)]
    pins = [i for i in inputs if len(i) == 4 and i.isdigit()]
    text = repr(w.learned()) + repr(steps)
    for secret in card_like:
        assert secret not in text
    if "pin" in text:
        raise AssertionError(text)
    assert all(p not in repr(steps) for p in pins)


KINDS = ["menu", "play", "set", "branch", "collect", "dip", "route", "hangup"]


@st.composite
def random_trees(draw: st.DrawFn) -> str:
    """Mostly a forward chain n0 → n1 → ... ending in a terminal, with random extra edges (some back)."""
    size = draw(st.integers(2, 8))
    nodes: dict[str, object] = {}
    for i in range(size):
        chain = f"n{min(i + 1, size - 1)}"
        target = st.one_of(st.just(chain), st.integers(0, size - 1).map(lambda j: f"n{j}"))
        kind = draw(st.sampled_from(KINDS[:6] if i < size - 1 else KINDS[6:]))
        if kind == "menu":
            node: dict[str, object] = {"prompt": "m", "choices": {"1": chain, "2": draw(target)},
                                       "fallback": draw(target), "attempts": draw(st.integers(1, 3))}
        elif kind == "play":
            node = {"say": "p", "next": chain}
        elif kind == "set":
            node = {"vars": {"intent": draw(st.sampled_from(["a", "b"]))}, "next": chain}
        elif kind == "branch":
            node = {"cases": [{"if": {"var": "intent", "equals": "a"}, "goto": draw(target)}], "else": chain}
        elif kind == "collect":
            node = {"prompt": "c", "var": "x", "max_length": 4, "next": chain, "fallback": draw(target)}
        elif kind == "dip":
            node = {"operation": "balance", "args": {"account": "{x}"}, "store": "b", "next": chain,
                    "fallback": draw(target)}
        elif kind == "route":
            node = {"queue": "general"}
        else:
            node = {}
        nodes[f"n{i}"] = {"type": kind, **node}
    return yaml.safe_dump({"version": 1, "id": "random", "start": "n0", "nodes": nodes})


@settings(max_examples=400, deadline=None)
@given(random_trees(), st.lists(st.sampled_from(["1", "2", "9", "", "1234"]), max_size=30),
       st.sampled_from(["ok", "timeout"]))
def test_a_tree_that_validates_always_lets_a_caller_out(text: str, inputs: list[str], dip: str) -> None:
    """Validation's promise: whatever a caller types first, once they fall silent they reach an end."""
    try:
        tree = tree_from_text(text, "random.yaml", ["general"])
    except ConfigError as err:
        assert err.issues and all(i.file == "random.yaml" for i in err.issues)
        return
    w = Walk(tree, Context("5551001", lambda: NOON))
    action = w.start()
    fed = 0
    for _ in range(2000):
        if w.ended is not None:
            break
        if isinstance(action, Play):
            action = w.feed(Done())
        elif isinstance(action, Dip):
            action = w.feed(DipResult("ok" if dip == "ok" else "timeout", {"amount": "1"}))
        else:
            action = w.feed(Digits(inputs[fed] if fed < len(inputs) else ""))
            fed += 1
    assert w.ended is not None, "a valid tree kept a silent caller forever"
    assert getattr(w.ended, "reason", "") != "too many steps without input"
