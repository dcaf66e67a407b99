"""``ccengine queues ...``: commands for queue definitions.

``validate`` is meant for admins and CI: every issue on its own line as
``file:line:column: key: message`` (the format editors and CI annotators
parse), exit status 1 if there is any.
"""

from __future__ import annotations

from pathlib import Path

import click

from ccengine.acd.definitions import load_queue_config
from ccengine.yamlconf import ConfigError


@click.group("queues")
def queues() -> None:
    """Queue, skill and agent definitions for the ACD."""


@queues.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
def validate(files: tuple[Path, ...]) -> None:
    """Check FILE... (YAML files or folders of them, merged) and report every mistake."""
    try:
        config = load_queue_config(files)
    except ConfigError as exc:
        for issue in exc.issues:
            click.echo(str(issue))
        count = len(exc.issues)
        click.echo(f"{count} error{'s' if count != 1 else ''}", err=True)
        raise SystemExit(1) from None
    for queue_id in config.queues:
        if not config.qualified_agents(queue_id):
            click.echo(f"warning: no agent is qualified for queue '{queue_id}'", err=True)
    click.echo(
        f"ok: {len(config.skills)} skills, {len(config.queues)} queues, "
        f"{len(config.customer_rules)} customer rules, {len(config.agents)} agents, "
        f"{len(config.calendars)} calendars"
    )
