"""IVR trees on the lab PBX: the caller on `peer` walks config/ivr/lab-bank.yaml with DTMF.

The customer directory is the bundled sample service, served from the test process over
loopback HTTP; the engine reaches it through its HTTP connector.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import wave
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from ccengine.ivr.sample_directory import DirectoryService, start
from ccengine.ivr.stats import from_store
from ccengine.lab.traffic import Customer, dtmf_script

from .conftest import ROOT, pbx_channels

pytestmark = pytest.mark.lab

TREE = ROOT / "config" / "ivr" / "lab-bank.yaml"
QUEUES = (ROOT / "config" / "lab-queues.yaml").read_text()
ACCOUNT, PIN, CARD = "12345678", "2468", "4539578763621486"


@pytest_asyncio.fixture
async def directory() -> AsyncIterator[tuple[str, DirectoryService]]:
    runner, url, service = await start()
    yield url, service
    await runner.cleanup()


def all_ended(engine, expected: int):  # type: ignore[no-untyped-def]
    def check() -> bool:
        calls = engine.calls()
        return len(calls) >= expected and all(c.ended_at is not None for c in calls)
    return check


def ivr_engine(engine_factory, url: str, tree: Path = TREE, queues: str = QUEUES):  # type: ignore[no-untyped-def]
    engine = engine_factory(queues=queues, ivr={"tree": str(tree), "directory_url": url})
    engine.start()
    return engine


def steps(engine) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    return [(e.data["node"], e.data["exit"]) for e in engine.events("call.ivr_step")]


def finished(engine) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    [event] = engine.events("call.ivr_finished")
    data: dict[str, Any] = event.data
    return data


async def test_balance_is_self_served_after_pin_authentication(engine_factory, peer, lab, directory):  # type: ignore[no-untyped-def]
    url, service = directory
    engine = ivr_engine(engine_factory, url)
    await peer.call(Customer(number="5551001", digit="", prompt_wait=1.5, patience=60,
                             script=dtmf_script("1", 1, f"{ACCOUNT}#", 1, f"{PIN}#")))
    await engine.wait_for(all_ended(engine, 1), 60, "the call to end")

    [call] = engine.calls()
    assert call.disposition == "self_served" and call.ended_by == "system", call.disposition
    assert call.agent_id is None and call.queue is None
    assert engine.events("call.queued") == []
    assert steps(engine) == [("screen", "else"), ("identify", "next"), ("welcome", "next"), ("main", "press 1"),
                             ("balance_auth", "ok"), ("balance_dip", "next"), ("say_balance", "next"),
                             ("balance_served", "next"), ("goodbye", "end")]
    done = finished(engine)
    assert done["outcome"] == "served" and done["intent"] == "balance_inquiry"
    assert done["learned"]["authenticated"] is True and done["learned"]["customer"]["id"] == "c-1001"
    assert done["learned"]["balance"] == {"amount": "1520.75", "currency": "dollars"}
    assert service.stats["verify_pin"] == 1 and service.stats["balance"] == 1
    [window] = engine.events("call.secure_input")
    assert window.data["node"] == "balance_auth" and window.data["started_at"] < window.data["ended_at"]
    [menu] = engine.events("call.menu_selected")
    assert menu.data == {"digit": "1", "attempts": 1, "fallback": False}
    pin = re.compile(rf"(?<![0-9a-f]){PIN}(?![0-9a-f])")
    assert not any(pin.search(json.dumps(e.data)) for e in engine.events())
    [stats] = from_store(engine.db).values()
    assert stats.containment == 1.0 and stats.nodes["balance_auth"].exits == {"ok": 1}
    assert await pbx_channels(lab) == []


async def test_three_wrong_pins_lock_the_account_and_route_to_fraud(engine_factory, peer, directory):  # type: ignore[no-untyped-def]
    url, service = directory
    engine = ivr_engine(engine_factory, url)
    await peer.agent_talk_time(2, 3)
    await peer.call(Customer(number="5551002", digit="", prompt_wait=1.5, patience=90,
                             script=dtmf_script("1", 1, f"{ACCOUNT}#", 1, "1111#", 1, "2222#", 1, "3333#")))
    await engine.wait_for(all_ended(engine, 1), 90, "the call to end")

    [call] = engine.calls()
    assert call.disposition == "completed" and call.queue == "fraud", (call.disposition, call.queue)
    assert ("balance_auth", "locked") in steps(engine)
    [auth] = [e.data for e in engine.events("call.ivr_step") if e.data["node"] == "balance_auth"]
    assert auth["attempts"] == 3
    done = finished(engine)
    assert done["outcome"] == "routed" and done["queue"] == "fraud" and done["intent"] == "account_locked"
    assert done["skills"] == {"fraud": 5} and done["priority"] == 20
    assert done["learned"]["locked"] is True and done["learned"]["account"] == ACCOUNT
    assert service.failures[ACCOUNT] == 3 and service.stats["verify_pin"] == 3  # locked in the directory too
    [offered] = engine.events("call.agent_offered")
    assert offered.data["intent"] == "account_locked" and offered.data["ivr"]["locked"] is True
    assert offered.data["agent_id"] in ("agent6", "agent7", "agent8")  # fraud >= 5


async def test_invalid_and_no_input_loop_then_fall_back_to_an_agent(engine_factory, peer, directory):  # type: ignore[no-untyped-def]
    url, _ = directory
    engine = ivr_engine(engine_factory, url)
    await peer.agent_talk_time(2, 3)
    await peer.call(Customer(number="5551003", digit="", prompt_wait=1.5, patience=120, script=dtmf_script("7")))
    await engine.wait_for(all_ended(engine, 1), 120, "the call to end")

    [call] = engine.calls()
    assert call.disposition == "completed" and call.queue == "general"
    [menu] = [e.data for e in engine.events("call.ivr_step") if e.data["node"] == "main"]
    assert menu["exit"] == "fallback" and menu["attempts"] == 3
    [selected] = engine.events("call.menu_selected")
    assert selected.data == {"digit": "", "attempts": 3, "fallback": True}
    done = finished(engine)
    assert done["outcome"] == "routed" and done["queue"] == "general" and done["intent"] == "general_enquiry"
    [stats] = from_store(engine.db).values()
    assert stats.containment == 0.0 and stats.outcomes == {"routed": 1}
    assert stats.nodes["main"].entries == 1 and stats.nodes["main"].exits == {"fallback": 1}


async def test_data_dip_timeout_takes_the_fallback_branch(engine_factory, peer, directory):  # type: ignore[no-untyped-def]
    url, service = directory
    service.delays["balance"] = 4.0  # the tree waits 2 s
    engine = ivr_engine(engine_factory, url)
    await peer.agent_talk_time(2, 3)
    await peer.call(Customer(number="5551004", digit="", prompt_wait=1.5, patience=90,
                             script=dtmf_script("1", 1, f"{ACCOUNT}#", 1, f"{PIN}#")))
    await engine.wait_for(all_ended(engine, 1), 90, "the call to end")

    [call] = engine.calls()
    assert call.disposition == "completed" and call.queue == "general"
    assert ("balance_dip", "timeout") in steps(engine)
    assert ("say_balance", "next") not in steps(engine)
    done = finished(engine)
    assert done["outcome"] == "routed" and done["node"] == "adviser_sorry" and done["intent"] == "balance_inquiry"
    assert "balance" not in done["learned"]


async def test_card_capture_leaves_no_digits_in_database_logs_or_events(engine_factory, peer, lab, directory):  # type: ignore[no-untyped-def]
    url, service = directory
    engine = ivr_engine(engine_factory, url)
    await peer.agent_talk_time(2, 3)
    await peer.call(Customer(number="5551005", digit="", prompt_wait=1.5, patience=90,
                             script=dtmf_script("2", 1, f"{CARD}#")))
    await engine.wait_for(all_ended(engine, 1), 90, "the call to end")
    await engine.wait_for(lambda: engine.count_events("call.recording_stopped") == 1, 15, "the recording to close")
    engine.stop()  # flush everything to the database and the log

    [call] = engine.calls()
    assert call.disposition == "completed" and call.queue == "cards"
    assert ("card_number", "next") in steps(engine)
    assert service.stats["card"] == 1  # the digits did reach the directory, and only it
    done = finished(engine)
    assert done["intent"] == "card_block" and done["learned"]["card_owner"]["customer"]["id"] == "c-1001"
    [window] = engine.events("call.secure_input")
    assert window.data["node"] == "card_number"
    assert all(CARD not in json.dumps(e.data) for e in engine.events())
    database = Path(engine.settings.database.url.removeprefix("sqlite:///"))
    for path in [database, *database.parent.glob("ccengine.db*"), engine.workdir / "engine.log"]:
        assert CARD.encode() not in path.read_bytes(), path
    for path in (ROOT / ".lab" / "pbx").rglob("*"):
        if path.is_file() and path.stat().st_size < 50_000_000 and path.suffix not in (".wav", ".gsm"):
            assert CARD.encode() not in path.read_bytes(), path


TYPE_AHEAD_TREE = """
version: 1
id: type-ahead
start: main
nodes:
  main:
    type: menu
    prompt: "To block a card, press 2."
    choices: {"2": ready}
    fallback: bye
  ready:
    type: play
    say: "Please have your card ready. In a moment you will be asked for the long number on the front of it."
    next: card_number
  card_number:
    type: collect
    var: card
    secure: true
    validate: luhn
    min_length: 13
    max_length: 19
    prompt: "Please enter your card number, then the hash key."
    next: done
    fallback: bye
  done: {type: hangup, served: true, say: "Thank you."}
  bye: {type: hangup}
