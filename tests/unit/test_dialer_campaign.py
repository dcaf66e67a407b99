"""Campaign YAML/CSV loading with located errors, and the dialing rules (DNC, windows, retries)."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ccengine.dialer.campaign import (
    ABANDON_REDIAL_GAP,
    Attempt,
    Campaign,
    Contact,
    Outcome,
    eligible,
    load_campaign,
    load_campaign_inputs,
    load_contacts,
    next_attempt_at,
)
from ccengine.yamlconf import ConfigError

GOOD_YAML = """\
name: cards-activation
mode: predictive
target: 0.02
agents: [agent1, agent2]
caller_id: "+442070000000"
contacts: contacts.csv
dnc: {files: [dnc.txt]}
window: {start: "09:00", end: "20:00"}
retry: {busy: 10m, no_answer: 2h, machine: 1d, abandoned: 72h}
max_attempts: 3
amd: true
abandonment: {cap: 0.03, definition: ofcom}
message: "This is Lab Bank. Sorry we missed you, we will call back."
"""


def campaign(**changes: object) -> Campaign:
    base: dict[str, object] = {
        "name": "t", "mode": "power", "ratio": 2.0, "agents": ["a1"], "caller_id": "4420700000",
        "contacts": "c.csv", "message": "Sorry we missed you.",
        "retry": {"busy": 300, "no_answer": 3600, "machine": 7200, "abandoned": "72h", "hangup": 600},
    }
    base.update(changes)
    return Campaign.model_validate(base)


def test_good_campaign_loads_with_paths_relative_to_the_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(GOOD_YAML)
    loaded = load_campaign(tmp_path / "c.yaml")
    assert loaded.contacts == tmp_path / "contacts.csv"
    assert loaded.dnc.files == [tmp_path / "dnc.txt"]
    assert loaded.window.start == time(9) and loaded.window.end == time(20)
    assert loaded.retry.busy == 600 and loaded.retry.machine == 86400
    assert loaded.ring_timeout >= 15
    assert loaded.strategy().name == "predictive:0.02"


def test_yaml_errors_name_file_line_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: x\n"
        "mode: power\n"
        "agents: []\n"
        "caller_id: abc\n"
        "contacts: c.csv\n"
        "message: Sorry we missed you.\n"
        "ring_timeout: 5\n"
        "retry: {busy: soon}\n"
        "colour: blue\n")
    with pytest.raises(ConfigError) as info:
        load_campaign(path)
    text = str(info.value)
    assert f"{path}:3:1: agents:" in text
    assert f"{path}:4:1: caller_id:" in text
    assert f"{path}:7:1: ring_timeout:" in text
    assert f"{path}:8:" in text and "retry.busy" in text
    assert f"{path}:9:1: colour: unknown key" in text


def test_abandoned_redial_under_72h_needs_a_guaranteed_agent() -> None:
    with pytest.raises(ValueError, match="72h"):
        campaign(retry={"abandoned": "1h"})
    assert campaign(mode="progressive", ratio=None, retry={"abandoned": "1h"}).retry.abandoned == 3600
    with pytest.raises(ValueError, match="ratio"):
        campaign(ratio=None)
    with pytest.raises(ValueError, match="target"):
        campaign(mode="predictive", ratio=None, target=0.05)


def test_bad_csv_rows_are_located_and_good_rows_still_load(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    path.write_text(
        "id,phone,timezone,name,segment\n"
        "c1,+44 20 7000 0001,Europe/London,Ann,gold\n"
        "c2,not-a-phone,Europe/London,Bob,\n"
        "c3,+14155550100,Mars/Olympus,Cy,\n"
        "c1,+14155550101,America/New_York,Dup,\n"
        ",+14155550102,America/New_York,,\n"
        "c6,(415) 555-0103,America/Los_Angeles,Eve,silver\n"
        "c7,4155550104,UTC,Fay,x,extra\n")
    contacts, issues = load_contacts(path)
    assert [c.id for c in contacts] == ["c1", "c6"]
    assert contacts[0].phone == "+442070000001" and contacts[0].attributes == {"segment": "gold"}
    assert contacts[1].phone == "4155550103" and contacts[1].line == 7
    located = {(i.line, i.key) for i in issues}
    assert located == {(3, "phone"), (4, "timezone"), (5, "id"), (6, "id"), (8, "")}
    assert all(i.file == str(path) for i in issues)
    assert "first on line 2" in next(i.message for i in issues if i.line == 5)
    assert str(issues[0]).startswith(f"{path}:3:2: phone:")


def test_missing_column_or_file_is_one_issue(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    path.write_text("id,number\n1,123456\n")
    contacts, issues = load_contacts(path)
    assert contacts == [] and "timezone" in issues[0].message and "phone" in issues[0].message
    contacts, issues = load_contacts(tmp_path / "none.csv")
    assert contacts == [] and "cannot read" in issues[0].message


def test_inputs_include_dnc_files_with_located_bad_lines(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(GOOD_YAML)
    (tmp_path / "contacts.csv").write_text("id,phone,timezone\nc1,+442070000001,Europe/London\n")
    (tmp_path / "dnc.txt").write_text("# list\n+44 20 7000 0001\nrubbish\n\n")
    _, contacts, dnc, issues = load_campaign_inputs(tmp_path / "c.yaml")
    assert len(contacts) == 1 and dnc == {"442070000001"}
    assert [(i.file, i.line) for i in issues] == [(str(tmp_path / "dnc.txt"), 3)]


LONDON = Contact("c1", "+442070000001", "Europe/London")
NOON_LONDON = datetime(2026, 6, 1, 11, 0, tzinfo=UTC)  # 12:00 BST


def test_dnc_matches_with_or_without_plus() -> None:
    verdict = eligible(campaign(), LONDON, NOON_LONDON, [], {"442070000001"})
    assert not verdict and verdict.reason == "dnc"
    assert eligible(campaign(), LONDON, NOON_LONDON, [], set())


def test_window_is_in_the_contacts_own_zone() -> None:
    tokyo = Contact("c2", "81300000000", "Asia/Tokyo")  # 20:00 JST at 11:00 UTC
    assert eligible(campaign(), tokyo, NOON_LONDON, [], set())
    late = eligible(campaign(), tokyo, NOON_LONDON + timedelta(hours=1), [], set())
    assert late.reason == "outside_window"
    assert late.not_before == datetime(2026, 6, 2, 8, 0, tzinfo=ZoneInfo("Asia/Tokyo"))


def test_retry_rules_by_outcome() -> None:
    c = campaign()
    busy = [Attempt(NOON_LONDON, Outcome.BUSY)]
    assert eligible(c, LONDON, NOON_LONDON + timedelta(seconds=299), busy, set()).reason == "retry_wait"
    assert eligible(c, LONDON, NOON_LONDON + timedelta(seconds=300), busy, set())
    assert eligible(c, LONDON, NOON_LONDON + timedelta(days=1), [Attempt(NOON_LONDON, Outcome.CONNECTED)],
                    set()).reason == "done"
    three = [Attempt(NOON_LONDON - timedelta(days=d), Outcome.NO_ANSWER) for d in range(3)]
    assert eligible(c, LONDON, NOON_LONDON + timedelta(days=1), three, set()).reason == "max_attempts"
    abandoned_then_busy = [Attempt(NOON_LONDON - timedelta(days=1), Outcome.ABANDONED),
                           Attempt(NOON_LONDON - timedelta(hours=1), Outcome.BUSY)]
    held = eligible(c, LONDON, NOON_LONDON, abandoned_then_busy, set())
    assert held.reason == "retry_wait" and held.not_before == NOON_LONDON + timedelta(days=2)
    guaranteed = campaign(mode="progressive", ratio=None, retry={"abandoned": "1h", "busy": 60})
    assert eligible(guaranteed, LONDON, NOON_LONDON, abandoned_then_busy, set())
    never = campaign(retry={"machine": None, "abandoned": "72h"})
    assert next_attempt_at(never, Attempt(NOON_LONDON, Outcome.MACHINE)) is None


contacts_st = st.builds(
    Contact, id=st.just("c"), phone=st.from_regex(r"\+?[1-9][0-9]{6,12}", fullmatch=True),
    timezone=st.sampled_from(["Europe/London", "America/New_York", "Asia/Kolkata", "Pacific/Auckland",
                              "America/Los_Angeles", "Etc/GMT+11", "Australia/Lord_Howe"]))
outcomes_st = st.sampled_from(list(Outcome))
instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 1, 1), timezones=st.just(UTC))


@settings(max_examples=400, deadline=None)
@given(contact=contacts_st, now=instants, on_dnc=st.booleans(),
       history=st.lists(st.tuples(st.integers(0, 4 * 86400), outcomes_st), max_size=5),
       mode=st.sampled_from(["power", "predictive", "progressive", "preview"]),
       max_attempts=st.integers(1, 6))
def test_rules_are_never_violated(contact: Contact, now: datetime, on_dnc: bool,
                                  history: list[tuple[int, Outcome]], mode: str, max_attempts: int) -> None:
    extra: dict[str, object] = {"mode": mode, "max_attempts": max_attempts,
                                "ratio": 2.0 if mode == "power" else None}
    if mode == "predictive":
        extra["target"] = 0.02
    if mode in ("progressive", "preview"):
        extra["retry"] = {"abandoned": "1h", "busy": 60}
    c = campaign(**extra)
    attempts = [Attempt(now - timedelta(seconds=ago), outcome) for ago, outcome in history]
    dnc = {contact.phone.lstrip("+")} if on_dnc else {"0000000"}
    verdict = eligible(c, contact, now, attempts, dnc)
    if not verdict:
        return
    local = now.astimezone(ZoneInfo(contact.timezone)).time()
    assert not on_dnc
    assert c.window.start <= local < c.window.end
    assert len(attempts) < max_attempts
    assert all(a.outcome not in (Outcome.CONNECTED, Outcome.FAILED) for a in attempts)
    if attempts:
        latest = max(a.at for a in attempts)
        for last in (a for a in attempts if a.at == latest):
            delay = c.retry.delay(last.outcome)
            assert delay is not None and now - last.at >= timedelta(seconds=delay)
    if not c.mode.agent_guaranteed:
        assert all(now - a.at >= ABANDON_REDIAL_GAP for a in attempts if a.outcome is Outcome.ABANDONED)


def test_history_spans_reruns_and_other_campaigns_abandoned_calls(tmp_path: Path) -> None:
    """A restart must not reset the rules, and the 72 h rule protects the person across campaigns."""
    from sqlalchemy.orm import Session

    from ari_apps.outbound import load_history, open_campaign
    from ccengine.dialer.schema import AttemptRow, ContactRow
    from ccengine.store.database import make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    db = make_engine(url)
    now = datetime.now(UTC)
    contact = Contact("c1", "+442070000001", "Europe/London")
    other = campaign(name="other")
    first_run = open_campaign(db, campaign(name="mine"), tmp_path / "c.yaml", [contact])
    elsewhere = open_campaign(db, other, tmp_path / "o.yaml", [contact])
    with Session(db) as session, session.begin():
        rows = {r.campaign_id: r.id for r in session.query(ContactRow)}
        for cid, outcome, ago in ((first_run, "busy", timedelta(hours=1)),
                                  (elsewhere, "abandoned", timedelta(hours=30)),
                                  (elsewhere, "connected", timedelta(hours=2)),
                                  (elsewhere, "abandoned", timedelta(hours=80))):
            session.add(AttemptRow(id=f"{cid[:8]}-{outcome}-{ago.total_seconds():.0f}", campaign_id=cid,
                                   contact_id=rows[cid], phone=contact.phone, number=1, dialed_at=now - ago,
                                   outcome=outcome))
    with Session(db) as session:
        history = load_history(session, "mine", {contact.phone})[contact.phone]
    db.dispose()
    assert sorted(a.outcome.value for a in history) == ["abandoned", "busy"]
    verdict = eligible(campaign(name="mine"), contact, now, history, set())
    assert verdict.reason == "retry_wait"
    assert verdict.not_before is not None and verdict.not_before > now + timedelta(hours=41)


def test_cli_validate_reports_rows_and_dry_run_explains(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ccengine.cli.main import main

    (tmp_path / "c.yaml").write_text(GOOD_YAML)
    (tmp_path / "contacts.csv").write_text(
        "id,phone,timezone\nc1,+442070000001,Europe/London\nc2,+442070000002,Nowhere/City\n"
        "c3,+442070000003,Europe/London\n")
    (tmp_path / "dnc.txt").write_text("+442070000003\n")
    runner = CliRunner()
    result = runner.invoke(main, ["campaign", "validate", str(tmp_path / "c.yaml")])
    assert result.exit_code == 1
    assert f"{tmp_path / 'contacts.csv'}:3:3: timezone:" in result.output
    assert "2 contact(s), 1 bad row(s), 1 DNC number(s)" in result.output
    config = tmp_path / "engine.yaml"
    config.write_text(f"pbx: {{ami: {{username: u, secret: s}}, ari: {{username: u, password: p}}}}\n"
                      f"database: {{url: 'sqlite:///{tmp_path / 'e.db'}'}}\n")
    result = runner.invoke(main, ["-c", str(config), "campaign", "start", str(tmp_path / "c.yaml"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "2 contact(s); eligible now:" in result.output and "not eligible (dnc): 1" in result.output


def test_a_restarted_campaign_counts_the_windows_earlier_abandons(tmp_path: Path) -> None:
    """Stopped and started again the same day, a campaign is still one campaign to the regulator:
    the live display and the pacing controller start from the window's stored answers."""
    import time as clock

    from sqlalchemy.orm import Session

    from ari_apps.outbound import OutboundRunner, open_campaign
    from ccengine.config import load_settings
    from ccengine.dialer.pacing import Predictive
    from ccengine.dialer.schema import AttemptRow, ContactRow, LiveAnswerRow
    from ccengine.store.database import make_engine, upgrade

    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    db = make_engine(url)
    mine = campaign(name="mine", mode="predictive", ratio=None, target=0.02,
                    abandonment={"cap": 0.03, "definition": "ofcom"})
    contact = Contact("c1", "+442070000001", "Europe/London")
    first_run = open_campaign(db, mine, tmp_path / "c.yaml", [contact])
    elsewhere = open_campaign(db, campaign(name="other"), tmp_path / "o.yaml", [contact])
    now = clock.time()
    window = (now // 86_400) * 86_400  # the Ofcom day the runner is in
    answers = ([(first_run, window + (now - window) * (i + 1) / 12, i < 3) for i in range(10)]
               + [(first_run, window - 600, True), (elsewhere, now - 1, True)])  # yesterday; another campaign
    with Session(db) as session, session.begin():
        rows = {r.campaign_id: r.id for r in session.query(ContactRow)}
        for n, (cid, ts, abandoned) in enumerate(answers):
            at = datetime.fromtimestamp(ts, UTC)
            session.add(AttemptRow(id=f"a{n}", campaign_id=cid, contact_id=rows[cid], phone=contact.phone,
                                   number=1, dialed_at=at, answered_at=at, outcome="connected"))
            session.flush()
            session.add(LiveAnswerRow(attempt_id=f"a{n}", campaign_id=cid, answer_ts=at, greeting_end_ts=at,
                                      agent_connect_ts=None if abandoned else at + timedelta(seconds=1),
                                      message_played=abandoned))
    second_run = open_campaign(db, mine, tmp_path / "c.yaml", [contact])
    runner = OutboundRunner(load_settings(Path(__file__).parents[2] / "config" / "ccengine.yaml"), mine,
                            second_run, db)
    runner._load()
    runner._update_progress()
    db.dispose()
    assert sorted(a.call_id for a in runner.answers) == [f"a{n}" for n in range(10)]
    assert runner.progress.abandon_rate == pytest.approx(3 / 10)
    assert "abandoned   0 (ofcom-24h window 30.0%)" in runner.progress.line("ofcom-24h")  # this run: none yet
    assert isinstance(runner.strategy, Predictive)
    assert runner.strategy.controller.tracker.total == 10
    assert runner.strategy.controller.tracker.recent_abandoned == 3

    # and `campaign status` reports the regulator's windows over every run
    from click.testing import CliRunner

    from ccengine.cli.main import main

    config = tmp_path / "engine.yaml"
    config.write_text(f"pbx: {{ami: {{username: u, secret: s}}, ari: {{username: u, password: p}}}}\n"
                      f"database: {{url: '{url}'}}\n")
    status = CliRunner().invoke(main, ["-c", str(config), "campaign", "status", "mine"])
    assert status.exit_code == 0, status.output
    day = datetime.fromtimestamp(window, UTC).date()
    assert (f"ofcom-24h windows, every run of mine: {day - timedelta(days=1)} 100.00% (1/1) OVER CAP, "
            f"{day} 30.00% (3/10) OVER CAP") in status.output, status.output
