"""The physical limit: nginx serving the same files from disk with sendfile, no S3 at all.

Run as the current user from a config in the state dir (pid file, logs and
temp paths there too). It also takes PUT through its WebDAV module, to show
what writing a 1 GiB body costs without any object store in the way.
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path

from processes import Server, free_port
from target import NGINX, Target
from venvs import ensure_debian_package


def ensure_installed(log: Path) -> str:
    return ensure_debian_package("nginx", "nginx", log)


def installed_version(nginx: str) -> str:
    out = subprocess.run([nginx, "-v"], capture_output=True, text=True)
    return out.stderr.strip().rsplit("/", 1)[-1]


def _config(state: Path, root: Path, port: int) -> str:
    # As root, workers would drop to "nobody" and lose access to the state dir.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    return f"""\
{user}worker_processes auto;
daemon off;
pid {state / "nginx.pid"};
error_log {state / "error.log"} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    client_body_temp_path {state / "client-body"};
    proxy_temp_path {state / "proxy"};
    fastcgi_temp_path {state / "fastcgi"};
    uwsgi_temp_path {state / "uwsgi"};
    scgi_temp_path {state / "scgi"};
    server {{
        listen 127.0.0.1:{port};
        root {root};
        client_max_body_size 0;
        dav_methods PUT;
        create_full_put_path on;
    }}
}}
"""


def start(nginx: str, state: Path, root: Path) -> Target:
    """nginx on a free port serving `root` (an index.html is added there as its probe)."""
    shutil.rmtree(state, ignore_errors=True)
    (root / "index.html").write_text("ready\n")
    state.mkdir(parents=True)
    port = free_port()
    config = state / "nginx.conf"
    config.write_text(_config(state, root, port))
    server = Server(
        "nginx", [nginx, "-c", str(config), "-p", str(state)], log_path=state / "stderr.log"
    )
    server.start()
    try:
        server.wait_ready(f"http://127.0.0.1:{port}/")
    except BaseException:
        server.stop()
        raise
    return Target(
        NGINX,
        f"127.0.0.1:{port}",
        [server],
        setup=f"nginx {installed_version(nginx)} (sendfile on, worker_processes auto, dav PUT)",
    )