"""


async def test_card_digits_typed_during_the_prompt_before_card_entry_are_inside_the_mask(  # type: ignore[no-untyped-def]
        engine_factory, peer, workdir, directory):
    url, _ = directory
    tree = workdir / "type-ahead.yaml"
    tree.write_text(TYPE_AHEAD_TREE)
    engine = ivr_engine(engine_factory, url, tree=tree)
    await peer.call(Customer(number="5557001", digit="", prompt_wait=1.0, patience=60,
                             script=dtmf_script("2", 1, f"{CARD}#")))  # the card while "have it ready" plays
    await engine.wait_for(all_ended(engine, 1), 60, "the call to end")

    [call] = engine.calls()
    assert call.disposition == "self_served"
    assert steps(engine) == [("main", "press 2"), ("ready", "next"), ("card_number", "next"), ("done", "end")]
    [ready] = [e for e in engine.events("call.ivr_step") if e.data["node"] == "ready"]
    ready_ended = ready.occurred_at if ready.occurred_at.tzinfo else ready.occurred_at.replace(tzinfo=UTC)
    [window] = engine.events("call.secure_input")
    # the card entry began during the play: the mask (and the window) starts with its first digit
    assert datetime.fromisoformat(window.data["started_at"]) < ready_ended - timedelta(seconds=0.5), (
        window.data, ready_ended)
    assert all(CARD not in json.dumps(e.data) for e in engine.events())


WEALTH_QUEUES = """
version: 1
skills:
  - {id: general}
  - {id: wealth}
