#!/usr/bin/env python3
"""S3 server-side encryption bench: one large object PUT and GET whole on one Souverain,
into a plain bucket, an SSE-S3 bucket and an SSE-KMS bucket, MB/s each and the ratio
encrypted / plain (target >= 0.70).

The encrypted buckets get their mode as bucket default encryption (PutBucketEncryption),
so every PUT is the same presigned `curl -T` as the plain one and carries no extra header.
Rounds alternate the order of the buckets; each figure is the median. Starts and stops
its own server; the large file is the one `bench/s3/run` keeps (bench/.peers/s3-files/).

GET is measured twice: from the page cache (the object just written), and from the disk
(the server's blob files dropped from the page cache first, with posix_fadvise, nothing
else on the host touched). The first is bound by one core: a plain GET copies cached pages
to a loopback socket at memory speed, and opening AES-GCM on the same core costs as much
again. The second is the I/O bound the target assumes.

    bench/s3/sse.py [--mib 512] [--rounds 3] [--workers 1]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import shutil
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.append(str(HERE.parent / "identity"))

import large  # noqa: E402
import s3_requests  # noqa: E402
import souverain_s3  # noqa: E402
from target import Target  # noqa: E402

PEERS = HERE.parent / ".peers"
STATE = PEERS / "s3-sse-run"
KEEP_DIR = PEERS / "s3-files"
REGION = "fr-1"
TARGET_RATIO = 0.70
BUCKETS = {"plain": "", "SSE-S3": "AES256", "SSE-KMS": "aws:kms"}


def encryption_document(algorithm: str) -> bytes:
    return (
        '<ServerSideEncryptionConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        f"<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>{algorithm}</SSEAlgorithm>"
        "</ApplyServerSideEncryptionByDefault></Rule></ServerSideEncryptionConfiguration>"
    ).encode()


def set_default_encryption(target: Target, bucket: str, algorithm: str) -> None:
    document = encryption_document(algorithm)
    md5 = base64.b64encode(hashlib.md5(document).digest()).decode()
    connection = s3_requests.connect(target)
    path = target.presigner().url_path("PUT", f"/{bucket}", {"encryption": ""})
    connection.request("PUT", path, body=document, headers={"Content-MD5": md5})
    response = connection.getresponse()
    text = response.read()
    connection.close()
    if response.status != 200:
        raise s3_requests.CheckFailed(f"PutBucketEncryption {bucket}: {response.status} {text!r}")


def bucket_name(label: str) -> str:
    return "sse-bench-" + label.lower().replace("-", "")


def drop_from_page_cache(root: Path) -> None:
    """The files under `root` (the server's blobs) read from the disk again next time."""
    for path in root.rglob("*"):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def measure(target: Target, source: Path, rounds: int) -> dict[str, tuple[float, float, float]]:
    """Median (PUT, GET from the page cache, GET from the disk) MB/s per bucket."""
    size = source.stat().st_size
    puts: dict[str, list[float]] = {label: [] for label in BUCKETS}
    gets: dict[str, list[float]] = {label: [] for label in BUCKETS}
    colds: dict[str, list[float]] = {label: [] for label in BUCKETS}
    for round_ in range(rounds):
        order = list(BUCKETS) if round_ % 2 == 0 else list(reversed(BUCKETS))
        for label in order:
            signer = target.presigner()
            path = f"/{bucket_name(label)}/large.bin"
            print(f"  {label:<8} PUT + GET {size >> 20} MiB (round {round_ + 1}) ...", flush=True)
            seconds, _etag = large.put(signer.url("PUT", path), source)
            puts[label].append(size / seconds / 1e6)
            target.wait_idle()
            gets[label].append(size / large.get(signer.url("GET", path), size) / 1e6)
            target.wait_idle()
            drop_from_page_cache(STATE / "data" / "objects")
            colds[label].append(size / large.get(signer.url("GET", path), size) / 1e6)
            target.wait_idle()
    return {
        label: tuple(statistics.median(runs[label]) for runs in (puts, gets, colds))  # type: ignore[misc]
        for label in BUCKETS
    }


def report(results: dict[str, tuple[float, float, float]], size: int, workers: int) -> list[str]:
    lines = [
        f"S3 SSE, one {size >> 20} MiB object, {workers} worker(s), MB/s (median)",
        f"{'bucket':<10}{'PUT':>8}{'GET cached':>12}{'GET disk':>10}"
        f"{'PUT ratio':>11}{'cached ratio':>14}{'disk ratio':>12}",
    ]
    plain = results["plain"]
    short, cached_short = [], []
    for label, figures in results.items():
        ratios = [f / p for f, p in zip(figures, plain, strict=True)]
        shown = ["", "", ""] if label == "plain" else [f"{r:.2f}" for r in ratios]
        lines.append(
            f"{label:<10}{figures[0]:>8.0f}{figures[1]:>12.0f}{figures[2]:>10.0f}"
            f"{shown[0]:>11}{shown[1]:>14}{shown[2]:>12}"
        )
        if label != "plain" and min(ratios[0], ratios[2]) < TARGET_RATIO:
            short.append(label)
        if label != "plain" and ratios[1] < TARGET_RATIO:
            cached_short.append(label)
    lines.append(
        f"target: encrypted / plain >= {TARGET_RATIO:.2f} for PUT and for GET from the disk"
        + (f"; below: {', '.join(short)}" if short else "; met")
    )
    if cached_short:
        lines.append(
            f"GET from the page cache below {TARGET_RATIO:.2f} ({', '.join(cached_short)}): "
            "one core both opens AES-GCM and copies to the socket (see the docstring)"
        )
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=512, help="object size (MiB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--souverain-bin", type=Path, default=souverain_s3.DEFAULT_BIN)
    args = parser.parse_args()
    source = KEEP_DIR / f"large-{args.mib}MiB.bin"
    large.ensure_file(source, args.mib << 20)
    target = souverain_s3.start(args.souverain_bin, STATE, args.workers, REGION)
    try:
        for label, algorithm in BUCKETS.items():
            s3_requests.create_bucket(target, bucket_name(label))
            if algorithm:
                set_default_encryption(target, bucket_name(label), algorithm)
        results = measure(target, source, args.rounds)
    finally:
        target.stop()
        shutil.rmtree(STATE / "data", ignore_errors=True)
    print("\n".join(report(results, args.mib << 20, args.workers)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
