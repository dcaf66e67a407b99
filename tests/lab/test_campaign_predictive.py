"""A 300-contact predictive campaign on the lab PBX, from the CLI to completion.

Thirty softphone agents, short talk times; called parties on ``peer`` are
humans, no-answers, busies (retried once) and answering machines (AMD on);
some contacts are on the DNC file or table, some outside their calling
window. Checked from the store and from the called side: every contact ends
with a recorded outcome, no DNC or out-of-window number is dialed, every
abandoned answer heard the information message, and every connect happened
within the 2-second grace.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session

from ccengine.dialer.schema import AttemptRow, CampaignRow, ContactRow, LiveAnswerRow
from ccengine.store.database import make_engine

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

AGENTS = [f"agent{i}" for i in range(1, 31)]
MIX = {HUMAN: 160, NO_ANSWER: 40, BUSY: 30, MACHINE: 40}  # + 15 DNC + 15 outside the window = 300


def build(workdir: Path) -> tuple[Path, dict[str, str], set[str], set[str]]:
    open_zone, closed_zone = zone_with_local_hour(12), zone_with_local_hour(3)
    rows: list[tuple[str, str]] = []
    kinds: dict[str, str] = {}

    def add(kind: str, ring: int, talk: int, zone: str = open_zone) -> str:
        phone = called_number(kind, ring, talk, 2000 + len(rows))
        rows.append((phone, zone))
        kinds[phone] = kind
        return phone

    for kind, count in MIX.items():
        for i in range(count):
            add(kind, {HUMAN: 1 + i % 4, NO_ANSWER: 0, BUSY: 1, MACHINE: 1 + i % 2}[kind], 12 if kind in
                (HUMAN, MACHINE) else 0)
    dnc_file = {add(HUMAN, 1, 12) for _ in range(10)}
    dnc_table = {add(HUMAN, 1, 12) for _ in range(5)}
    outside = {add(HUMAN, 1, 12, closed_zone) for _ in range(15)}
    # interleave the kinds, as a real list would be
    rows.sort(key=lambda r: r[0][-4:][::-1])
    (workdir / "contacts.csv").write_text("id,phone,timezone\n" + "".join(
        f"p{n:03d},{p},{z}\n" for n, (p, z) in enumerate(rows)))
    (workdir / "dnc.txt").write_text("\n".join(sorted(dnc_file)) + "\n")
    (workdir / "table_dnc.txt").write_text(" ".join(sorted(dnc_table)))
    path = workdir / "campaign.yaml"
    path.write_text(yaml.safe_dump({
        "name": "lab-predictive-300", "mode": "predictive", "target": 0.02, "agents": AGENTS,
        "caller_id": "4420700004", "contacts": "contacts.csv", "dnc": {"files": ["dnc.txt"]},
        "retry": {"busy": "3s", "no_answer": None, "machine": None, "hangup": None, "abandoned": "72h"},
        "max_attempts": 2, "amd": True, "abandonment": {"cap": 0.03, "definition": "ofcom"},
        "message": "This is Lab Bank calling about your account. We will call you back. Goodbye.",
        "ring_timeout": 15, "wrapup_seconds": 1}))
    return path, kinds, dnc_file | dnc_table, outside


async def test_three_hundred_contacts_predictive_to_completion(workdir, lab):  # type: ignore[no-untyped-def]
    config = write_engine_config(workdir)
    campaign_file, kinds, dnc, outside = build(workdir)
    assert len(kinds) == 300
    table = (workdir / "table_dnc.txt").read_text().split()
    assert campaign_cli(config, "dnc-add", *table).returncode == 0
    run, elapsed, peer_saw = await run_until_idle(lab, config, campaign_file, AGENTS, talk_seconds=4,
                                                 timeout=280)
    assert "lab-predictive-300: completed" in run.stdout, run.stdout[-2000:]

    db = make_engine(f"sqlite:///{workdir / 'ccengine.db'}")
    with Session(db) as session:
        [campaign] = session.scalars(select(CampaignRow)).all()
        contacts = list(session.scalars(select(ContactRow)))
        attempts = list(session.scalars(select(AttemptRow)))
        answers = {a.attempt_id: a for a in session.scalars(select(LiveAnswerRow))}
    db.dispose()
    assert campaign.state == "completed" and len(contacts) == 300
    assert all(c.status == "closed" and c.final_reason for c in contacts)
    assert all(a.outcome and a.ended_at for a in attempts)
    dialed = {a.phone for a in attempts}
    assert dialed == set(kinds) - dnc - outside
    called = peer_saw.numbers
    assert not set(called) & (dnc | outside)
    assert {c.final_reason for c in contacts if c.phone in dnc} == {"dnc"}
    assert {c.final_reason for c in contacts if c.phone in outside} == {"outside_window"}

    by_kind: dict[str, Counter[str]] = {}
    for attempt in attempts:
        by_kind.setdefault(kinds[attempt.phone], Counter())[attempt.outcome or ""] += 1
    assert by_kind[NO_ANSWER] == Counter(no_answer=MIX[NO_ANSWER]), by_kind
    assert by_kind[BUSY] == Counter(busy=2 * MIX[BUSY]), by_kind
    assert set(by_kind[MACHINE]) == {"machine"}, by_kind
    assert set(by_kind[HUMAN]) <= {"connected", "abandoned"}, by_kind
    for attempt in attempts:
        answer = answers.get(attempt.id)
        if attempt.outcome == "connected":
            assert answer is not None and answer.agent_connect_ts and answer.greeting_end_ts
            assert (answer.agent_connect_ts - answer.greeting_end_ts).total_seconds() <= 2.0
        elif attempt.outcome == "abandoned":
            assert answer is not None and answer.agent_connect_ts is None and answer.message_played
    live = sum(by_kind[HUMAN].values())
    abandoned = by_kind[HUMAN]["abandoned"]
    last = [line for line in run.stdout.splitlines() if "occupancy" in line][-1]
    occupancy = re.search(r"occupancy (\d+)%", last)
    # a sanity bound, not the regulatory claim (that is the simulator's, over 8-hour days): pacing
    # that ignored the abandonment feedback would drop far more than this on 30 agents
    assert abandoned / live <= 0.10, (abandoned, live)
    print(f"\n300 contacts predictive: {len(attempts)} dials, {live} live answers, {abandoned} abandoned "
          f"({abandoned / live:.1%}), {elapsed:.0f} s, final occupancy {occupancy and occupancy.group(1)}%")
