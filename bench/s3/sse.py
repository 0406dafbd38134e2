#!/usr/bin/env python3
"""S3 server-side encryption bench: one large object PUT and GET whole on one Souverain,
into a plain bucket, an SSE-S3 bucket and an SSE-KMS bucket, MB/s each and the ratio
encrypted / plain (target >= 0.70).

The encrypted buckets get their mode as bucket default encryption (PutBucketEncryption),
so every PUT is the same presigned `curl -T` as the plain one and carries no extra header.
Rounds alternate the order of the buckets; each figure is the median. Starts and stops
its own server; the large file is the one `bench/s3/run` keeps (bench/.peers/s3-files/).

    bench/s3/sse.py [--mib 512] [--rounds 3] [--workers 1]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
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


def measure(target: Target, source: Path, rounds: int) -> dict[str, tuple[float, float]]:
    """Median (PUT MB/s, GET MB/s) per bucket."""
    size = source.stat().st_size
    puts: dict[str, list[float]] = {label: [] for label in BUCKETS}
    gets: dict[str, list[float]] = {label: [] for label in BUCKETS}
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
    return {
        label: (statistics.median(puts[label]), statistics.median(gets[label])) for label in BUCKETS
    }


def report(results: dict[str, tuple[float, float]], size: int, workers: int) -> list[str]:
    lines = [
        f"S3 SSE, one {size >> 20} MiB object, {workers} worker(s), MB/s (median)",
        f"{'bucket':<10}{'PUT':>10}{'GET':>10}{'PUT ratio':>12}{'GET ratio':>12}",
    ]
    plain_put, plain_get = results["plain"]
    short = []
    for label, (put, get) in results.items():
        ratios = (
            ("", "") if label == "plain" else (f"{put / plain_put:.2f}", f"{get / plain_get:.2f}")
        )
        lines.append(f"{label:<10}{put:>10.0f}{get:>10.0f}{ratios[0]:>12}{ratios[1]:>12}")
        if label != "plain" and min(put / plain_put, get / plain_get) < TARGET_RATIO:
            short.append(label)
    lines.append(
        f"target: encrypted / plain >= {TARGET_RATIO:.2f}"
        + (f"; below: {', '.join(short)}" if short else "; met")
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
