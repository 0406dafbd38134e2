"""Server rows written straight into the database, for tests of what reads them (the
scheduler's claims, the state machine, reconciliation, listings) without a build."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from souverain.compute.models import Server, ServerGroupMember
from souverain.db.engine import Database

WRITTEN_AT = dt.datetime(2026, 1, 1)


def server_row(
    server_id: str | None = None, *, memory: int = 128, vcpus: int = 1, **fields: Any
) -> Server:
    """A server of project "p", user "u", flavor `vcpus`/`memory` and 1 GiB of disk,
    `building` and `scheduling` on no host unless `fields` say otherwise."""
    server_id = server_id or str(uuid.uuid4())
    values: dict[str, Any] = {
        "id": server_id,
        "project_id": "p",
        "user_id": "u",
        "name": server_id[:8],
        "hostname": server_id[:8],
        "image_id": "i",
        "flavor": {"id": "1", "name": "t1.nano", "vcpus": vcpus, "ram": memory, "disk": 1},
        "vcpus": vcpus,
        "memory_mib": memory,
        "disk_gib": 1,
        "server_metadata": {},
        "tags": [],
        "config_drive": True,
        "availability_zone": "nova",
        "addresses": {},
        "mac": "fa:16:3e:00:00:00",
        "vm_state": "building",
        "task_state": "scheduling",
        "power_state": 0,
        "locked": False,
        "reservation_id": "r",
        "launch_index": 0,
        "created_at": WRITTEN_AT,
        "updated_at": WRITTEN_AT,
    }
    values.update(fields)
    values.setdefault("deleted", values["vm_state"] == "deleted")
    return Server(**values)


def add_server(db: Database, group: str | None = None, **fields: Any) -> str:
    """`server_row(**fields)` written in its own transaction (a member of `group` if
    given); its id."""
    row = server_row(**fields)
    with db.session() as s:
        s.add(row)
        if group is not None:
            s.add(ServerGroupMember(server_id=row.id, group_id=group))
    return row.id
