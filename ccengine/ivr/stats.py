"""Per-node IVR statistics, derived from the persisted event log (no table of their own).

Every node a caller leaves is one ``call.ivr_step`` (an entry and its exit); ``hangup`` exits
are drop-offs. Containment is the share of callers who finished in self-service (``served``)
among those whose walk ended. Figures are kept per tree version, because a hot reload can
change what a node means.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from ..store.schema import EventRow


@dataclass
class NodeStats:
    node: str
    kind: str
    entries: int = 0
    exits: Counter[str] = field(default_factory=Counter)

    @property
    def drop_offs(self) -> int:
        return self.exits["hangup"]


@dataclass
class TreeStats:
    tree: str
    version: str
    started: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    nodes: dict[str, NodeStats] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return sum(self.outcomes.values())

    @property
    def containment(self) -> float | None:
        """Served by self-service / walks that ended (None before any ended)."""
        return self.outcomes["served"] / self.finished if self.finished else None


def compute(events: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[tuple[str, str], TreeStats]:
    """(event type, data) in log order → statistics per (tree, version)."""
    out: dict[tuple[str, str], TreeStats] = {}

    def tree_of(data: Mapping[str, Any]) -> TreeStats:
        key = (str(data["tree"]), str(data["tree_version"]))
        if key not in out:
            out[key] = TreeStats(*key)
        return out[key]

    for kind, data in events:
        if kind == "call.ivr_started":
            tree_of(data).started += 1
        elif kind == "call.ivr_step":
            stats = tree_of(data)
            node = stats.nodes.get(data["node"])
            if node is None:
                node = stats.nodes[data["node"]] = NodeStats(data["node"], data["kind"])
            node.entries += 1
            node.exits[data["exit"]] += 1
        elif kind == "call.ivr_finished":
            tree_of(data).outcomes[data["outcome"]] += 1
    return out


IVR_EVENTS = ("call.ivr_started", "call.ivr_step", "call.ivr_finished")


def from_store(db: Engine, since: datetime | None = None) -> dict[tuple[str, str], TreeStats]:
    with Session(db) as session:
        query = select(EventRow.type, EventRow.data).where(EventRow.type.in_(IVR_EVENTS)).order_by(EventRow.seq)
        if since is not None:
            query = query.where(EventRow.occurred_at >= since)
        return compute((kind, data) for kind, data in session.execute(query))


def format_stats(stats: TreeStats) -> str:
    rate = "n/a" if stats.containment is None else f"{stats.containment:.0%}"
    lines = [f"tree {stats.tree} version {stats.version}: {stats.started} callers, {stats.finished} finished, "
             f"containment {rate} ({', '.join(f'{k} {v}' for k, v in sorted(stats.outcomes.items())) or '-'})",
             f"  {'node':<20} {'kind':<13} {'entries':>7} {'drop-offs':>9}  exits"]
    for node in stats.nodes.values():
        exits = ", ".join(f"{name} {count}" for name, count in node.exits.most_common())
        lines.append(f"  {node.node:<20} {node.kind:<13} {node.entries:>7} {node.drop_offs:>9}  {exits}")
    return "\n".join(lines)
