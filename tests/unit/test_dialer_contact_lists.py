"""Contact lists in the database (a real SQLite file, migrated), and the queue-or-agents rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.orm import Session

from ccengine.cli.main import main
from ccengine.dialer.campaign import Campaign, ContactTable, load_campaign
from ccengine.dialer.contact_lists import read_list
from ccengine.dialer.schema import ContactListRow
from ccengine.store.database import make_engine
from ccengine.yamlconf import ConfigError

CAMPAIGN = """\
name: db-list
mode: predictive
target: 0.02
queue: general
caller_id: "+442070000000"
contacts: {table: campaign_contacts, list: november}
message: "This is Lab Bank. Sorry we missed you, we will call back."
"""


def engine_config(tmp_path: Path) -> Path:
    config = tmp_path / "engine.yaml"
    config.write_text(f"pbx: {{ami: {{username: u, secret: s}}, ari: {{username: u, password: p}}}}\n"
                      f"database: {{url: 'sqlite:///{tmp_path / 'e.db'}'}}\n")
    return config


def test_import_reports_bad_rows_with_file_and_line_and_loads_the_good_ones(tmp_path: Path) -> None:
    config = engine_config(tmp_path)
    csv = tmp_path / "list.csv"
    csv.write_text("id,phone,timezone,name,segment\n"
                   "a1,+442070000001,Europe/London,Ann,gold\n"
                   "a2,not-a-number,Europe/London,Bob,gold\n"
                   "a3,+442070000003,Mars/Olympus,Cy,gold\n"
                   "a4,+442070000004,Asia/Hong_Kong,Di,silver\n")
    runner = CliRunner()
    result = runner.invoke(main, ["-c", str(config), "campaign", "contacts-import", str(csv), "--list", "november"])
    assert result.exit_code == 1
    assert f"{csv}:3:2: phone:" in result.output and f"{csv}:4:3: timezone:" in result.output
    assert "list november: 2 added, 0 updated, 2 bad row(s) skipped" in result.output

    db = make_engine(f"sqlite:///{tmp_path / 'e.db'}")
    contacts = read_list(db, "november")
    assert [(c.id, c.phone, c.timezone, c.name, c.attributes) for c in contacts] == [
        ("a1", "+442070000001", "Europe/London", "Ann", {"segment": "gold"}),
        ("a4", "+442070000004", "Asia/Hong_Kong", "Di", {"segment": "silver"})]
    with Session(db) as session:
        assert session.scalars(select(ContactListRow.source)).all() == [f"{csv}:2", f"{csv}:5"]

    # a fixed file re-imported: known ids are updated, new ones added; other lists untouched
    csv.write_text("id,phone,timezone\na1,+442070000011,Europe/London\na2,+442070000002,Europe/London\n")
    result = runner.invoke(main, ["-c", str(config), "campaign", "contacts-import", str(csv), "--list", "november"])
    assert result.exit_code == 0, result.output
    assert "1 added, 1 updated, 0 bad row(s)" in result.output
    assert [c.phone for c in read_list(db, "november")] == ["+442070000011", "+442070000004", "+442070000002"]
    assert read_list(db, "december") == []
    db.dispose()

    (tmp_path / "c.yaml").write_text(CAMPAIGN)
    result = runner.invoke(main, ["-c", str(config), "campaign", "validate", str(tmp_path / "c.yaml")])
    assert result.exit_code == 0, result.output
    assert "db-list: mode predictive, queue general, 3 contact(s), 0 bad row(s)" in result.output
    (tmp_path / "d.yaml").write_text(CAMPAIGN.replace("list: november", "list: december"))
    result = runner.invoke(main, ["-c", str(config), "campaign", "validate", str(tmp_path / "d.yaml")])
    assert result.exit_code == 1 and "no contacts in list 'december'" in result.output


def test_list_name_is_checked() -> None:
    result = CliRunner().invoke(main, ["campaign", "contacts-import", "x.csv", "--list", "no spaces"])
    assert result.exit_code == 2 and "--list" in result.output


def test_campaign_names_agents_or_a_queue(tmp_path: Path) -> None:
    loaded = Campaign.model_validate({
        "name": "q", "mode": "progressive", "queue": "general", "skills": {"cards": 3}, "caller_id": "4420700000",
        "contacts": {"list": "november"}, "message": "Sorry we missed you."})
    assert loaded.contacts == ContactTable(list="november") and loaded.agents is None
    path = tmp_path / "bad.yaml"
    path.write_text(CAMPAIGN.replace("queue: general", "queue: general\nagents: [agent1]"))
    with pytest.raises(ConfigError, match=r"either agents .* or queue"):
        load_campaign(path)
    path.write_text(CAMPAIGN.replace("list: november", "list: november, table: customers"))
    with pytest.raises(ConfigError) as info:
        load_campaign(path)
    assert f"{path}:6:" in str(info.value) and "contacts" in str(info.value)


def test_shipped_campaigns_load() -> None:
    folder = Path(__file__).parents[2] / "config" / "campaigns"
    blended = load_campaign(folder / "blended.yaml")
    assert blended.queue == "general" and blended.agents is None
    assert blended.contacts == ContactTable(list="card-activation")
    assert load_campaign(folder / "example.yaml").agents
