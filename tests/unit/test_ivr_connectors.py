"""The HTTP connector against the bundled sample directory over real loopback HTTP."""

from __future__ import annotations

import pytest

from ccengine.ivr.connectors import HttpDirectory, NoDirectory, run_dip
from ccengine.ivr.interpreter import Dip
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
