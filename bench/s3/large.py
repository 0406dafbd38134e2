"""One large object, PUT and GET whole with curl: a single request each, body streamed.

The same file (random bytes, made once and kept) goes to every server; the
upload is one PUT to a presigned URL (nginx: a plain WebDAV PUT), the
download goes to /dev/null. curl reports the time and the byte count; a wrong
status or a short transfer is an error, not a slow result.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

_CHUNK = 8 << 20


def ensure_file(path: Path, size: int) -> str:
    """A file of `size` random bytes at `path` (kept between runs); returns its MD5 hex."""
    digest_path = path.with_name(path.name + ".md5")
    if path.exists() and path.stat().st_size == size and digest_path.exists():
        return digest_path.read_text().strip()
    print(f"writing {size >> 20} MiB of random bytes to {path} (once) ...", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    md5 = hashlib.md5()  # S3's ETag of a single-part object
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(_CHUNK, left))
            md5.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    digest_path.write_text(md5.hexdigest() + "\n")
    return md5.hexdigest()


def curl_path() -> str:
    found = shutil.which("curl")
    if found is None:
        raise RuntimeError("curl not found (apt-get install -y curl)")
    return found


class TransferFailed(RuntimeError):
    pass


def _curl(argv: list[str], what: str, timeout_s: float) -> tuple[int, float, int, str]:
    """Run curl with -w; returns (status, seconds, bytes, response headers)."""
    fmt = "%{http_code} %{time_total} %{size_upload} %{size_download}"
    out = subprocess.run(
        [curl_path(), "-sS", "-o", "/dev/null", "-D", "-", "-w", f"\n@{fmt}", *argv],
        capture_output=True, text=True, timeout=timeout_s,
    )  # fmt: skip
    if out.returncode != 0:
        raise TransferFailed(f"{what}: curl exited {out.returncode}: {out.stderr.strip()}")
    headers, _, summary = out.stdout.rpartition("\n@")
    status, seconds, uploaded, downloaded = summary.split()
    moved = max(int(float(uploaded)), int(float(downloaded)))
    return int(status), float(seconds), moved, headers


def put(url: str, source: Path, timeout_s: float = 900) -> tuple[float, str]:
    """PUT the file in one request; returns (seconds, ETag or "")."""
    # No "Expect: 100-continue": every server gets the body at once, none waits a second.
    status, seconds, moved, headers = _curl(
        ["-T", str(source), "-H", "Expect:", url], "PUT", timeout_s
    )
    size = source.stat().st_size
    if status not in (200, 201, 204) or moved != size:
        raise TransferFailed(f"PUT -> HTTP {status}, {moved} of {size} bytes sent")
    etag = ""
    for line in headers.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() == "etag":
            etag = value.strip().strip('"')
    return seconds, etag


def get(url: str, size: int, timeout_s: float = 900) -> float:
    status, seconds, moved, _ = _curl([url], "GET", timeout_s)
    if status != 200 or moved != size:
        raise TransferFailed(f"GET -> HTTP {status}, {moved} of {size} bytes received")
    return seconds
