"""Vault sealing throughput vs raw AES-256-GCM in the same run, and recordings sealed per second.

    .venv/bin/python bench/vault.py [--mib 64] [--chunk-sizes 65536,262144,1048576] [--dir DIR]

Baselines (best of --reps, same random bytes):
  raw-oneshot  AESGCM.encrypt over the whole buffer in one call (what "encrypt the file" costs
               naively, including the output allocation)
  raw-chunked  a bare loop of AESGCM.encrypt over chunk-size slices (no header, no I/O, no hashes):
               the ceiling for any chunked format
Measured:
  stream       streamcrypt.encrypt_stream, memory to memory: the format's own overhead
  seal         Vault.seal, file to file: encrypt + SHA-256 of plaintext and ciphertext + fsync +
               Ed25519 signature + chain append + plaintext removal
The vault defaults to a tmpfs directory so that the figure is CPU cost, not disk speed.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ccengine.recording import streamcrypt
from ccengine.recording.keyring import FileKeyRing, StaticKeyWrapper
from ccengine.recording.vault import ManifestFields, Vault

MIB = 1 << 20


class NullSink(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, b: object) -> int:
        return len(b)  # type: ignore[arg-type]


def best(reps: int, fn: Callable[[], None], setup: Callable[[], None] | None = None) -> float:
    times = []
    for _ in range(reps):
        if setup:
            setup()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mib", type=int, default=64)
    ap.add_argument("--chunk-sizes", default=f"{64 * 1024},{256 * 1024},{1024 * 1024}")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--recordings", type=int, default=20, help="5-minute WAVs to seal for the rate test")
    ap.add_argument("--dir", type=Path, default=Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    args = ap.parse_args()

    size = args.mib * MIB
    data = os.urandom(size)
    mb = size / 1e6
    aead = AESGCM(AESGCM.generate_key(bit_length=256))
    nonce = os.urandom(12)
    print(f"data: {args.mib} MiB random, cpus={os.cpu_count()}, load avg {os.getloadavg()[0]:.2f}, "
          f"vault dir: {args.dir or tempfile.gettempdir()}")  # fmt: skip

    t_one = best(args.reps, lambda: aead.encrypt(nonce, data, None) and None)
    print(f"raw-oneshot AES-256-GCM          {mb / t_one:8.0f} MB/s")

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = Path(tmp)
        ring = FileKeyRing(root / "kek")
        wrapper = StaticKeyWrapper("bench", os.urandom(32))
        src = root / "plain.bin"
        for cs in (int(x) for x in args.chunk_sizes.split(",")):
            view = memoryview(data)

            def raw_chunked(cs: int = cs, view: memoryview = view) -> None:
                for i in range(0, size, cs):
                    aead.encrypt(nonce, view[i : i + cs], b"")

            t_chunk = best(args.reps, raw_chunked)
            t_stream = best(
                args.reps,
                lambda cs=cs: (
                    streamcrypt.encrypt_stream(  # type: ignore[misc]
                        io.BytesIO(data), NullSink(), wrapper, length=size, chunk_size=cs
                    )
                    and None
                ),
            )
            vault = Vault(root / f"vault-{cs}", ring, chunk_size=cs)
            counter = iter(range(10**6))
            now = datetime.now(UTC)

            def seal(vault: Vault = vault, counter: Iterator[int] = counter, now: datetime = now) -> None:
                rid = f"r{next(counter)}"
                vault.seal(src, ManifestFields(rid, ["c"], now - timedelta(minutes=5), now))

            t_seal = best(args.reps, seal, setup=lambda: src.write_bytes(data))
            ref = min(t_one, t_chunk)
            print(f"\nchunk {cs // 1024:>5} KiB")
            print(f"  raw-chunked AES-256-GCM        {mb / t_chunk:8.0f} MB/s")
            print(
                f"  stream encrypt (mem->mem)      {mb / t_stream:8.0f} MB/s  "
                f"ratio vs raw-oneshot {t_one / t_stream:5.2f}x  vs raw-chunked {t_chunk / t_stream:5.2f}x"
            )
            print(f"  seal (file->file, 2x sha256)   {mb / t_seal:8.0f} MB/s  "
                  f"ratio vs raw-oneshot {t_one / t_seal:5.2f}x  vs raw-chunked {t_chunk / t_seal:5.2f}x  "
                  f"(vs faster raw: {ref / t_seal:4.2f}x)")  # fmt: skip

        # Recordings per second: 5 minutes of 8 kHz, 16-bit stereo = 9.6 MB each.
        wav_bytes = 300 * 8000 * 2 * 2
        payload = os.urandom(wav_bytes)
        vault = Vault(root / "vault-rate", ring)
        paths = [root / f"call{i}.wav" for i in range(args.recordings)]
        for p in paths:
            p.write_bytes(payload)
        now = datetime.now(UTC)
        t = time.perf_counter()
        for i, p in enumerate(paths):
            vault.seal(p, ManifestFields(f"call{i}", [f"c{i}"], now - timedelta(minutes=5), now))
        elapsed = time.perf_counter() - t
        print(f"\nrecordings: {args.recordings} x {wav_bytes / 1e6:.1f} MB (5 min 8 kHz stereo), chunk "
              f"{vault.chunk_size // 1024} KiB: {args.recordings / elapsed:.1f} sealed/s "
              f"({args.recordings * wav_bytes / 1e6 / elapsed:.0f} MB/s)")  # fmt: skip
        t = time.perf_counter()
        findings = vault.verify()
        print(f"verify --all of those: {time.perf_counter() - t:.2f} s, findings: {len(findings)}")


if __name__ == "__main__":
    main()
