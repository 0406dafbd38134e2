"""Swift account requests: HEAD and GET (usage, metadata, the container listing), POST.

An account is a project; its quota (X-Account-Meta-Quota-Bytes, X-Account-Quota-Count)
is the project's object-storage quota, which only a ResellerAdmin sets.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from souverain.common.clock import Clock
from souverain.objectstore.api.swift.access import Caller, check_manage
from souverain.objectstore.api.swift.container import POLICY_NAME
from souverain.objectstore.api.swift.listing import container_window, listing_params
from souverain.objectstore.api.swift.wire import (
    HTML,
    TEXT,
    SwiftError,
    iso,
    listing,
    listing_format,
    meta_changes,
    meta_headers,
    timestamp,
)
from souverain.objectstore.policy import Principal
from souverain.objectstore.quotas import set_storage_quota
from souverain.objectstore.service import ObjectStoreService
from souverain.objectstore.swift.metadata import SwiftMetadata

QUOTA_BYTES = "quota-bytes"
QUOTA_COUNT_HEADER = "x-account-quota-count"


class AccountHandlers:
    def __init__(self, service: ObjectStoreService, metadata: SwiftMetadata, clock: Clock) -> None:
        self.service = service
        self.metadata = metadata
        self.clock = clock

    def _headers(self, caller: Caller, containers: int) -> dict[str, str]:
        stored, objects = self.service.usage(caller.project_id)
        meta = self.metadata.account(caller.project_id)
        headers = {
            "X-Account-Container-Count": str(containers),
            "X-Account-Object-Count": str(objects),
            "X-Account-Bytes-Used": str(stored),
            "X-Timestamp": timestamp(),
            # one storage policy holds everything: its usage is the account's
            f"X-Account-Storage-Policy-{POLICY_NAME}-Container-Count": str(containers),
            f"X-Account-Storage-Policy-{POLICY_NAME}-Object-Count": str(objects),
            f"X-Account-Storage-Policy-{POLICY_NAME}-Bytes-Used": str(stored),
            **meta_headers("X-Account-Meta-", meta),
        }
        if not caller.manages:
            headers = {k: v for k, v in headers.items() if "temp-url-key" not in k.lower()}
        return headers

    async def show(self, request: Request, caller: Caller) -> Response:
        check_manage(caller, write=False)
        buckets = await asyncio.to_thread(
            self.service.list_buckets, Principal("swift", caller.project_id)
        )
        headers = await asyncio.to_thread(self._headers, caller, len(buckets))
        if request.method == "HEAD":
            return Response(status_code=204, headers=headers, media_type=TEXT)
        params = listing_params(request.query_params)
        names = container_window([b.name for b in buckets], params)
        by_name = {b.name: b for b in buckets}
        items: list[dict[str, Any]] = []
        for name in names:
            stored, count = await asyncio.to_thread(self.service.bucket_usage, by_name[name])
            items.append(
                {
                    "name": name,
                    "count": count,
                    "bytes": stored,
                    "last_modified": iso(by_name[name].created_at),
                }
            )
        fmt = listing_format(request.query_params, request.headers.get("accept", ""))
        return listing("account", f"AUTH_{caller.project_id}", items, fmt, headers)

    async def update(self, request: Request, caller: Caller) -> Response:
        check_manage(caller)
        headers = {k.lower(): v for k, v in request.headers.items()}
        changes = meta_changes(headers, "x-account-meta-", "x-remove-account-meta-")
        count_set = QUOTA_COUNT_HEADER in headers
        count_removed = "x-remove-account-quota-count" in headers
        if QUOTA_BYTES in changes or count_set or count_removed:
            if not caller.reseller:
                raise SwiftError(403, "Only a ResellerAdmin sets an account's quota.")
            quota_bytes = _quota(changes.get(QUOTA_BYTES), QUOTA_BYTES)
            count = None if count_removed else _quota(headers.get(QUOTA_COUNT_HEADER), "count")
            await asyncio.to_thread(
                self._set_quota,
                caller.project_id,
                QUOTA_BYTES in changes,
                quota_bytes,
                count_set or count_removed,
                count,
            )
            if count_set or count_removed:
                changes["quota-count"] = str(count) if count is not None else None
        await asyncio.to_thread(self.metadata.update_account, caller.project_id, changes)
        return Response(status_code=204, headers={"Content-Length": "0"}, media_type=HTML)

    def _set_quota(
        self,
        project_id: str,
        bytes_given: bool,
        max_bytes: int | None,
        count_given: bool,
        max_count: int | None,
    ) -> None:
        """The project's quota: a limit given replaces, one removed returns to unlimited."""
        meta = self.metadata.account(project_id)
        current_bytes = _quota(meta.get(QUOTA_BYTES), QUOTA_BYTES)
        current_count = _quota(meta.get("quota-count"), "count")
        new_bytes = max_bytes if bytes_given else current_bytes
        new_count = max_count if count_given else current_count
        db, clock = self.service.db, self.clock
        set_storage_quota(db, clock, project_id, None, None, reset=True)
        set_storage_quota(db, clock, project_id, new_bytes, new_count)


def _quota(value: str | None, what: str) -> int | None:
    if value is None or value == "":
        return None
    if not value.isdigit():
        raise SwiftError(400, f"The account {what} quota must be a whole number.")
    return int(value)
