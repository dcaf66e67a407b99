"""Which tree new callers get, and hot reload without disturbing callers mid-tree.

A :class:`~.interpreter.Walk` holds the tree it started on, so swapping the registry's
tree only affects callers who arrive afterwards: everyone else finishes on their version.
Without an IVR file the engine's old ``flow`` settings (prompt + one menu) become a tree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import yaml

from ..config import FlowSettings
from ..yamlconf import ConfigError
from .model import Tree, load_tree, tree_from_text

log = logging.getLogger(__name__)

WELCOME = "Welcome to Lab Bank. Accounts, press 1. Cards, 2. Fraud, 3."


def flow_tree(flow: FlowSettings, queues: Iterable[str] | None = None) -> Tree:
    """The ``flow`` menu (digit → queue, default queue) as a one-menu tree."""
    prompt = {"sound": flow.prompt} if flow.prompt else {"say": WELCOME}
    nodes: dict[str, object] = {
        "menu": {"type": "menu", "prompt": prompt, "timeout": flow.menu_timeout, "attempts": flow.menu_attempts,
                 "choices": {digit: f"queue_{queue}" for digit, queue in flow.menu.items()},
                 "fallback": f"queue_{flow.default_queue}"},
    }
    for queue in {*flow.menu.values(), flow.default_queue}:
        nodes[f"queue_{queue}"] = {"type": "route", "queue": queue}
    text = yaml.safe_dump({"version": 1, "id": "flow", "start": "menu", "nodes": nodes}, sort_keys=False)
    return tree_from_text(text, "settings flow", queues)


class TreeRegistry:
    def __init__(self, path: Path | None, flow: FlowSettings, queues: Callable[[], Iterable[str]],
                 skills: Callable[[], Iterable[str]] | None = None):
        self.path = path
        self.flow = flow
        self._queues = queues
        self._skills = skills
        self.tree = self._load()

    def _load(self) -> Tree:
        if self.path is None:
            return flow_tree(self.flow, self._queues())
        return load_tree(self.path, self._queues(), self._skills() if self._skills is not None else None)

    def reload(self) -> bool:
        """Load the file again; a bad file keeps the running tree (and says why)."""
        try:
            tree = self._load()
        except ConfigError as exc:
            for issue in exc.issues:
                log.error("IVR reload refused: %s", issue)
            return False
        if tree.version != self.tree.version:
            log.info("IVR tree %s: version %s → %s (callers in the tree keep theirs)", tree.id,
                     self.tree.version, tree.version)
        self.tree = tree
        return True
