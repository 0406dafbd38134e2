"""The agent's side of the internal API: its calls over HTTP, with the host's token."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import quote


class ControlPlaneError(Exception):
    """The control plane did not answer, or refused; the agent retries later."""


class InternalClient:
    def __init__(
        self,
        api_url: str,
        host: str,
        token: str,
        timeout: float = 10.0,
        context: ssl.SSLContext | None = None,
    ) -> None:
        """`context`: how an https control plane is verified (agent.ca_file); None: the
        system's trusted CAs."""
        self.base = f"{api_url.rstrip('/')}/internal/v1/hosts/{quote(host, safe='')}"
        self.token = token
        self.timeout = timeout
        self.context = context

    def assignments(self, since: int, wait: int) -> dict[str, Any]:
        query = f"?since={since}&wait={wait}" if since >= 0 else ""
        return self._call("GET", f"/assignments{query}", None, self.timeout + wait)

    def heartbeat(self, report: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/heartbeat", report, self.timeout)

    def report(
        self, server_id: str, state: str, message: str | None = None, action: int | None = None
    ) -> None:
        body: dict[str, Any] = {"state": state}
        if message:
            body["message"] = message
        if action is not None:
            body["action"] = action
        self._call("PUT", f"/servers/{quote(server_id, safe='')}/state", body, self.timeout)

    def console(self, server_id: str, output: str) -> None:
        body = {"output": output}
        self._call("PUT", f"/servers/{quote(server_id, safe='')}/console", body, self.timeout)

    def report_volumes(
        self, server_id: str, held: list[str], failed: dict[str, str] | None = None
    ) -> None:
        """The volumes a guest holds, and the attaches this host could not do (why)."""
        body = {"held": held, "failed": failed or {}}
        self._call("PUT", f"/servers/{quote(server_id, safe='')}/volumes", body, self.timeout)

    def report_migration(self, migration_id: int, step: str, fields: dict[str, Any]) -> None:
        """A step this host took in a move it is the source or destination of."""
        self._call("PUT", f"/migrations/{migration_id}", {**fields, "step": step}, self.timeout)

    def download_image(self, image_id: str, dest: Path) -> None:
        """An image's bytes into `dest`, whole or not at all (written aside, synced, renamed)."""
        url = f"{self.base}/images/{quote(image_id, safe='')}/file"
        request = urllib.request.Request(url, method="GET")  # noqa: S310 - the operator's URL
        request.add_header("X-Auth-Token", self.token)
        tmp = dest.with_name(f".{dest.name}.part")
        try:
            with (
                urllib.request.urlopen(  # noqa: S310 - the operator's URL
                    request, timeout=self.timeout, context=self.context
                ) as response,
                tmp.open("wb") as out,
            ):
                shutil.copyfileobj(response, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except urllib.error.HTTPError as exc:
            raise ControlPlaneError(f"image {image_id}: HTTP {exc.code}") from None
        except (OSError, TimeoutError) as exc:
            raise ControlPlaneError(f"image {image_id}: {exc}") from None
        finally:
            tmp.unlink(missing_ok=True)

    def _call(self, method: str, path: str, body: Any, timeout: float) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method)  # noqa: S310 - the operator's URL
        request.add_header("X-Auth-Token", self.token)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout, context=self.context) as response:  # noqa: S310
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise ControlPlaneError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        except (OSError, TimeoutError) as exc:
            raise ControlPlaneError(f"{method} {path}: {exc}") from None
        if not raw:
            return {}
        result: dict[str, Any] = json.loads(raw)
        return result
