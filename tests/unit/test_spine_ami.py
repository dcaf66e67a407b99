"""AmiClient against a tiny fake AMI server on loopback.

The fake speaks just enough of the Asterisk Manager protocol: the banner, Login,
Ping, a generic success for any other action, and unsolicited events on demand.
It can stop answering pings (a half-open link) and drop connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from panoramisk.message import Message

from ccengine.pbx.asterisk.ami import AmiClient
from ccengine.pbx.protocol import PbxError

EOL = "\r\n"


@dataclass
class FakeAmi:
    answer_pings: bool = True
    accept_login: bool = True
    received: list[dict[str, str]] = field(default_factory=list)
    connections: int = 0
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    handlers: set[asyncio.Task[Any]] = field(default_factory=set)
    server: asyncio.Server | None = None
    port: int = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.drop_all()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        if self.handlers:
            await asyncio.wait(self.handlers, timeout=2)

    def drop_all(self) -> None:
        for writer in self.writers:
            writer.close()
        self.writers.clear()

    def actions(self, name: str) -> list[dict[str, str]]:
        return [a for a in self.received if a.get("Action", "").lower() == name.lower()]

    def send_events(self, count: int) -> None:
        writer = self.writers[-1]
        writer.write("".join(f"Event: Newchannel{EOL}Privilege: call,all{EOL}Channel: PJSIP/x-{i:08x}{EOL}"
                             f"Uniqueid: 1700000000.{i}{EOL}{EOL}" for i in range(count)).encode())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.handlers.add(task)
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        try:
            while True:
                raw = (await reader.readuntil(b"\r\n\r\n")).decode()
                headers = dict(line.split(": ", 1) for line in raw.split(EOL) if ": " in line)
                self.received.append(headers)
                action, action_id = headers.get("Action", "").lower(), headers.get("ActionID", "")
                if action == "login":
                    if self.accept_login:
                        reply = f"Response: Success{EOL}ActionID: {action_id}{EOL}" \
                                f"Message: Authentication accepted{EOL}{EOL}"
                    else:
                        reply = f"Response: Error{EOL}ActionID: {action_id}{EOL}" \
                                f"Message: Authentication failed{EOL}{EOL}"
                elif action == "ping":
                    if not self.answer_pings:
                        continue
                    reply = f"Response: Success{EOL}Ping: Pong{EOL}ActionID: {action_id}{EOL}" \
                            f"Timestamp: 1700000000.000000{EOL}{EOL}"
                else:
                    reply = f"Response: Success{EOL}ActionID: {action_id}{EOL}Message: ok{EOL}{EOL}"
                writer.write(reply.encode())
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@dataclass
class LinkLog:
    calls: list[tuple[float, bool, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, up: bool, reason: str) -> None:
        self.calls.append((time.monotonic(), up, reason))
        self.changed.set()

    def ups(self) -> int:
        return sum(1 for _, up, _ in self.calls if up)

    def downs(self) -> list[tuple[float, str]]:
        return [(t, reason) for t, up, reason in self.calls if not up]


async def until(predicate: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@pytest.fixture
async def fake() -> AsyncIterator[FakeAmi]:
    server = FakeAmi()
    await server.start()
    yield server
    await server.stop()


def make_client(fake: FakeAmi, **kwargs: Any) -> AmiClient:
    options: dict[str, Any] = {"ping_interval": 0.2, "ping_timeout": 0.2, "max_backoff": 0.1, **kwargs}
    return AmiClient("127.0.0.1", fake.port, "ccengine", "s3cret", **options)


@pytest.fixture
async def connected(fake: FakeAmi) -> AsyncIterator[tuple[AmiClient, LinkLog]]:
    client = make_client(fake)
    links = LinkLog()
    await asyncio.wait_for(client.start(links), timeout=3)
    yield client, links
    await client.close()


# ------------------------------------------------------------------ login and actions


async def test_login_sends_credentials_and_event_classes(fake: FakeAmi,
                                                         connected: tuple[AmiClient, LinkLog]) -> None:
    client, links = connected
    assert client.connected
    await until(lambda: links.ups() == 1)
    (login,) = fake.actions("Login")
    assert (login["Username"], login["Secret"]) == ("ccengine", "s3cret")
    assert "dtmf" not in login["Events"].split(","), "DTMF must never cross AMI"


async def test_action_returns_the_response(connected: tuple[AmiClient, LinkLog]) -> None:
    client, _ = connected
    response = await client.action({"Action": "Ping"})
    assert response.success
    assert response["Ping"] == "Pong"


@pytest.mark.parametrize("value", ["x\r\nAction: Originate", "a\nb", "trailing\r", "\n",
                                   ["ok", "Var=1\r\nAction: Originate"]])
async def test_action_rejects_cr_lf_before_anything_is_sent(fake: FakeAmi, connected: tuple[AmiClient, LinkLog],
                                                           value: Any) -> None:
    client, _ = connected
    sent_before = len(fake.received)
    with pytest.raises(PbxError, match="CR or LF"):
        await client.action({"Action": "Setvar", "Channel": "PJSIP/a-1", "Variable": value})
    await client.action({"Action": "Ping"})  # a later action arrives, the rejected one never did
    await until(lambda: len(fake.received) > sent_before)
    assert not fake.actions("Setvar")
    assert not fake.actions("Originate")


async def test_action_when_never_connected_is_pbx_error() -> None:
    client = AmiClient("127.0.0.1", 9, "u", "s")
    with pytest.raises(PbxError, match="not connected"):
        await client.action({"Action": "Ping"})


class _StubManager:
    """Just enough of a connected panoramisk Manager for AmiClient.action."""

    protocol = object()

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send_action(self, action: dict[str, Any], as_list: bool = False) -> Message:
        self.sent.append(action)
        return Message({"Response": "Success"})


def _stub_client() -> tuple[AmiClient, _StubManager]:
    client = AmiClient("127.0.0.1", 9, "u", "s")
    manager = _StubManager()
    client._manager = manager  # type: ignore[assignment]
    client._up.set()
    return client, manager


def _run(coro: Any) -> Any:
    """Drive a coroutine that never suspends (the stub manager answers at once)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    raise AssertionError("coroutine suspended")