calendars:
  always: {timezone: UTC, open: {mon-sun: ["00:00-24:00"]}}
queues:
  - id: general
    required_skills: {general: 1}
    hours: always
    announcements: {position: false, estimated_wait: false}
agents:
  - {id: agent1, name: Generalist, skills: {general: 9}}
  - {id: agent2, name: Wealth adviser, skills: {general: 2, wealth: 6}}
"""

WEALTH_TREE = """
version: 1
id: wealth
start: menu
nodes:
  menu:
    type: menu
    prompt: "For investments, press 4."
    choices: {"4": invest}
    fallback: plain
  invest:
    type: set
    vars: {segment: premier}
    next: to_wealth
  to_wealth:
    type: route
    queue: general
    intent: wealth_advice
    skills: {wealth: 3}
    priority: 5
  plain:
    type: route
    queue: general
"""


async def test_the_route_to_the_acd_carries_intent_and_skills(engine_factory, peer, lab, workdir, directory):  # type: ignore[no-untyped-def]
    url, _ = directory
    tree = workdir / "wealth.yaml"
    tree.write_text(WEALTH_TREE)
    engine = ivr_engine(engine_factory, url, tree=tree, queues=WEALTH_QUEUES)
    await peer.agent_talk_time(6, 6)
    ari = lab.settings.pbx.ari
    screen: dict[str, str] = {}
    for number in ("5552001", "5552002"):
        await peer.call(Customer(number=number, digit="4", prompt_wait=1.0, patience=60))
        if not screen:  # what the agent's desktop reads from the agent's channel while talking
            await engine.wait_for(lambda: engine.count_events("call.answered") == 1, 30, "the agent to answer")
            [offered] = engine.events("call.agent_offered")
            async with aiohttp.ClientSession(auth=aiohttp.BasicAuth(ari.username, ari.password)) as http:
                for name in ("CCENGINE_INTENT", "CCENGINE_CALL_ID", "CCENGINE_CUSTOMER_ID"):
                    async with http.get(f"{ari.url}/channels/{offered.data['channel_id']}/variable",
                                        params={"variable": name}) as resp:
                        screen[name] = (await resp.json()).get("value", "") if resp.status == 200 else ""
        await engine.wait_for(all_ended(engine, 1 if number.endswith("1") else 2), 60, "the call to end")
    calls = engine.calls()
    assert screen["CCENGINE_INTENT"] == "wealth_advice" and screen["CCENGINE_CALL_ID"] == calls[0].id
    assert screen["CCENGINE_CUSTOMER_ID"] == ""  # this tree asked the directory nothing
    assert [c.agent_id for c in calls] == ["agent2", "agent2"]  # the generalist is idle but lacks the skill
    for offered in engine.events("call.agent_offered"):
        assert offered.data["intent"] == "wealth_advice" and offered.data["ivr"]["segment"] == "premier"
    for done in engine.events("call.ivr_finished"):
        assert done.data["skills"] == {"wealth": 3} and done.data["priority"] == 5


HOT_V1 = """
version: 1
id: hot
start: menu
nodes:
  menu:
    type: menu
    prompt: "Press 1."
    timeout: 12
    choices: {"1": agent}
    fallback: agent
  agent: {type: route, queue: general, intent: v1}
