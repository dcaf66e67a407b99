"""A live outbound campaign on the lab PBX, launched from the CLI, run to completion.

The called parties on ``peer`` are a mix of humans, no-answers, busies and
answering machines (AMD on); some contacts are on do-not-call lists (file and
internal table) and some are outside their calling window by time zone.
Checked from the store *and* from the peer: every contact ends with a
recorded outcome, no DNC or out-of-window number ever reached the peer,
every abandoned answer heard the information message.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from ccengine.dialer.schema import AttemptRow, CampaignRow, ContactRow, LiveAnswerRow
from ccengine.lab.traffic import PeerDriver
from ccengine.store.database import make_engine

from .conftest import ROOT, pbx_channels
from .conftest_dialer import (
    BUSY,
    HUMAN,
    MACHINE,
    NO_ANSWER,
    called_number,
    campaign_cli,
    run_until_idle,
    write_engine_config,
    zone_with_local_hour,
)

pytestmark = pytest.mark.lab

AGENTS = [f"agent3{i}" for i in range(1, 5)]  # the lab has softphones agent1..agent40


def build_campaign(workdir: Path) -> tuple[Path, dict[str, str], set[str], set[str]]:
    """Campaign files; returns (yaml, phone -> kind, DNC phones, out-of-window phones)."""
    open_zone, closed_zone = zone_with_local_hour(12), zone_with_local_hour(2)
    rows: list[tuple[str, str, str]] = []
    kinds: dict[str, str] = {}
    serial = 0

    def add(kind: str, ring: int, talk: int, zone: str = open_zone) -> str:
        nonlocal serial
        serial += 1
        phone = called_number(kind, ring, talk, serial)
        rows.append((f"c{serial:03d}", phone, zone))
        kinds[phone] = kind
        return phone

    for i in range(32):
        add(HUMAN, 1 + i % 3, 9)
    for _ in range(10):
        add(NO_ANSWER, 0, 0)
    for _ in range(8):
        add(BUSY, 1, 0)
    for i in range(8):
        add(MACHINE, 1 + i % 2, 12)
    dnc_file_phones = {add(HUMAN, 1, 6) for _ in range(4)}
    dnc_table_phones = {add(HUMAN, 1, 6) for _ in range(2)}
    outside = {add(HUMAN, 1, 6, closed_zone) for _ in range(6)}
    lines = ["id,phone,timezone,name,segment"] + [f"{c},{p},{z},Contact {c},lab" for c, p, z in rows]
    (workdir / "contacts.csv").write_text("\n".join(lines) + "\n")
    (workdir / "dnc.txt").write_text("# do not call\n" + "\n".join(f"+{p}" for p in dnc_file_phones) + "\n")
    (workdir / "table_dnc.txt").write_text(" ".join(dnc_table_phones))
    campaign = {
        "name": "lab-collections",
        "mode": "power", "ratio": 2.0,
        "agents": AGENTS,
        "caller_id": "4420700000",
        "contacts": "contacts.csv",
        "dnc": {"files": ["dnc.txt"]},
        "retry": {"busy": "3s", "no_answer": None, "machine": None, "hangup": None, "abandoned": "72h"},
        "max_attempts": 2,
        "amd": True,
        "abandonment": {"cap": 0.03, "definition": "ofcom"},
        "message": "This is Lab Bank calling about your account. We will call you back. Goodbye.",
        "ring_timeout": 15,
        "wrapup_seconds": 1,
    }
    path = workdir / "campaign.yaml"
    path.write_text(yaml.safe_dump(campaign))
    return path, kinds, dnc_file_phones | dnc_table_phones, outside


async def test_campaign_runs_to_completion_from_the_cli(workdir, lab):  # type: ignore[no-untyped-def]
    config = write_engine_config(workdir)
    campaign_file, kinds, dnc, outside = build_campaign(workdir)
    table_numbers = (workdir / "table_dnc.txt").read_text().split()
    assert campaign_cli(config, "dnc-add", *table_numbers, "--reason", "customer request").returncode == 0

    dry = campaign_cli(config, "start", str(campaign_file), "--dry-run")
    assert dry.returncode == 0, dry.stderr
    eligible_now = len(kinds) - len(dnc) - len(outside)
    assert f"eligible now: {eligible_now}" in dry.stdout, dry.stdout
    assert f"not eligible (dnc): {len(dnc)}" in dry.stdout and f"(outside_window): {len(outside)}" in dry.stdout

    run, elapsed, peer_saw = await run_until_idle(lab, config, campaign_file, AGENTS, talk_seconds=4, timeout=150)
    called = peer_saw.numbers
    assert "lab-collections: completed" in run.stdout, run.stdout[-2000:]
    assert elapsed < 120, elapsed

    db = make_engine(f"sqlite:///{workdir / 'ccengine.db'}")
    with Session(db) as session:
        [campaign] = session.scalars(select(CampaignRow)).all()
        contacts = list(session.scalars(select(ContactRow)))
        attempts = list(session.scalars(select(AttemptRow)))
        answers = {a.attempt_id: a for a in session.scalars(select(LiveAnswerRow))}
    db.dispose()
    assert campaign.state == "completed"

    # every contact ends with a recorded outcome; every attempt too
    assert len(contacts) == len(kinds)
    assert all(c.status == "closed" and c.final_reason for c in contacts), \
        [(c.phone, c.status, c.final_reason) for c in contacts if c.status != "closed" or not c.final_reason]
    assert all(a.outcome and a.ended_at for a in attempts)

    # never dialed: neither in the store nor seen by the called side
    dialed = {a.phone for a in attempts}
    assert not dialed & (dnc | outside)
    assert not set(called) & (dnc | outside)
    assert {c.final_reason for c in contacts if c.phone in dnc} == {"dnc"}
    assert {c.final_reason for c in contacts if c.phone in outside} == {"outside_window"}
    # and everyone else was dialed, and reached the peer
    expected = {p for p in kinds if p not in dnc | outside}
    assert dialed == expected
    # (the peer is shared: other tests' calls may show up, so look at this population only)
    assert set(called) & set(kinds) == expected
    # every call presented the campaign's caller ID
    assert {p: peer_saw.caller_ids[p] for p in expected} == {p: {"4420700000"} for p in expected}

    by_kind: dict[str, Counter[str]] = {}
    for attempt in attempts:
        by_kind.setdefault(kinds[attempt.phone], Counter())[attempt.outcome or ""] += 1
    assert set(by_kind[NO_ANSWER]) == {"no_answer"}, by_kind
    assert set(by_kind[BUSY]) == {"busy"} and by_kind[BUSY]["busy"] == 16, by_kind  # retried once each
    assert set(by_kind[MACHINE]) == {"machine"}, by_kind
    assert set(by_kind[HUMAN]) <= {"connected", "abandoned"}, by_kind
    assert by_kind[HUMAN]["connected"] >= 8, by_kind

    # every answer is stored raw; abandoned ones heard the information message
    for attempt in attempts:
        if attempt.answered_at is None:
            assert attempt.id not in answers
            continue
        answer = answers[attempt.id]
        assert answer.greeting_end_ts is not None and answer.greeting_end_ts >= answer.answer_ts
        if attempt.outcome == "machine":
            assert answer.amd_verdict == "machine" and answer.agent_connect_ts is None
        elif attempt.outcome == "connected":
            assert answer.amd_verdict == "human" and answer.agent_connect_ts is not None
            assert (answer.agent_connect_ts - answer.greeting_end_ts).total_seconds() <= 2.0
            assert attempt.recording_path and Path(attempt.recording_path).is_file()
        elif attempt.outcome == "abandoned":
            assert answer.agent_connect_ts is None and answer.message_played, attempt.id
    assert "abandoned" in run.stdout and "occupancy" in run.stdout

    status = campaign_cli(config, "status")
    assert "lab-collections" in status.stdout and "completed" in status.stdout, status.stdout
    assert not [c for c in await pbx_channels(lab) if "dialer" in str(c.get("dialplan"))]


def attempts_of(db_path: Path) -> list[AttemptRow]:
    """Attempts so far ([] while the runner is still creating the database)."""
    db = make_engine(f"sqlite:///{db_path}")
    try:
        with Session(db) as session:
            rows = list(session.scalars(select(AttemptRow).order_by(AttemptRow.dialed_at)))
            session.expunge_all()
            return rows
    except OperationalError:
        return []
    finally:
        db.dispose()


async def wait_until(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


async def test_progressive_campaign_pauses_resumes_and_stops(workdir, lab):  # type: ignore[no-untyped-def]
    """Control through the database from another shell; progressive never abandons."""
    config = write_engine_config(workdir)
    zone = zone_with_local_hour(12)
    phones = [called_number(HUMAN, 1, 20, 500 + i) for i in range(30)]
    (workdir / "contacts.csv").write_text("id,phone,timezone\n" + "".join(
        f"p{i},{p},{zone}\n" for i, p in enumerate(phones)))
    (workdir / "campaign.yaml").write_text(yaml.safe_dump({
        "name": "lab-reminders", "mode": "progressive", "agents": ["agent35", "agent36"],
        "caller_id": "4420700001", "contacts": "contacts.csv", "max_attempts": 1,
        "message": "This is Lab Bank. We will call you back. Goodbye.", "wrapup_seconds": 0.5}))
    db_path = workdir / "ccengine.db"
    log = (workdir / "campaign.out").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "ccengine.cli.main", "-c", str(config), "campaign", "start",
                             str(workdir / "campaign.yaml")], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    async with PeerDriver(lab.settings) as peer:
        for agent in ("agent35", "agent36"):
            await peer.set_global(f"AGENT_TALK_{agent}", "2")
        try:
            await wait_until(lambda: len(attempts_of(db_path)) >= 4, 40, "four dials")
            assert campaign_cli(config, "pause", "lab-reminders").returncode == 0
            await asyncio.sleep(1.5)  # the runner polls its row every second
            paused = len(attempts_of(db_path))
            await asyncio.sleep(5)
            assert len(attempts_of(db_path)) == paused, "dialed while paused"
            assert campaign_cli(config, "resume", "lab-reminders").returncode == 0
            await wait_until(lambda: len(attempts_of(db_path)) > paused, 20, "dialing to resume")
            assert campaign_cli(config, "stop", "lab-reminders").returncode == 0
            await asyncio.to_thread(proc.wait, 40)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
            for agent in ("agent35", "agent36"):
                await peer.set_global(f"AGENT_TALK_{agent}", "")
    output = (workdir / "campaign.out").read_text()
    assert proc.returncode == 0 and "lab-reminders: stopped" in output, output[-2000:]
    attempts = attempts_of(db_path)
    assert 4 < len(attempts) < len(phones)
    assert all(a.outcome == "connected" for a in attempts), Counter(a.outcome for a in attempts)
    db = make_engine(f"sqlite:///{db_path}")
    with Session(db) as session:
        [campaign] = session.scalars(select(CampaignRow)).all()
        contacts = list(session.scalars(select(ContactRow)))
        answers = list(session.scalars(select(LiveAnswerRow)))
    db.dispose()
    assert campaign.state == "stopped"
    assert all(c.status == "closed" and c.final_reason for c in contacts)
    assert sum(1 for c in contacts if c.final_reason and c.final_reason.startswith("stopped")) == \
        len(phones) - len(attempts)
    assert len(answers) == len(attempts)
    assert all(a.agent_connect_ts is not None and not a.message_played for a in answers)
    assert all((a.agent_connect_ts - a.greeting_end_ts).total_seconds() <= 2.0 for a in answers)


async def test_preview_campaign_has_the_agent_on_the_line_first(workdir, lab):  # type: ignore[no-untyped-def]
    """Preview: agent connected before the customer is dialed, so every answer is bridged at once."""
    config = write_engine_config(workdir)
    zone = zone_with_local_hour(12)
    humans = [called_number(HUMAN, 2, 3, 700 + i) for i in range(5)]
    busy = called_number(BUSY, 1, 0, 799)
    (workdir / "contacts.csv").write_text("id,phone,timezone\n" + "".join(
        f"v{i},{p},{zone}\n" for i, p in enumerate([*humans, busy])))
    (workdir / "campaign.yaml").write_text(yaml.safe_dump({
        "name": "lab-preview", "mode": "preview", "agents": ["agent37", "agent38"],
        "caller_id": "4420700002", "contacts": "contacts.csv", "max_attempts": 1,
        "message": "This is Lab Bank. We will call you back. Goodbye.", "wrapup_seconds": 0.5}))
    async with PeerDriver(lab.settings) as peer:
        for agent in ("agent37", "agent38"):
            await peer.set_global(f"AGENT_TALK_{agent}", "12")
        try:
            run = await asyncio.to_thread(campaign_cli, config, "start", str(workdir / "campaign.yaml"), "--until-idle",
                                          timeout=90)
        finally:
            for agent in ("agent37", "agent38"):
                await peer.set_global(f"AGENT_TALK_{agent}", "")
    assert run.returncode == 0 and "lab-preview: completed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
    attempts = {a.phone: a for a in attempts_of(workdir / "ccengine.db")}
    assert {p: a.outcome for p, a in attempts.items()} == {**{p: "connected" for p in humans}, busy: "busy"}
    db = make_engine(f"sqlite:///{workdir / 'ccengine.db'}")
    with Session(db) as session:
        answers = list(session.scalars(select(LiveAnswerRow)))
    db.dispose()
    assert len(answers) == len(humans)
    # the agent was already there: bridging is all that separates answer and connect
    assert all((a.agent_connect_ts - a.answer_ts).total_seconds() < 0.5 for a in answers)