with_line_break = st.tuples(st.text(max_size=20), st.sampled_from(["\r", "\n", "\r\n"]),
                            st.text(max_size=20)).map("".join)


@settings(max_examples=60, deadline=None)
@given(value=with_line_break, as_list=st.booleans(), header=st.sampled_from(["Channel", "Variable", "Action"]))
def test_any_value_with_cr_or_lf_is_rejected(value: str, as_list: bool, header: str) -> None:
    client, manager = _stub_client()
    action: dict[str, Any] = {"Action": "Setvar", "Channel": "PJSIP/a-1", "Variable": "X=1"}
    action[header] = ["A=1", value] if as_list else value
    with pytest.raises(PbxError):
        _run(client.action(action))
    assert manager.sent == []


@settings(max_examples=40, deadline=None)
@given(value=st.text(max_size=30).filter(lambda s: "\r" not in s and "\n" not in s))
def test_values_without_cr_lf_are_sent_unchanged(value: str) -> None:
    client, manager = _stub_client()
    response = _run(client.action({"Action": "Setvar", "Variable": f"X={value}"}))
    assert response.success
    assert manager.sent == [{"Action": "Setvar", "Variable": f"X={value}"}]


def test_failed_response_is_pbx_error() -> None:
    client, manager = _stub_client()

    async def refuse(action: dict[str, Any], as_list: bool = False) -> Message:
        return Message({"Response": "Error", "Message": "No such channel"})

    manager.send_action = refuse  # type: ignore[method-assign]
    with pytest.raises(PbxError, match="No such channel"):
        _run(client.action({"Action": "StopMixMonitor", "Channel": "PJSIP/gone-1"}))


# ------------------------------------------------------------------ supervision


async def test_answered_pings_keep_the_link_up(fake: FakeAmi, connected: tuple[AmiClient, LinkLog]) -> None:
    client, links = connected
    await until(lambda: len(fake.actions("Ping")) >= 3)
    assert links.downs() == []
    assert client.reconnects == 0
    assert fake.connections == 1


async def test_half_open_link_detected_by_unanswered_ping(fake: FakeAmi,
                                                          connected: tuple[AmiClient, LinkLog]) -> None:
    client, links = connected
    await until(lambda: len(fake.actions("Ping")) >= 1)
    fake.answer_pings = False
    silent_since = time.monotonic()
    await until(lambda: links.downs() != [], timeout=2)
    (lost_at, reason), = links.downs()
    assert "ping timeout" in reason
    # ping_interval + ping_timeout (0.2 + 0.2) plus scheduling slack
    assert 0.2 <= lost_at - silent_since < 0.4 + 0.3
    # the supervisor then reconnects on its own
    await until(lambda: links.ups() == 2)
    assert fake.connections == 2
    assert client.reconnects == 1


async def test_reconnects_after_server_closes_the_connection(fake: FakeAmi,
                                                             connected: tuple[AmiClient, LinkLog]) -> None:
    client, links = connected
    await until(lambda: links.ups() == 1)
    fake.drop_all()
    await until(lambda: links.ups() == 2)
    assert [up for _, up, _ in links.calls] == [True, False, True]
    assert links.downs()[0][1] == "connection lost"
    assert fake.connections == 2
    assert len(fake.actions("Login")) == 2
    assert client.connected
    assert (await client.action({"Action": "Ping"}))["Ping"] == "Pong"


async def test_refused_login_never_reports_link_up(fake: FakeAmi) -> None:
    fake.accept_login = False
    client = make_client(fake)
    links = LinkLog()
    await client.start(links, wait=False)
    try:
        await until(lambda: fake.connections >= 3)  # keeps retrying with backoff
        assert links.calls == []
        assert not client.connected
    finally:
        await client.close()


async def test_events_are_queued_in_order(fake: FakeAmi, connected: tuple[AmiClient, LinkLog]) -> None:
    client, _ = connected
    fake.send_events(5)
    await until(lambda: client.queue.qsize() == 5)
    ids = [client.queue.get_nowait()["Uniqueid"] for _ in range(5)]
    assert ids == [f"1700000000.{i}" for i in range(5)]
    assert client.dropped == 0


async def test_queue_overflow_counts_drops_and_forces_resync(fake: FakeAmi) -> None:
    client = make_client(fake, queue_size=5, ping_interval=5.0)
    links = LinkLog()
    await asyncio.wait_for(client.start(links), timeout=3)
    try:
        fake.send_events(20)
        await until(lambda: links.ups() == 2)
        assert client.queue.qsize() == 5
        assert client.dropped == 15
        assert links.downs()[0][1] == "event queue overflow"
        assert client.reconnects == 1
        assert fake.connections == 2
    finally:
        await client.close()


async def test_later_disconnect_after_an_overflow_is_reported_as_connection_lost(fake: FakeAmi) -> None:
    client = make_client(fake, queue_size=5, ping_interval=5.0)
    links = LinkLog()
    await asyncio.wait_for(client.start(links), timeout=3)
    try:
        fake.send_events(6)
        await until(lambda: links.ups() == 2)
        while not client.queue.empty():  # the consumer catches up and resynchronises
            client.queue.get_nowait()
        fake.drop_all()
        await until(lambda: links.ups() == 3)
        assert links.downs()[1][1] == "connection lost"
    finally:
        await client.close()
