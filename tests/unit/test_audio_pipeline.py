"""End to end on loopback: RTP of a scripted two-leg call -> receiver -> pipeline -> events."""

from __future__ import annotations

import asyncio
import socket

import numpy as np

from ccengine.audio.events import CallAnalyticsOvertalk, CallAnalyticsSilence
from ccengine.audio.pipeline import Pipeline
from ccengine.audio.rtp import Frame, build_rtp, open_receiver, receiver_port
from ccengine.audio.vad import VadSettings
from ccengine.core.events import Payload
from tests.unit.test_audio_analysers import RATE, say, silence


async def test_two_legs_over_udp_give_silence_and_overtalk_events() -> None:
    a = say("Good morning, thank you for calling. How can I help you today?")
    c = say("Hello, I would like to check the balance of my savings account.")
    # agent talks; 3 s of silence; both talk at once (customer starts 1 s into the agent's speech)
    agent = np.concatenate([a, silence(3.0), a])
    customer = np.concatenate([silence(len(a) / RATE + 3.0 + 1.0), c])
    n = max(len(agent), len(customer))
    agent = np.pad(agent, (0, n - len(agent)))
    customer = np.pad(customer, (0, n - len(customer)))
    events: list[tuple[str, Payload]] = []
    rx = await open_receiver(queue_size=2000)  # faster than real time here; overload is tested elsewhere
    pipe = Pipeline(lambda call, ev, f: events.append((call, ev)),
                    vad_settings=VadSettings(silence_event_s=2.0, overtalk_min_s=0.5))
    for ssrc, (key, direction) in enumerate([("agent", "agent"), ("cust", "customer")], start=1):
        rx.register(key, "slin", ssrc=ssrc)
        pipe.add(key, "call-1", direction)  # type: ignore[arg-type]

    async def handle(frames: list[Frame]) -> None:
        pipe.process(frames)

    consumer = asyncio.create_task(rx.consume(handle))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(n // 160):
            for ssrc, sig in ((1, agent), (2, customer)):
                sock.sendto(build_rtp(i, i * 160, ssrc, sig[i * 160:(i + 1) * 160].astype(">i2").tobytes()),
                            ("127.0.0.1", receiver_port(rx)))
            if i % 25 == 0:
                await asyncio.sleep(0.005)  # ~10x real time, lets the loop read
        await asyncio.sleep(0.3)
    finally:
        sock.close()
        consumer.cancel()
        rx.close()
    silences = [e for _, e in events if isinstance(e, CallAnalyticsSilence)]
    overtalk = [e for _, e in events if isinstance(e, CallAnalyticsOvertalk)]
    assert len(silences) == 1 and abs(silences[0].started_at - len(a) / RATE) < 0.5
    assert len(overtalk) == 1 and overtalk[0].by == "customer"
    assert abs(overtalk[0].started_at - (len(a) / RATE + 4.0)) < 0.5
    summary = pipe.remove_call("call-1")
    assert summary is not None and summary["customer_interruptions"] == 1
    assert rx.dropped() == 0


def test_a_direction_that_stops_sending_does_not_stall_the_other() -> None:
    """The customer's phone sends nothing after 1 s; the agent's speech is still fully counted."""
    a = np.concatenate([silence(1.5), say("Good morning, thank you for calling. How can I help you today?"),
                        silence(1.0)])
    events: list[Payload] = []
    pipe = Pipeline(lambda call, ev, f: events.append(ev))
    pipe.add("a", "c", "agent")
    pipe.add("c", "c", "customer")
    for i in range(len(a) // 160):
        frames = [Frame("a", i, RATE, a[i * 160:(i + 1) * 160], 0.0)]
        if i < 50:
            frames.append(Frame("c", i, RATE, np.zeros(160, dtype=np.int16), 0.0))
        pipe.process(frames)
    summary = pipe.remove_call("c")
    assert summary is not None
    truth = len(a) / RATE - 2.5
    assert abs(float(summary["agent_talk_s"]) - truth) / truth < 0.05, (summary, truth)


def test_a_transferred_agent_direction_continues_on_the_call_clock() -> None:
    """Agent 1 speaks, a transfer holds the caller 8 s, agent 2's stream starts again at frame 0 and speaks.

    Both agents' speech counts, on the customer's clock; the hold raises no silence event and is no
    silence of the conversation.
    """
    line = say("Good morning, thank you for calling. How can I help you today?")
    first = np.concatenate([silence(1.0), line, silence(1.0)])
    hold = 8.0
    second = np.concatenate([silence(0.5), line, silence(1.0)])
    events: list[Payload] = []
    pipe = Pipeline(lambda call, ev, f: events.append(ev), vad_settings=VadSettings(silence_event_s=5.0))
    pipe.add("a", "c", "agent")
    pipe.add("c", "c", "customer")
    customer_frames = (len(first) + len(second)) // 160 + int(hold / 0.02)
    held_from, held_to = len(first) // 160, len(first) // 160 + int(hold / 0.02)
    quiet = np.zeros(160, dtype=np.int16)
    for i in range(customer_frames):
        frames = [Frame("c", i, RATE, quiet, 0.0)]
        if i < held_from:
            frames.append(Frame("a", i, RATE, first[i * 160:(i + 1) * 160], 0.0))
        elif i == held_from:
            pipe.hold("c", True)  # agent 1 released; their stream sends nothing more
        if i == held_to:
            assert pipe.restart("a")  # agent 2 bridged: the same stream, counting from 0 again
            pipe.hold("c", False)
        if i >= held_to:
            j = i - held_to
            frames.append(Frame("a", j, RATE, second[j * 160:(j + 1) * 160], 0.0))
        pipe.process(frames)
    assert not pipe.restart("nothing")
    summary = pipe.remove_call("c")
    assert summary is not None
    truth = 2 * len(line) / RATE
    assert abs(float(summary["agent_talk_s"]) - truth) / truth < 0.05, (summary, truth)
    assert not [e for e in events if isinstance(e, CallAnalyticsSilence)], events
    conversation = (len(first) + len(second)) / RATE
    assert float(summary["silence_s"]) < conversation - truth + 0.5, summary  # the hold is not in it
    assert float(summary["longest_silence_s"]) < 2.0, summary
