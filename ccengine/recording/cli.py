"""``ccengine recordings``: list, verify and export sealed recordings.

Verification exits non-zero on any error finding so that it can gate cron jobs and CI. Exports are
privileged (PCI DSS 10.2.1.1 and four-eyes come later); with ``--db-url`` each export is audited.
"""

from __future__ import annotations

import getpass
import json
import os
from pathlib import Path

import click

from .keyring import FileKeyRing, KeyRingError
from .manifest import load_public_key
from .vault import Vault, VaultError


def _open_vault(ctx: click.Context) -> Vault:
    o = ctx.obj
    keyring_dir: Path | None = o["keyring_dir"]
    try:
        keyring = FileKeyRing(keyring_dir, create=False) if keyring_dir else None
        return Vault(
            o["vault_dir"],
            keyring,
            signing_key=o["signing_key"],
            public_key=load_public_key(o["public_key"]) if o["public_key"] else None,
            create=False,
        )
    except (VaultError, KeyRingError, OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc


@click.group("recordings")
@click.option("--vault-dir", type=click.Path(path_type=Path), required=True, envvar="CCENGINE_VAULT_DIR")
@click.option(
    "--keyring-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="KEK directory (default: <vault-dir>/keyring)",
)
@click.option(
    "--signing-key",
    type=click.Path(path_type=Path),
    default=None,
    help="Ed25519 manifest signing key (default: <vault-dir>/signing.key)",
)
@click.option(
    "--public-key",
    type=click.Path(path_type=Path, exists=True),
    default=None,
    help="pinned manifest public key (PEM) to verify against",
)
@click.option(
    "--db-url", default=None, envvar="CCENGINE_DB_URL", help="audit database for privileged actions"
)
@click.pass_context
def recordings(ctx: click.Context, vault_dir: Path, keyring_dir: Path | None, signing_key: Path | None,
               public_key: Path | None, db_url: str | None) -> None:  # fmt: skip
    """Sealed call recordings."""
    ctx.obj = {
        "vault_dir": vault_dir,
        "keyring_dir": keyring_dir,
        "signing_key": signing_key,
        "public_key": public_key,
        "db_url": db_url,
    }


@recordings.command("list")
@click.option("--json", "as_json", is_flag=True, help="one JSON object per line")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List sealed recordings (from the manifest chain)."""
    for item in _open_vault(ctx).recordings():
        m = item.manifest
        if as_json:
            click.echo(
                json.dumps({"seq": item.chain_seq, "key": item.key_status, **m.to_json()}, sort_keys=True)
            )
        else:
            click.echo(
                f"{item.chain_seq:>6}  {m.recording_id}  {m.started_at:%Y-%m-%dT%H:%M:%SZ}  "
                f"{m.duration_s:>8.1f}s  {m.plaintext_bytes:>11}B  masks={len(m.mask_windows)}  "
                f"key={item.key_status}  calls={','.join(m.call_ids)}"
            )


@recordings.command("verify")
@click.argument("recording_id", required=False)
@click.option("--all", "check_all", is_flag=True, help="verify the chain and every recording")
@click.pass_context
def verify_cmd(ctx: click.Context, recording_id: str | None, check_all: bool) -> None:
    """Verify one recording, or everything with --all; names each failed check."""
    if bool(recording_id) == check_all:
        raise click.UsageError("give a RECORDING_ID or --all")
    vault = _open_vault(ctx)
    try:
        findings = vault.verify(None if check_all else recording_id)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    errors = [f for f in findings if f.severity == "error"]
    for f in findings:
        click.echo(f"{f.severity.upper()}: {f} [{f.check}]")
    if errors:
        raise SystemExit(1)
    click.echo(
        "OK: "
        + ("all recordings and the manifest chain verified" if check_all else f"{recording_id} verified")
    )


@recordings.command("export")
@click.argument("recording_id")
@click.option("--out", "out_path", type=click.Path(path_type=Path), required=True)
@click.option(
    "--masked/--unmasked", default=True, show_default=True, help="re-apply the manifest's PCI mask windows"
)
@click.option("--actor", default=None, help="who is exporting (default: login name); audited")
@click.pass_context
def export_cmd(
    ctx: click.Context, recording_id: str, out_path: Path, masked: bool, actor: str | None
) -> None:
    """Decrypt a recording to a WAV file (mode 0600, never overwrites)."""
    vault = _open_vault(ctx)
    actor = actor or getpass.getuser()
    trail = None
    if ctx.obj["db_url"]:
        from ccengine.audit.chain import AuditTrail

        trail = AuditTrail.from_url(ctx.obj["db_url"])
    outcome, error = "success", ""
    try:
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                vault.export(recording_id, out, masked=masked)
        except BaseException:
            out_path.unlink(missing_ok=True)
            raise
    except Exception as exc:
        outcome, error = "failure", f"{type(exc).__name__}: {exc}"
        raise click.ClickException(f"export failed: {error}") from exc
    finally:
        if trail is not None:
            trail.append(actor, "recording.export", recording_id, source="cli", outcome=outcome,
                         details={"masked": masked, "out": str(out_path), "error": error})  # fmt: skip
    click.echo(f"exported {recording_id} to {out_path}{' (masked)' if masked else ''}")
