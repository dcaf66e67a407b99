"""ccengine.acd.fifo.FifoQueue: examples plus a state machine against an independent model.

Model: waiting calls are a plain list; a ready agent is ranked by (ready-since,
order in which it was made ready); ``match`` pairs the head call with the
best-ranked agent until one side is empty.
"""

from __future__ import annotations

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ccengine.acd.fifo import FifoQueue

CALLS = [f"call-{i}" for i in range(8)]
AGENTS = [f"agent-{i}" for i in range(5)]


def test_calls_matched_in_arrival_order_with_longest_ready_agent_first() -> None:
    q = FifoQueue("general")
    assert [q.enqueue(c) for c in ("c1", "c2", "c3")] == [1, 2, 3]
    q.agent_ready("late", since=30.0)
    q.agent_ready("early", since=10.0)
    q.agent_ready("middle", since=20.0)
    assert q.ready_agents == ("early", "middle", "late")
    assert q.match() == [("c1", "early"), ("c2", "middle"), ("c3", "late")]
    assert q.waiting == () and q.ready_agents == ()


def test_match_stops_when_either_side_runs_out() -> None:
    q = FifoQueue("general")
    q.enqueue("c1")
    assert q.match() == []
    q.agent_ready("a1", 1.0)
    q.agent_ready("a2", 2.0)
    assert q.match() == [("c1", "a1")]
    assert q.ready_agents == ("a2",)
    assert q.match() == []


def test_matched_agent_is_not_offered_again_until_ready() -> None:
    q = FifoQueue("general")
    q.agent_ready("a1", 1.0)
    q.enqueue("c1")
    assert q.match() == [("c1", "a1")]
    q.enqueue("c2")
    assert q.match() == []
    q.agent_ready("a1", 5.0)
    assert q.match() == [("c2", "a1")]


def test_front_requeue_goes_to_the_head() -> None:
    q = FifoQueue("general")
    q.enqueue("c1")
    q.enqueue("c2")
    assert q.enqueue("c0", front=True) == 1
    assert q.waiting == ("c0", "c1", "c2")
    q.agent_ready("a", 0.0)
    assert q.match() == [("c0", "a")]


def test_enqueue_twice_keeps_the_original_position() -> None:
    q = FifoQueue("general")
    q.enqueue("c1")
    q.enqueue("c2")
    assert q.enqueue("c1") == 1
    assert q.enqueue("c2", front=True) == 2
    assert q.waiting == ("c1", "c2")


def test_remove() -> None:
    q = FifoQueue("general")
    for c in ("c1", "c2", "c3"):
        q.enqueue(c)
    assert q.remove("c2") is True
    assert q.remove("c2") is False
    assert q.remove("never") is False
    assert q.waiting == ("c1", "c3")


def test_ready_again_repositions_and_unavailable_removes() -> None:
    q = FifoQueue("general")
    q.agent_ready("a", 1.0)
    q.agent_ready("b", 2.0)
    q.agent_ready("a", 3.0)  # became ready again later: now behind b
    assert q.ready_agents == ("b", "a")
    q.agent_unavailable("b")
    q.agent_unavailable("nobody")
    assert q.ready_agents == ("a",)


def test_equal_ready_times_keep_arrival_order() -> None:
    q = FifoQueue("general")
    for agent in ("x", "y", "z"):
        q.agent_ready(agent, 7.0)
    q.agent_ready("w", 6.0)
    assert q.ready_agents == ("w", "x", "y", "z")


class FifoMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.q = FifoQueue("general")
        self.waiting: list[str] = []
        self.ready: dict[str, tuple[float, int]] = {}
        self.busy: set[str] = set()  # matched and not made ready since
        self.tick = 0

    @rule(call=st.sampled_from(CALLS), front=st.booleans())
    def enqueue(self, call: str, front: bool) -> None:
        position = self.q.enqueue(call, front=front)
        if call not in self.waiting:
            if front:
                self.waiting.insert(0, call)
            else:
                self.waiting.append(call)
        assert position == self.waiting.index(call) + 1

    @rule(call=st.sampled_from(CALLS))
    def remove(self, call: str) -> None:
        assert self.q.remove(call) == (call in self.waiting)
        if call in self.waiting:
            self.waiting.remove(call)

    @rule(agent=st.sampled_from(AGENTS), since=st.integers(0, 6).map(float))
    def ready_agent(self, agent: str, since: float) -> None:
        self.q.agent_ready(agent, since)
        self.tick += 1
        self.ready[agent] = (since, self.tick)
        self.busy.discard(agent)

    @rule(agent=st.sampled_from(AGENTS))
    def unavailable(self, agent: str) -> None:
        self.q.agent_unavailable(agent)
        self.ready.pop(agent, None)

    @rule()
    def match(self) -> None:
        pairs = self.q.match()
        expected_count = min(len(self.waiting), len(self.ready))
        assert len(pairs) == expected_count
        ranked = sorted(self.ready, key=lambda a: self.ready[a])
        assert pairs == list(zip(self.waiting[:expected_count], ranked[:expected_count], strict=True))
        for _, agent in pairs:
            assert agent not in self.busy, f"{agent} matched twice without becoming ready"
            self.busy.add(agent)
            del self.ready[agent]
        del self.waiting[:expected_count]

    @invariant()
    def views_agree_with_model(self) -> None:
        assert self.q.waiting == tuple(self.waiting)
        assert self.q.ready_agents == tuple(sorted(self.ready, key=lambda a: self.ready[a]))
        assert not self.busy & set(self.q.ready_agents)
        assert len(set(self.q.waiting)) == len(self.q.waiting)


FifoMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
test_fifo_state_machine = FifoMachine.TestCase
