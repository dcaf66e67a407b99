"""Vault: seal/verify round trip, named tamper findings, crypto-shred, no plaintext keys on disk."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import stat
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from ccengine.recording import streamcrypt as sc
from ccengine.recording.keyring import FileKeyRing, StaticKeyWrapper
from ccengine.recording.manifest import Finding, MaskWindow, Segment
from ccengine.recording.vault import DATA_FILE, MANIFEST_FILE, ManifestFields, Vault

CHUNK = 4096
RATE = 8000


def make_wav(path: Path, seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = rng.integers(-20000, 20000, size=(int(seconds * RATE), 2), dtype=np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(frames.tobytes())
    return frames


def fields(rid: str, **kw: object) -> ManifestFields:
    end = datetime(2025, 3, 1, 10, 5, tzinfo=UTC)
    start = end - timedelta(minutes=5)
    return ManifestFields(
        recording_id=rid,
        call_ids=[f"call-{rid}"],
        started_at=start,
        ended_at=end,
        segments=[Segment(0, start, end)],
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture()
def vault(tmp_path: Path) -> Vault:
    ring = FileKeyRing(tmp_path / "kek")
    return Vault(tmp_path / "vault", ring, signing_key=tmp_path / "sign" / "manifest.key", chunk_size=CHUNK)


def seal(vault: Vault, tmp_path: Path, rid: str, seconds: float = 1.0, seed: int = 0, **kw: object) -> bytes:
    src = tmp_path / f"{rid}.wav"
    make_wav(src, seconds, seed)
    original = src.read_bytes()
    vault.seal(src, fields(rid, **kw))
    assert not src.exists(), "plaintext must be removed after sealing"
    return original


def errors(findings: list[Finding]) -> list[str]:
    return [str(f) for f in findings if f.severity == "error"]


def test_seal_open_verify_round_trip(vault: Vault, tmp_path: Path) -> None:
    original = seal(vault, tmp_path, "rec-1")
    seal(vault, tmp_path, "rec-2", seed=1)
    assert vault.verify() == []
    with vault.open("rec-1") as reader:
        assert reader.read() == original
    [a, b] = vault.recordings()
    assert (a.manifest.recording_id, b.manifest.recording_id, b.chain_seq) == ("rec-1", "rec-2", 2)
    assert a.manifest.plaintext_bytes == len(original)
    assert a.manifest.key_id == vault.keyring.current_key_id()  # type: ignore[union-attr]
    data = vault.recordings_dir / "rec-1" / DATA_FILE
    assert a.manifest.ciphertext_bytes == data.stat().st_size


def test_refuses_to_overwrite(vault: Vault, tmp_path: Path) -> None:
    seal(vault, tmp_path, "rec-1")
    src = tmp_path / "again.wav"
    make_wav(src, 0.1, 3)
    with pytest.raises(Exception, match="already exists"):
        vault.seal(src, fields("rec-1"))
    assert src.exists() and vault.verify() == []


def test_flipped_byte_names_recording_and_chunk(vault: Vault, tmp_path: Path) -> None:
    seal(vault, tmp_path, "rec-1", seconds=2)
    seal(vault, tmp_path, "rec-2", seed=1)
    data = vault.recordings_dir / "rec-1" / DATA_FILE
    blob = bytearray(data.read_bytes())
    header = sc.read_header(io.BytesIO(bytes(blob)))
    blob[len(header.raw) + 3 * (CHUNK + 16) + 100] ^= 0x40
    data.write_bytes(bytes(blob))
    assert errors(vault.verify()) == [
        "recording rec-1: ciphertext sha256 mismatch",
        "recording rec-1: chunk 3 authentication failed",
    ]
    assert vault.verify("rec-2") == []


def test_truncated_ciphertext_named(vault: Vault, tmp_path: Path) -> None:
    seal(vault, tmp_path, "rec-1")
    data = vault.recordings_dir / "rec-1" / DATA_FILE
    data.write_bytes(data.read_bytes()[:-1000])
    found = vault.verify("rec-1")
    assert {f.check for f in found} == {"ciphertext-size", "ciphertext-sha256", "truncation"}


def test_swapped_manifests_named(vault: Vault, tmp_path: Path) -> None:
    seal(vault, tmp_path, "rec-1")
    seal(vault, tmp_path, "rec-2", seed=1)
    m1, m2 = (vault.recordings_dir / r / MANIFEST_FILE for r in ("rec-1", "rec-2"))
    b1, b2 = m1.read_bytes(), m2.read_bytes()
    m1.write_bytes(b2)
    m2.write_bytes(b1)
    found = errors(vault.verify())
    assert "recording rec-1: manifest file names recording rec-2 (manifests swapped or misplaced)" in found
    assert "recording rec-2: manifest file names recording rec-1 (manifests swapped or misplaced)" in found
    assert "recording rec-1: manifest differs from chain entry 1" in found
    assert not any("sha256" in f for f in found), "content is checked against the chain's manifest"


def test_swapped_ciphertexts_named(vault: Vault, tmp_path: Path) -> None:
    seal(vault, tmp_path, "rec-1")
    seal(vault, tmp_path, "rec-2", seed=1)
    d1, d2 = (vault.recordings_dir / r / DATA_FILE for r in ("rec-1", "rec-2"))
    tmp = d1.read_bytes()
    d1.write_bytes(d2.read_bytes())
    d2.write_bytes(tmp)
    found = vault.verify("rec-1")
    assert [f.check for f in found] == ["ciphertext-sha256", "key-unwrap"]
    assert "rec-2" in str(found[1])


def test_edited_manifest_signature_invalid(vault: Vault, tmp_path: Path) -> None:
    seal(vault, tmp_path, "rec-1")
    path = vault.recordings_dir / "rec-1" / MANIFEST_FILE
    doc = json.loads(path.read_bytes())
    doc["manifest"]["call_ids"] = ["someone-else"]
    path.write_text(json.dumps(doc))
    found = errors(vault.verify("rec-1"))
    assert found[0] == "manifest rec-1: signature invalid"
    assert "recording rec-1: manifest differs from chain entry 1" in found


def test_chain_tampering_named(vault: Vault, tmp_path: Path) -> None:
    for i in range(4):
        seal(vault, tmp_path, f"rec-{i}", seconds=0.2, seed=i)
    lines = vault.chain.path.read_bytes().splitlines(keepends=True)
    lines[1], lines[2] = lines[2], lines[1]
    vault.chain.path.write_bytes(b"".join(lines))
    found = errors(vault.chain.verify(vault.public_key))
    assert found[0] == "chain entry 2: seq is 3, expected 2 (entries missing, inserted or reordered)"
    assert "chain entry 2: prev-hash mismatch (previous entry removed, edited or reordered)" in found
    lines[1], lines[2] = lines[2], lines[1]
    vault.chain.path.write_bytes(b"".join(lines[:-1]))
    found = errors(vault.chain.verify(vault.public_key))
    assert found == ["chain head: log has 3 entries but the signed head says 4 (chain truncated)"]


def test_crypto_shred_makes_recording_undecryptable(vault: Vault, tmp_path: Path) -> None:
    seal(vault, tmp_path, "rec-1")
    seal(vault, tmp_path, "rec-2", seed=1)
    data = vault.recordings_dir / "rec-1" / DATA_FILE
    before = data.read_bytes()
    vault.shred("rec-1", reason="retention expired")
    assert data.read_bytes() == before, "ciphertext may remain"
    with pytest.raises(Exception, match="destroyed"), vault.open("rec-1") as r:
        r.read()
    found = vault.verify()
    assert errors(found) == []
    assert [(f.subject, f.check) for f in found] == [("recording rec-1", "shredded")]
    with vault.open("rec-2") as r:
        assert r.read()
    # Even with every KEK and the ciphertext, no remaining key unwraps rec-1's header.
    header = sc.read_header(io.BytesIO(before))
    for kek in vault.keyring.key_ids():  # type: ignore[union-attr]
        key = (tmp_path / "kek" / f"{kek}.kek").read_bytes()
        with pytest.raises(sc.KeyUnwrapError):
            sc.unwrap_data_key(header, StaticKeyWrapper(header.key_id, key))


def test_no_plaintext_data_key_on_disk(vault: Vault, tmp_path: Path) -> None:
    secrets: list[bytes] = []
    for i in range(3):
        seal(vault, tmp_path, f"rec-{i}", seconds=0.3, seed=i)
        rk = vault.keystore.load(f"rec-{i}")
        blob = (vault.recordings_dir / f"rec-{i}" / DATA_FILE).read_bytes()
        dek = sc.unwrap_data_key(sc.read_header(io.BytesIO(blob)), StaticKeyWrapper(f"rec-{i}", rk))
        secrets += [rk, dek]
    needles = [s for k in secrets for s in (k, k.hex().encode(), base64.b64encode(k))]
    scanned = 0
    for path in (tmp_path / "vault").rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            scanned += 1
            assert not any(n in content for n in needles), f"plaintext key material in {path}"
    assert scanned >= 3 * 3
    key_files = list((tmp_path / "vault" / "keystore").glob("*.key")) + list((tmp_path / "kek").glob("*.kek"))
    assert key_files and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in key_files)


def test_kek_rotation_old_recordings_still_open(vault: Vault, tmp_path: Path) -> None:
    seal(vault, tmp_path, "old")
    ring = vault.keyring
    assert ring is not None
    old_kek = ring.current_key_id()
    new_kek = vault.rotate_kek(rewrap=False)
    seal(vault, tmp_path, "new", seed=1)
    assert vault.keystore.wrapped("old").key_id == old_kek
    assert vault.keystore.wrapped("new").key_id == new_kek
    assert vault.verify() == []
    ciphertext = (vault.recordings_dir / "old" / DATA_FILE).read_bytes()
    assert vault.keystore.rewrap_all() == 1
    assert vault.keystore.wrapped("old").key_id == new_kek
    ring.destroy(old_kek)
    assert (vault.recordings_dir / "old" / DATA_FILE).read_bytes() == ciphertext, "rewrap leaves ciphertext"
    assert vault.verify() == []


def test_destroying_kek_without_rewrap_shreds_its_recordings(vault: Vault, tmp_path: Path) -> None:
    seal(vault, tmp_path, "old")
    ring = vault.keyring
    assert ring is not None
    old_kek = ring.current_key_id()
    ring.rotate()
    ring.destroy(old_kek)
    assert [f.check for f in vault.verify("old")] == ["key-unwrap"]


def test_seal_applies_mask_windows_and_export(vault: Vault, tmp_path: Path) -> None:
    src = tmp_path / "pay.wav"
    frames = make_wav(src, 3.0, 7)
    window = MaskWindow.from_seconds(1.0, 2.0, "card-capture")
    vault.seal(src, fields("pay", mask_windows=[window]))
    [item] = vault.recordings()
    assert item.manifest.mask_windows == (window,)
    out = io.BytesIO()
    vault.export("pay", out, masked=False)
    out.seek(0)
    with wave.open(out) as w:
        got = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert got.shape == frames.shape
    assert not got[RATE : 2 * RATE].any()
    assert np.array_equal(got[: RATE - 1], frames[: RATE - 1])
    assert np.array_equal(got[2 * RATE + 1 :], frames[2 * RATE + 1 :])


def test_failed_seal_leaves_plaintext_and_no_residue(vault: Vault, tmp_path: Path) -> None:
    src = tmp_path / "bad.wav"
    src.write_bytes(b"not a wav" * 100)
    with pytest.raises(ValueError):
        vault.seal(src, fields("bad", mask_windows=[MaskWindow(0, 10, "x")]))
    assert src.exists()
    assert not (vault.recordings_dir / "bad").exists()
    assert vault.keystore.status("bad") == "missing"
    assert vault.verify() == []


def test_recording_dir_outside_chain_reported(vault: Vault, tmp_path: Path) -> None:
    seal(vault, tmp_path, "rec-1")
    shutil.copytree(vault.recordings_dir / "rec-1", vault.recordings_dir / "rec-x")
    found = errors(vault.verify())
    assert "recording rec-x: not in the manifest chain" in found
    assert "recording rec-x: manifest file names recording rec-1 (manifests swapped or misplaced)" in found


def test_insecure_key_dir_refused(tmp_path: Path) -> None:
    ring_dir = tmp_path / "kek"
    FileKeyRing(ring_dir)
    os.chmod(ring_dir, 0o755)
    with pytest.raises(Exception, match="chmod 700"):
        FileKeyRing(ring_dir)


def test_recordings_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ccengine.audit.chain import AuditTrail
    from ccengine.recording.cli import recordings

    vdir = tmp_path / "v"
    v = Vault(vdir, chunk_size=CHUNK)
    src = tmp_path / "a.wav"
    frames = make_wav(src, 2.0, 5)
    v.seal(src, fields("rec-a", mask_windows=[MaskWindow(500, 1000, "card-capture")]))
    seal(v, tmp_path, "rec-b", seed=6)
    base = ["--vault-dir", str(vdir)]
    runner = CliRunner()

    result = runner.invoke(recordings, [*base, "list"])
    assert result.exit_code == 0, result.output
    assert [line.split()[1] for line in result.output.splitlines()] == ["rec-a", "rec-b"]
    assert "masks=1" in result.output and "key=present" in result.output

    assert runner.invoke(recordings, [*base, "verify", "--all"]).exit_code == 0
    assert runner.invoke(recordings, [*base, "verify"]).exit_code == 2

    db = f"sqlite:///{tmp_path / 'audit.db'}"
    out = tmp_path / "out.wav"
    args = ["--db-url", db, "export", "rec-a", "--masked", "--out", str(out), "--actor", "supervisor1"]
    result = runner.invoke(recordings, [*base, *args])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    with wave.open(str(out)) as w:
        got = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).reshape(-1, 2)
    assert not got[4000:8000].any() and np.array_equal(got[8001:], frames[8001:])
    [entry] = AuditTrail.from_url(db).entries()
    assert (entry.actor, entry.action, entry.target, entry.outcome) == ("supervisor1", "recording.export",
                                                                        "rec-a", "success")  # fmt: skip
    assert runner.invoke(recordings, [*base, "export", "rec-a", "--out", str(out)]).exit_code == 1, (
        "no overwrite"
    )

    data = vdir / "recordings" / "rec-b" / DATA_FILE
    blob = bytearray(data.read_bytes())
    blob[-5] ^= 1
    data.write_bytes(bytes(blob))
    result = runner.invoke(recordings, [*base, "verify", "rec-b"])
    assert result.exit_code == 1
    assert "ERROR: recording rec-b: ciphertext sha256 mismatch [ciphertext-sha256]" in result.output
    assert "authentication failed [chunk-auth]" in result.output