"""
HOT_V2 = HOT_V1.replace("agent: {type: route, queue: general, intent: v1}",
                        "agent: {type: hangup, served: true, say: Goodbye from version two.}")


async def test_hot_reload_callers_finish_on_the_version_they_started(engine_factory, peer, workdir, directory):  # type: ignore[no-untyped-def]
    url, _ = directory
    tree = workdir / "hot.yaml"
    tree.write_text(HOT_V1)
    engine = ivr_engine(engine_factory, url, tree=tree)
    await peer.agent_talk_time(2, 3)
    await peer.call(Customer(number="5553001", digit="1", prompt_wait=7.0, patience=60))  # slow caller
    await engine.wait_for(lambda: engine.count_events("call.ivr_started") == 1, 20, "the first caller in the IVR")
    tree.write_text(HOT_V2)
    assert engine.proc is not None
    engine.proc.send_signal(signal.SIGHUP)
    await asyncio.sleep(1.0)
    await peer.call(Customer(number="5553002", digit="1", prompt_wait=1.0, patience=60))
    await engine.wait_for(all_ended(engine, 2), 60, "both calls to end")

    first, second = sorted(engine.calls(), key=lambda c: c.caller_number)
    assert first.disposition == "completed" and first.queue == "general"
    assert second.disposition == "self_served"
    started = {e.call_id: e.data["tree_version"] for e in engine.events("call.ivr_started")}
    assert started[first.id] != started[second.id]
    for step in engine.events("call.ivr_step"):
        assert step.data["tree_version"] == started[step.call_id]


ENDINGS_QUEUES = """
version: 1
skills:
  - {id: general}
calendars:
  always: {timezone: UTC, open: {mon-sun: ["00:00-24:00"]}}
queues:
  - id: general
    required_skills: {general: 1}
    hours: always
    announcements: {position: false, estimated_wait: false}
agents:
  - {id: agent1, name: Only one, skills: {general: 5}}
"""

ENDINGS_TREE = """
version: 1
id: endings
start: menu
nodes:
  menu:
    type: menu
    prompt: "Voicemail 1, transfer 2, callback 3, adviser 4."
    timeout: 8
    choices: {"1": vm, "2": xfer, "3": cb, "4": adviser}
    fallback: adviser
  vm: {type: voicemail, mailbox: general, say: "Please leave a message after the tone.", max_seconds: 20}
  xfer: {type: transfer, number: "1011003001", say: "Transferring you now."}
  cb: {type: callback, queue: general, intent: callback_wanted, say: "We will call you back."}
  adviser: {type: route, queue: general}
