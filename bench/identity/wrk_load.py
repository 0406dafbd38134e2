"""Drive one benchmark cell with wrk and read back throughput, p99 and status codes.

wrk's own summary gives Requests/sec and the latency percentiles; the Lua
script adds a count of every status code, so a cell answered with errors is
reported as such instead of as fast.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

# Appended to every request script: count status codes per thread and, in
# done(), print them (and the first non-2xx body) as "@"-prefixed lines.
_STATUS_TALLY_LUA = r"""
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  first_error = ""
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if (status < 200 or status > 299) and first_error == "" then
    first_error = status .. " " .. string.gsub(string.sub(body or "", 1, 300), "\n", " ")
  end
end

function done(summary, latency, requests)
  local total = {}
  for _, thread in ipairs(threads) do
    for code, count in pairs(thread:get("statuses") or {}) do
      total[code] = (total[code] or 0) + count
    end
    local err = thread:get("first_error")
    if err ~= nil and err ~= "" then
      io.write("@first_error " .. err .. "\n")
    end
  end
  for code, count in pairs(total) do
    io.write(string.format("@status %d %d\n", code, count))
  end
end
"""


def write_script(
    path: Path, method: str, headers: dict[str, str], body: bytes | None = None
) -> Path:
    """Write a wrk Lua script that sends one fixed request shape."""
    lines = [f'wrk.method = "{method}"']
    for name, value in headers.items():
        lines.append(f'wrk.headers["{name}"] = {_lua_string(value)}')
    if body is not None:
        lines.append(f"wrk.body = {_lua_string(body.decode())}")
    path.write_text("\n".join(lines) + "\n" + _STATUS_TALLY_LUA)
    return path


def _lua_string(text: str) -> str:
    level = 1
    while f"]{'=' * level}]" in text:
        level += 1
    return f"[{'=' * level}[{text}]{'=' * level}]"


@dataclass
class CellResult:
    """What one wrk run measured."""

    requests_per_s: float
    p99_ms: float
    requests: int
    statuses: dict[int, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)
    first_errors: list[str] = field(default_factory=list)
    foreign_cpu: float = 0.0  # share of the machine other processes used meanwhile

    @property
    def non_2xx(self) -> int:
        return sum(n for code, n in self.statuses.items() if not 200 <= code <= 299)

    @property
    def failed(self) -> bool:
        return self.requests == 0 or self.non_2xx > 0 or any(self.socket_errors.values())

    def problems(self) -> str:
        parts = []
        if self.requests == 0:
            parts.append("no request completed")
        bad = {code: n for code, n in sorted(self.statuses.items()) if not 200 <= code <= 299}
        if bad:
            parts.append("non-2xx " + ", ".join(f"HTTP {c} x{n}" for c, n in bad.items()))
        errors = {kind: n for kind, n in self.socket_errors.items() if n}
        if errors:
            parts.append("socket errors " + ", ".join(f"{k} {n}" for k, n in errors.items()))
        if self.first_errors:
            parts.append("first: " + self.first_errors[0])
        return "; ".join(parts)


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk not found (apt-get install -y wrk)")
    return found


def run_wrk(
    url: str,
    script: Path,
    connections: int,
    duration_s: float,
    timeout_s: float = 60.0,
) -> CellResult:
    """One wrk run: -t1 -c1 at concurrency 1, two threads above it."""
    threads = 1 if connections == 1 else 2
    argv = [
        wrk_path(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(duration_s))}s",
        f"--timeout={round(timeout_s)}s",
        "--latency",
        "-s",
        str(script),
        url,
    ]
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        output, _ = process.communicate(timeout=duration_s + timeout_s + 30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = output.decode(errors="replace")
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited {process.returncode}: {text}")
    return parse_wrk_output(text)


_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk_output(text: str) -> CellResult:
    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.MULTILINE)
    total = re.search(r"^\s*(\d+) requests in ", text, re.MULTILINE)
    if rps is None or total is None:
        raise RuntimeError(f"cannot read wrk output:\n{text}")
    p99 = re.search(r"^\s+99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.MULTILINE)
    result = CellResult(
        requests_per_s=float(rps.group(1)),
        p99_ms=float(p99.group(1)) * _UNIT_MS[p99.group(2)] if p99 else float("nan"),
        requests=int(total.group(1)),
    )
    for code, count in re.findall(r"^@status (\d+) (\d+)$", text, re.MULTILINE):
        result.statuses[int(code)] = int(count)
    result.first_errors = re.findall(r"^@first_error (.*)$", text, re.MULTILINE)
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if sockets:
        result.socket_errors = dict(
            zip(("connect", "read", "write", "timeout"), map(int, sockets.groups()), strict=True)
        )
    non_2xx_line = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx_line and int(non_2xx_line.group(1)) > result.non_2xx:
        # wrk counted errors the Lua tally missed; never let them vanish.
        result.statuses[0] = int(non_2xx_line.group(1)) - result.non_2xx
    return result
