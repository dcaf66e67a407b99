"""The HTTP connector against the bundled sample directory over real loopback HTTP."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ccengine.ivr.connectors import HttpDirectory, NoDirectory, run_dip
from ccengine.ivr.interpreter import Context, Dip, Route, Walk
from ccengine.ivr.model import tree_from_text
from ccengine.ivr.sample_directory import start


@pytest.fixture
async def directory():  # type: ignore[no-untyped-def]
    runner, url, service = await start()
    client = HttpDirectory(url)
    yield client, service
    await client.close()
    await runner.cleanup()


async def test_lookups_balance_transactions_tickets(directory) -> None:  # type: ignore[no-untyped-def]
    client, _ = directory
    assert (await client.lookup_caller("5551001"))["customer"]["id"] == "c-1001"
    assert (await client.lookup_account("87654321"))["customer"]["name"] == "Alan Turing"
    assert (await client.lookup_card("4539578763621486"))["customer"]["segment"] == "premier"
    assert await client.balance("12345678") == {"amount": "1520.75", "currency": "dollars"}
    assert len((await client.transactions("12345678", limit=1))["transactions"]) == 1
    assert (await client.tickets("c-1001"))["tickets"][0]["id"] == "T-77"


async def test_pin_lockout_after_three_failures(directory) -> None:  # type: ignore[no-untyped-def]
    client, service = directory
    assert (await client.verify_pin("12345678", "2468"))["verified"] is True
    for n in range(3):
        answer = await client.verify_pin("12345678", "0000")
        assert answer["verified"] is False and answer["locked"] is (n == 2)
    locked = await client.verify_pin("12345678", "2468")  # even the right PIN is refused now
    assert locked == {"verified": False, "locked": True, "customer": locked["customer"]}
    assert service.failures["12345678"] == 3


async def test_dips_map_not_found_errors_and_timeouts(directory) -> None:  # type: ignore[no-untyped-def]
    client, service = directory
    ok = await run_dip(client, Dip("balance", {"account": "12345678"}, 2.0))
    assert ok.status == "ok" and ok.data["amount"] == "1520.75"
    assert (await run_dip(client, Dip("lookup_caller", {"number": "999"}, 2.0))).status == "not_found"
    assert (await run_dip(client, Dip("nonsense", {}, 2.0))).status == "error"
    service.delays["balance"] = 0.5
    assert (await run_dip(client, Dip("lookup_caller", {"number": "5551001"}, 0.3))).status == "ok"
    assert (await run_dip(client, Dip("balance", {"account": "12345678"}, 0.1))).status == "timeout"
    assert (await run_dip(HttpDirectory("http://127.0.0.1:9"), Dip("balance", {"account": "1"}, 2.0))).status \
        == "error"
    assert service.stats["balance"] == 2 and service.stats["by_phone"] == 2
    assert (await run_dip(NoDirectory(), Dip("balance", {"account": "1"}, 2.0))).status == "error"


TICKETS = """
version: 1
id: tickets
start: who
nodes:
  who: {type: dip, operation: lookup_caller, args: {number: "{caller}"}, store: known, next: open, fallback: agent}
  open: {type: dip, operation: tickets, args: {customer: "{customer[id]}"}, store: tickets, next: recent,
         fallback: agent}
  recent: {type: dip, operation: transactions, args: {account: "12345678"}, store: recent, next: card,
           fallback: agent}
  card: {type: dip, operation: lookup_card, args: {card: "4916338506082832"}, store: card, next: account,
         fallback: agent}
  account: {type: dip, operation: lookup_account, args: {account: "87654321"}, store: other, next: agent,
            fallback: agent}
  agent: {type: route, queue: general}
"""


async def test_every_dip_operation_a_tree_can_name_reaches_the_directory(directory) -> None:  # type: ignore[no-untyped-def]
    """A tree's arguments (as validation accepts them) are the ones each connector operation reads."""
    client, service = directory
    walk = Walk(tree_from_text(TICKETS, queues=["general"]), Context("5551001", lambda: datetime.now(UTC)))
    action = walk.start()
    while isinstance(action, Dip):
        action = walk.feed(await run_dip(client, action))
    assert isinstance(action, Route)
    assert [(s.node, s.exit) for s in walk.take_steps()][:-1] == [
        ("who", "next"), ("open", "next"), ("recent", "next"), ("card", "next"), ("account", "next")]
    learned = walk.learned()
    assert learned["customer"]["id"] == "c-1001"
    assert learned["tickets"] == {"tickets": [{"id": "T-77", "subject": "Card replacement", "status": "open"}]}
    assert [t["text"] for t in learned["recent"]["transactions"]] == ["Grocer", "Salary"]
    assert learned["card"]["customer"]["id"] == "c-2002" and learned["other"]["customer"]["name"] == "Alan Turing"
    assert service.stats == {"by_phone": 1, "tickets": 1, "transactions": 1, "card": 1, "account": 1}