"""


async def test_voicemail_transfer_and_callback_endings(engine_factory, peer, lab, workdir, directory):  # type: ignore[no-untyped-def]
    url, _ = directory
    tree = workdir / "endings.yaml"
    tree.write_text(ENDINGS_TREE)
    engine = ivr_engine(engine_factory, url, tree=tree, queues=ENDINGS_QUEUES)
    # voicemail: a message of about 4 s, ended with #
    await peer.call(Customer(number="5554001", digit="", prompt_wait=1.0, patience=30,
                             script=dtmf_script("1", 6, "#")))
    # transfer to an outside number: the lab's called party answers after 1 s and talks 3 s
    await peer.call(Customer(number="5554002", digit="2", prompt_wait=1.0, patience=30))
    await engine.wait_for(all_ended(engine, 2), 60, "voicemail and transfer calls to end")
    # callback: the only agent is busy with a first caller, the second asks to be called back
    await peer.set_global("AGENT_TALK_agent1", "8")
    try:
        await peer.call(Customer(number="5554003", digit="4", prompt_wait=1.0, patience=40))
        await engine.wait_for(lambda: engine.count_events("call.answered") == 1, 30, "the adviser to answer")
        await peer.call(Customer(number="1012059004", digit="3", prompt_wait=1.0, patience=30))
        await engine.wait_for(all_ended(engine, 4), 90, "all calls to end")
    finally:
        await peer.set_global("AGENT_TALK_agent1", "")

    calls = {c.caller_number: c for c in engine.calls()}
    voicemail = calls["5554001"]
    assert voicemail.disposition == "voicemail"
    [message] = (engine.workdir / "voicemail" / "general").rglob(f"{voicemail.id}.wav")
    with wave.open(str(message)) as wav:
        assert 2.0 < wav.getnframes() / wav.getframerate() < 15.0
    transferred = calls["5554002"]
    assert transferred.disposition == "transferred" and transferred.agent_id is None
    callback = calls["1012059004"]
    assert callback.disposition == "completed" and callback.agent_id == "agent1"
    [requested] = engine.events("call.callback_requested")
    assert requested.call_id == callback.id
    outcomes = {e.call_id: e.data["outcome"] for e in engine.events("call.ivr_finished")}
    assert outcomes == {voicemail.id: "voicemail", transferred.id: "transfer", callback.id: "callback",
                        calls["5554003"].id: "routed"}
    await asyncio.sleep(1)
    assert await pbx_channels(lab) == []


LANGUAGE_TREE = """
version: 1
id: languages
start: pick
language: en
nodes:
  pick:
    type: language
    prompt: {say: {en: "For English press 1.", zh: "Qing an er."}}
    choices: {"1": en, "2": zh}
    timeout: 8
    next: hello
  hello:
    type: play
    say: {en: "Connecting you.", zh: "Zheng zai wei nin zhuan jie."}
    next: agent
  agent: {type: route, queue: general, intent: language_test}
"""


async def test_language_choice_speaks_it_and_routes_to_an_agent_who_speaks_it(engine_factory, peer, workdir,  # type: ignore[no-untyped-def]
                                                                               directory):
    url, _ = directory
    tree = workdir / "languages.yaml"
    tree.write_text(LANGUAGE_TREE)
    engine = ivr_engine(engine_factory, url, tree=tree)
    await peer.agent_talk_time(2, 3)
    for number in ("5556001", "5556002", "5556003"):
        await peer.call(Customer(number=number, digit="2", prompt_wait=1.0, patience=60))
        await engine.wait_for(all_ended(engine, int(number[-1])), 60, "the call to end")
    for done in engine.events("call.ivr_finished"):
        assert done.data["learned"]["language"] == "zh"
    # the lab's customer rule `chinese` adds lang_zh 5: only agent3 and agent7 qualify
    assert {c.agent_id for c in engine.calls()} <= {"agent3", "agent7"}
    spoken = list((ROOT / "var" / "sounds" / "ivr").glob("*.key"))
    assert spoken, "generated prompts are cached"
