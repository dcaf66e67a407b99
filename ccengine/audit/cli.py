"""``ccengine audit``: verify the hash chain (or an export, offline) and export signed ranges."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import click

from ccengine.recording.manifest import load_or_create_signing_key, load_public_key

from .chain import AuditTrail, verify_export


def _parse_time(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise click.BadParameter(f"{value!r} has no timezone; add Z or +00:00")
    return parsed


@click.group("audit")
@click.option("--db-url", default=None, envvar="CCENGINE_DB_URL", help="SQLAlchemy URL of the audit database")
@click.pass_context
def audit(ctx: click.Context, db_url: str | None) -> None:
    """Tamper-evident audit trail."""
    ctx.obj = {"db_url": db_url}


def _trail(ctx: click.Context) -> AuditTrail:
    url = ctx.obj["db_url"]
    if not url:
        raise click.UsageError("--db-url is required")
    return AuditTrail.from_url(url, create=False)


@audit.command("verify")
@click.option(
    "--export",
    "export_file",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="verify an exported range offline instead of the database",
)
@click.option(
    "--public-key",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="pinned public key (PEM) the export must be signed with",
)
@click.pass_context
def verify_cmd(ctx: click.Context, export_file: Path | None, public_key: Path | None) -> None:
    """Verify the chain; the first finding is the first broken entry. Exit 1 on any error."""
    if export_file is not None:
        findings = verify_export(export_file, load_public_key(public_key) if public_key else None)
    else:
        findings = _trail(ctx).verify()
    for f in findings:
        click.echo(f"{f.severity.upper()}: {f} [{f.check}]")
    if any(f.severity == "error" for f in findings):
        raise SystemExit(1)
    click.echo("OK: audit " + ("export" if export_file else "chain") + " verified")


@audit.command("export")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True)
@click.option(
    "--signing-key",
    type=click.Path(path_type=Path),
    required=True,
    help="Ed25519 key (PKCS#8 PEM); created with its .pub if absent",
)
@click.option("--from-seq", type=int, default=None)
@click.option("--to-seq", type=int, default=None)
@click.option("--since", default=None, help="ISO-8601 time with zone; mapped to a seq range")
@click.option("--until", default=None, help="ISO-8601 time with zone; mapped to a seq range")
@click.pass_context
def export_cmd(
    ctx: click.Context,
    out_path: Path,
    signing_key: Path,
    from_seq: int | None,
    to_seq: int | None,
    since: str | None,
    until: str | None,
) -> None:
    """Write a signed, offline-verifiable range of the audit trail."""
    trail = _trail(ctx)
    if since or until:
        if from_seq is not None or to_seq is not None:
            raise click.UsageError("use either --from-seq/--to-seq or --since/--until")
        span = trail.seq_range_for_time(_parse_time(since), _parse_time(until))
        if span is None:
            raise click.ClickException("no audit entries in that time range")
        from_seq, to_seq = span
    doc = trail.export(out_path, load_or_create_signing_key(signing_key), from_seq, to_seq)
    click.echo(f"exported {doc['count']} entries ({doc['first_seq']}..{doc['last_seq']}) to {out_path}, "
               f"signed by {doc['signer']}")  # fmt: skip
