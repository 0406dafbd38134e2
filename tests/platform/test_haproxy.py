"""The HAProxy fixture (tests/haproxy.py) with real processes: a backend killed with
SIGKILL is skipped after a bounded number of failures, a reload adds a backend without
dropping a request in flight, and a stop leaves no haproxy process."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.haproxy import HAProxy, haproxy, processes_naming, render_config

__all__ = ["haproxy"]  # the fixture, used by name

BACKEND = """
import sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/slow":
            time.sleep(1.5)
        body = sys.argv[1].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
"""


class Backend:
    """A small HTTP server in a process of its own, answering its name."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-c", BACKEND, name], stdout=subprocess.PIPE, text=True
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    @property
    def address(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()


@pytest.fixture
def backends() -> Iterator[list[Backend]]:
    started = [Backend("one"), Backend("two"), Backend("three")]
    try:
        yield started
    finally:
        for backend in started:
            backend.kill()


def get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def answers(proxy: HAProxy, count: int) -> list[str | None]:
    """`count` GETs through the frontend: the name that answered, or None for a failure."""
    seen: list[str | None] = []
    for _ in range(count):
        try:
            seen.append(get(proxy.url + "/"))
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            seen.append(None)
    return seen


def test_config_lists_every_backend_with_a_health_check() -> None:
    text = render_config(8080, [("127.0.0.1", 1), ("127.0.0.1", 2)], "/v3")
    assert "option httpchk GET /v3" in text
    assert "server n0 127.0.0.1:1 check" in text and "server n1 127.0.0.1:2 check" in text
    assert "option redispatch" in text and "retries 3" in text


def test_a_backend_killed_hard_is_skipped_and_requests_keep_succeeding(
    haproxy: type[HAProxy], backends: list[Backend]
) -> None:
    one, two, _ = backends
    proxy = haproxy([one.address, two.address]).start()
    time.sleep(0.5)  # both seen healthy
    assert set(answers(proxy, 6)) == {"one", "two"}
    one.kill()
    seen = answers(proxy, 40)
    # a connection refused is retried on the other server: at most a few failures while
    # the health checks notice, none once they have
    print(f"failures after the kill: {seen.count(None)} of {len(seen)}")
    assert seen.count(None) <= 2, seen
    assert seen[-20:] == ["two"] * 20


def test_reload_serves_a_new_backend_list_without_dropping_a_request_in_flight(
    haproxy: type[HAProxy], backends: list[Backend]
) -> None:
    one, two, three = backends
    proxy = haproxy([one.address]).start()
    in_flight: list[str] = []
    slow = threading.Thread(target=lambda: in_flight.append(get(proxy.url + "/slow")))
    slow.start()
    time.sleep(0.3)  # the slow request is being served by the old worker
    proxy.reload([two.address, three.address])
    slow.join()
    assert in_flight == ["one"], "the reload dropped a request in flight"
    time.sleep(0.5)  # the new worker's first health checks
    assert set(answers(proxy, 6)) == {"two", "three"}


def test_a_config_haproxy_refuses_leaves_the_running_one_serving(
    haproxy: type[HAProxy], backends: list[Backend]
) -> None:
    proxy = haproxy([backends[0].address]).start()
    workers = proxy.workers()
    with pytest.raises(RuntimeError, match="refused the new config"):
        proxy.reload([("127.0.0.1", 0)])  # port 0: not a server haproxy accepts
    assert proxy.workers() == workers
    assert get(proxy.url + "/") == "one"


def test_stop_leaves_no_haproxy_process(backends: list[Backend]) -> None:
    proxy = HAProxy([backends[0].address])
    config = proxy.config
    try:
        proxy.start()
        # the master and a worker; the master re-execs itself in wait mode after forking, and
        # while it does so its /proc cmdline reads empty, so look again until both show
        proxy._wait(lambda: len(processes_naming(config)) >= 2, "the master and a worker")
    finally:
        proxy.stop()
    assert processes_naming(config) == []
    assert not proxy.dir.exists()
