"""Run one small-object cell: N connections sending presigned requests for a while.

PUT and GET go through wrk (one thread, a Lua script that cycles through a
file of presigned paths, each request built before the clock starts); HEAD
goes through http_load.py, because wrk 4.1 waits for a body after a HEAD
answer. Both count every status code, so a cell answered with errors is
reported as such, not as fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from wrk_load import CellResult, parse_wrk_output, wrk_path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

# %(method)s, %(paths)s and %(body)s are filled in per cell.
_WRK_LUA = r"""
local method = "%(method)s"
local paths_file = "%(paths)s"
local body = %(body)s
local prepared = {}
local count = 0
local next_index = 1
local threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  statuses = {}
  first_error = ""
  for path in io.lines(paths_file) do
    count = count + 1
    prepared[count] = wrk.format(method, path, nil, body)
  end
  -- wrk calls request() once before the run to check the script; let that call
  -- take the last path, so the run itself starts at the first.
  next_index = count
end

function request()
  local r = prepared[next_index]
  next_index = next_index %% count + 1
  return r
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
    for code, n in pairs(thread:get("statuses") or {}) do
      total[code] = (total[code] or 0) + n
    end
    local err = thread:get("first_error")
    if err ~= nil and err ~= "" then
      io.write("@first_error " .. err .. "\n")
    end
  end
  for code, n in pairs(total) do
    io.write(string.format("@status %%d %%d\n", code, n))
  end
end
"""


def write_paths(path: Path, paths: list[str]) -> Path:
    path.write_text("\n".join(paths) + "\n")
    return path


def _wrk_script(path: Path, method: str, paths_file: Path, body_size: int) -> Path:
    body = f'string.rep("0123456789abcdef", {body_size // 16})' if body_size else "nil"
    path.write_text(_WRK_LUA % {"method": method, "paths": paths_file, "body": body})
    return path


def http_load_python() -> str:
    """The repo's venv python when it has uvloop (a lighter client), else this one."""
    venv_python = REPO / ".venv" / "bin" / "python"
    if venv_python.exists():
        probe = subprocess.run([venv_python, "-c", "import uvloop"], capture_output=True)
        if probe.returncode == 0:
            return str(venv_python)
    return sys.executable


def describe_clients(head_python: str) -> str:
    uvloop = "uvloop" if head_python != sys.executable else "asyncio"
    return (
        "PUT/GET: wrk 4.1 -t1, Lua script cycling through presigned paths; "
        f"HEAD: bench/s3/http_load.py (1 process, {uvloop}, raw sockets), "
        "since wrk 4.1 waits for a body after HEAD"
    )


def run_cell(
    host: str,
    method: str,
    paths_file: Path,
    body_size: int,
    connections: int,
    duration_s: float,
    head_python: str,
    timeout_s: float = 60.0,
) -> CellResult:
    if method == "HEAD":
        return _run_http_load(host, method, paths_file, connections, duration_s, head_python)
    script = _wrk_script(paths_file.with_suffix(".lua"), method, paths_file, body_size)
    argv = [wrk_path(), "-t1", f"-c{connections}", f"-d{max(1, round(duration_s))}s",
            f"--timeout={round(timeout_s)}s", "--latency", "-s", str(script),
            f"http://{host}/"]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + timeout_s + 30)
    if out.returncode != 0:
        raise RuntimeError(f"wrk exited {out.returncode}: {out.stdout}{out.stderr}")
    return parse_wrk_output(out.stdout)


def _run_http_load(
    host: str, method: str, paths_file: Path, connections: int, duration_s: float, python: str
) -> CellResult:
    argv = [python, str(HERE / "http_load.py"), "--host", host, "--method", method,
            "--paths", str(paths_file), "-c", str(connections), "-d", str(duration_s)]  # fmt: skip
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 90)
    if out.returncode != 0:
        raise RuntimeError(f"http_load.py exited {out.returncode}: {out.stderr[-2000:]}")
    result = json.loads(out.stdout)
    return CellResult(
        requests_per_s=result["requests_per_s"],
        p99_ms=result["p99_ms"] if result["p99_ms"] is not None else float("nan"),
        requests=result["requests"],
        statuses={int(code): n for code, n in result["statuses"].items()},
        socket_errors=result["errors"],
        first_errors=result["first_errors"],
    )
