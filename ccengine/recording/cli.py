"""``ccengine recordings``: list, verify and export sealed recordings.

Verification exits non-zero on any error finding so that it can gate cron jobs and CI. Exports are
privileged (PCI DSS 10.2.1.1 and four-eyes come later); with ``--db-url`` each export is audited.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import os
import wave
from pathlib import Path
from typing import TYPE_CHECKING

import click
import numpy as np

from .keyring import FileKeyRing, KeyRingError
from .manifest import load_public_key
from .vault import Vault, VaultError

if TYPE_CHECKING:
    from ccengine.config import Settings


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
@click.option("--vault-dir", type=click.Path(path_type=Path), default=None, envvar="CCENGINE_VAULT_DIR",
              help="default: the engine settings' recording.vault_dir")
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
    "--db-url", default=None, envvar="CCENGINE_DB_URL",
    help="audit database for privileged actions (default: the engine's database)"
)
@click.pass_context
def recordings(ctx: click.Context, vault_dir: Path, keyring_dir: Path | None, signing_key: Path | None,
               public_key: Path | None, db_url: str | None) -> None:  # fmt: skip
    """Sealed call recordings."""
    engine_settings = getattr(ctx.obj, "settings", None)  # set when run as `ccengine recordings`
    if vault_dir is None:
        if engine_settings is None:
            raise click.UsageError("give --vault-dir (or run as `ccengine -c CONFIG recordings ...`)")
        vault_dir = engine_settings.recording.vault_dir
        db_url = db_url or engine_settings.database.url
    ctx.obj = {
        "settings": engine_settings,
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


@recordings.command("play")
@click.argument("recording_id")
@click.option("--to", "endpoint", required=True, help="the listener's phone as a dial string, e.g. PJSIP/agent5")
@click.option("--actor", default=None, help="who is listening (default: login name); audited")
@click.pass_context
def play_cmd(ctx: click.Context, recording_id: str, endpoint: str, actor: str | None) -> None:
    """Play a recording to a phone through the PBX, PCI-masked.

    No file leaves the server: the masked audio is decrypted into the engine's
    spool (mode 0600), played on a call to ENDPOINT and deleted when the call ends."""
    settings = ctx.obj["settings"]
    if settings is None:
        raise click.UsageError("play needs the engine settings: run as `ccengine -c CONFIG recordings play`")
    vault = _open_vault(ctx)
    actor = actor or getpass.getuser()
    spool = settings.paths.state_dir / "playback"
    spool.mkdir(parents=True, exist_ok=True)
    path = spool / f"{recording_id}-{os.getpid()}.wav"
    outcome, error = "success", ""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            vault.export(recording_id, out, masked=True)
        mix_down(path)  # telephone playback is mono: caller and agent together
        seconds = asyncio.run(play_to_phone(settings, endpoint, path))
    except Exception as exc:
        outcome, error = "failure", f"{type(exc).__name__}: {exc}"
        raise click.ClickException(f"playback failed: {error}") from exc
    finally:
        path.unlink(missing_ok=True)
        if ctx.obj["db_url"]:
            from ccengine.audit.chain import AuditTrail

            AuditTrail.from_url(ctx.obj["db_url"]).append(
                actor, "recording.playback", recording_id, source="cli", outcome=outcome,
                details={"to": endpoint, "error": error})
    click.echo(f"played {recording_id} to {endpoint} ({seconds:.1f} s on the line)")


def mix_down(path: Path) -> None:
    """Rewrite a two-channel 16-bit WAV as mono (the average of its channels), in place."""
    with wave.open(str(path)) as wav:
        params = wav.getparams()
        frames = wav.readframes(wav.getnframes())
    if params.nchannels == 1:
        return
    samples = np.frombuffer(frames, dtype="<i2").reshape(-1, params.nchannels).astype(np.int32)
    mono = samples.mean(axis=1).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(params.framerate)
        out.writeframes(mono.tobytes())


async def play_to_phone(settings: Settings, endpoint: str, path: Path, ring_timeout: int = 30) -> float:
    """Call ``endpoint`` and play ``path`` (Asterisk's Playback); returns the seconds the call lasted."""
    from ccengine.pbx.asterisk.ami import AmiClient

    ami = settings.pbx.ami
    client = AmiClient(ami.host, ami.port, ami.username, ami.secret, events="call")

    async def ignore(_up: bool, _reason: str) -> None:
        return None

    await asyncio.wait_for(client.start(ignore), 15)
    try:
        with wave.open(str(path)) as wav:
            length = wav.getnframes() / wav.getframerate()
        action_id = f"play-{os.getpid()}"
        await client.action({"Action": "Originate", "Channel": endpoint, "Application": "Playback",
                             "Data": str(path.with_suffix("")), "Timeout": str(ring_timeout * 1000),
                             "CallerID": "Recording playback <0>", "Async": "true", "ActionID": action_id})
        started = asyncio.get_running_loop().time()
        channel = ""
        deadline = started + ring_timeout + length + 15
        while (remaining := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                event = await asyncio.wait_for(client.queue.get(), remaining)
            except TimeoutError:
                break
            name = event.get("Event")
            if name == "OriginateResponse" and event.get("ActionID") == action_id:
                if event.get("Response") != "Success":
                    raise click.ClickException(f"{endpoint} did not answer ({event.get('Reason', '')})")
                channel = str(event.get("Channel", ""))
            elif name == "Hangup" and channel and event.get("Channel") == channel:
                return asyncio.get_running_loop().time() - started
        raise click.ClickException(f"playback to {endpoint} did not finish in time")
    finally:
        await client.close()
