"""Graphviz rendering of a tree, so an admin can see what callers will walk through.

The DOT text is built here (pure); ``dot`` from the Debian ``graphviz`` package turns
it into SVG or PNG. Optional per-node statistics label the nodes and edges.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping

from .model import TERMINALS, Tree, node_exits

_SHAPES = {"menu": "box3d", "language": "box3d", "collect": "parallelogram", "authenticate": "octagon",
           "dip": "cylinder", "set": "note", "branch": "diamond", "play": "box"}


class GraphError(RuntimeError):
    pass


def _q(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(tree: Tree, entries: Mapping[str, int] | None = None,
           exits: Mapping[tuple[str, str], int] | None = None) -> str:
    lines = [f"digraph {_q(tree.id)} {{", "  rankdir=TB;", '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];',
             f'  labelloc="t"; label={_q(f"{tree.id} (version {tree.version})")};']
    for node_id, node in tree.nodes.items():
        label = f"{node_id}\\n[{node.type}]"
        extra = getattr(node, "queue", None)
        if extra:
            label += f"\\nqueue {extra}"
        if getattr(node, "served", False):
            label += "\\nself-served"
        if getattr(node, "secure", False) or node.type == "authenticate":
            label += "\\n(PCI masked)"
        if entries is not None:
            label += f"\\n{entries.get(node_id, 0)} entries"
        shape = "doublecircle" if node.type in TERMINALS else _SHAPES.get(node.type, "box")
        style = ', style=filled, fillcolor="#e8f4e8"' if node_id == tree.start else ""
        lines.append(f'  {_q(node_id)} [label="{label}", shape={shape}{style}];')
    for node_id, node in tree.nodes.items():
        for exit_name, target in node_exits(node).items():
            label = exit_name
            if exits is not None:
                label += f" ({exits.get((node_id, exit_name), 0)})"
            lines.append(f"  {_q(node_id)} -> {_q(target)} [label={_q(label)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot: str, fmt: str) -> bytes:
    """DOT text → SVG or PNG bytes via Graphviz."""
    if fmt not in ("svg", "png", "dot"):
        raise GraphError(f"unknown format {fmt}: use svg, png or dot")
    if fmt == "dot":
        return dot.encode()
    exe = shutil.which("dot")
    if exe is None:
        raise GraphError("Graphviz `dot` is missing: run bin/setup-host (Debian package graphviz)")
    done = subprocess.run([exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, check=False)
    if done.returncode != 0:
        raise GraphError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
