"""``ccengine ivr ...``: validate and draw IVR trees, run the sample directory, show statistics.

``validate`` prints every issue as ``file:line:column: key: message`` and exits 1 if there
is any (the format editors and CI annotators parse).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import click

from ..yamlconf import ConfigError
from .model import Tree, load_tree


def _acd_ids(queues: Path | None, config_path: Path | None) -> tuple[set[str] | None, set[str] | None]:
    """Queue and skill ids the ACD knows: from --queues, else from the engine settings if they load."""
    from ..acd.definitions import load_queue_config

    if queues is None:
        from ..config import load_settings

        try:
            queues = load_settings(config_path).acd.queues
        except (ConfigError, OSError):
            return None, None
    config = load_queue_config(queues)
    return set(config.queues), set(config.skills)


def _load(file: Path, queues: Path | None, config_path: Path | None) -> Tree:
    try:
        return load_tree(file, *_acd_ids(queues, config_path))
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue))
        count = len(exc.issues)
        click.echo(f"{count} error{'s' if count != 1 else ''}", err=True)
        raise SystemExit(1) from None


def _config_path(ctx: click.Context) -> Path | None:
    root = ctx.find_root().obj
    path: Path | None = getattr(root, "config_path", None)
    return path


@click.group("ivr")
def ivr() -> None:
    """IVR trees (config/ivr/*.yaml)."""


QUEUES = click.option("--queues", type=click.Path(path_type=Path, exists=True),
                      help="queue definitions (queues, skills) to check routes against (default: acd.queues)")


@ivr.command("validate")
@click.argument("file", type=click.Path(path_type=Path))
@QUEUES
@click.pass_context
def validate(ctx: click.Context, file: Path, queues: Path | None) -> None:
    """Check FILE: node shapes, missing targets, unreachable nodes, loops without exit, unknown queues/skills."""
    tree = _load(file, queues, _config_path(ctx))
    click.echo(f"ok: tree {tree.id} version {tree.version}, {len(tree.nodes)} nodes")


@ivr.command("graph")
@click.argument("file", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(path_type=Path), help="output file (default FILE.svg)")
@click.option("-T", "--format", "fmt", type=click.Choice(["svg", "png", "dot"]), default=None,
              help="default: from the output's extension, else svg")
@click.option("--with-stats", is_flag=True, help="label nodes and edges with the last day's statistics "
                                                "for this tree version (from the engine's database)")
@QUEUES
@click.pass_context
def graph(ctx: click.Context, file: Path, output: Path | None, fmt: str | None, queues: Path | None,
          with_stats: bool) -> None:
    """Render FILE as a Graphviz drawing (SVG or PNG)."""
    from .graph import GraphError, render, to_dot

    tree = _load(file, queues, _config_path(ctx))
    entries: dict[str, int] | None = None
    exits: dict[tuple[str, str], int] | None = None
    if with_stats:
        from datetime import UTC, datetime, timedelta

        from ..config import load_settings
        from ..store.database import make_engine
        from .stats import from_store

        db = make_engine(load_settings(_config_path(ctx)).database.url)
        try:
            found = from_store(db, datetime.now(UTC) - timedelta(days=1)).get((tree.id, tree.version))
        finally:
            db.dispose()
        entries, exits = {}, {}
        for node in (found.nodes.values() if found else []):
            entries[node.node] = node.entries
            for name, count in node.exits.items():
                exits[(node.node, "fallback" if name == "timeout" else name)] = count
    if fmt is None:
        fmt = output.suffix.lstrip(".") if output is not None and output.suffix in (".svg", ".png", ".dot") else "svg"
    output = output or file.with_suffix(f".{fmt}")
    try:
        data = render(to_dot(tree, entries, exits), fmt)
    except GraphError as exc:
        raise click.ClickException(str(exc)) from None
    output.write_bytes(data)
    click.echo(f"wrote {output} ({len(data)} bytes)")


@ivr.command("directory")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8099, show_default=True, type=int)
def directory(host: str, port: int) -> None:
    """Serve the bundled sample customer directory (for the lab and tests)."""
    import asyncio

    from .sample_directory import start

    async def serve() -> None:
        runner, url, _ = await start(host, port)
        click.echo(f"sample directory on {url}")
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


@ivr.command("stats")
@click.option("--hours", default=24.0, show_default=True, help="look back this many hours")
@click.pass_context
def stats(ctx: click.Context, hours: float) -> None:
    """Per-node statistics (entries, exits by branch, drop-offs) and containment, per tree version."""
    from datetime import UTC, datetime, timedelta

    from ..config import load_settings
    from ..store.database import make_engine
    from .stats import format_stats, from_store

    try:
        settings = load_settings(_config_path(ctx))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    db = make_engine(settings.database.url)
    try:
        found = from_store(db, datetime.now(UTC) - timedelta(hours=hours))
    finally:
        db.dispose()
    if not found:
        click.echo("no IVR calls in that period")
    for tree_stats in found.values():
        click.echo(format_stats(tree_stats))
