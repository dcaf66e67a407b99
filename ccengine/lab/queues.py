"""Queue definitions for lab runs that only need N interchangeable agents (demo, benchmarks)."""

from __future__ import annotations

from pathlib import Path

import yaml


def write_general_queue(path: Path, agents: int, *, wrap_up: float = 1.0, connection: str = "per_call") -> Path:
    """One always-open queue ``general`` served by agent1..agentN (the lab softphones), rung per call
    or on persistent lines (``connection``)."""
    document = {
        "version": 1,
        "skills": [{"id": "general", "kind": "product"}],
        "calendars": {"always": {"timezone": "UTC", "open": {"mon-sun": ["00:00-24:00"]}}},
        "queues": [{"id": "general", "required_skills": {"general": 1}, "hours": "always",
                    "wrap_up": wrap_up, "announcements": {"position": False, "estimated_wait": False}}],
        "agents": [{"id": f"agent{i}", "name": f"Agent {i}", "skills": {"general": 5}, "connection": connection}
                   for i in range(1, agents + 1)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path
