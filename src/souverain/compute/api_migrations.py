"""Migrations over HTTP: `GET /os-migrations` (every move, admin), a server's live
migrations under way (`/servers/{id}/migrations[/{mid}]`, 2.23; abort with DELETE, 2.24;
force_complete, 2.22),
and the two actions that start a move (`os-migrateLive`, `migrate`), shaped per
microversion as Nova's API reference says (2.23 migration_type and links, 2.59 uuid and
paging, 2.80 user and project).

Part of compute's HTTP layer; the rules are in `migrations.py`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from souverain.common.clock import parse_isotime
from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest, NotFound
from souverain.common.jsoncodec import JSONResponse
from souverain.compute.api_base import Handlers, require_admin, require_version, versioned
from souverain.compute.migrations import IN_PROGRESS, LIVE, MigrationFilter
from souverain.compute.models import Migration
from souverain.openstack.body import read_json
from souverain.openstack.microversion import Version
from souverain.openstack.query import parse_limit
from souverain.openstack.routing import Edge

MIGRATION_TYPES = ("evacuation", "live-migration", "migration", "resize")
_BASE_QUERY = ("hidden", "host", "instance_uuid", "source_compute", "status", "migration_type")
_QUERY_2_59 = (*_BASE_QUERY, "limit", "marker", "changes-since")
_QUERY_2_66 = (*_QUERY_2_59, "changes-before")
_QUERY_2_80 = (*_QUERY_2_66, "user_id", "project_id")


def _time(value: dt.datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="microseconds")


def _move(m: Migration) -> dict[str, Any]:
    """What both views of a migration show of the move: its hosts, status and times."""
    return {
        "source_compute": m.source_compute,
        "dest_compute": m.dest_compute,
        "source_node": m.source_node,
        "dest_node": m.dest_node,
        "dest_host": m.dest_host,
        "status": m.status,
        "created_at": _time(m.created_at),
        "updated_at": _time(m.updated_at),
    }


def _with_owner(body: dict[str, Any], m: Migration, v: Version) -> dict[str, Any]:
    """The uuid (2.59) and the user and project (2.80) of the migration."""
    if v >= (2, 59):
        body["uuid"] = m.uuid
    if v >= (2, 80):
        body["user_id"] = m.user_id
        body["project_id"] = m.project_id
    return body


def migration_body(m: Migration, v: Version, base: str) -> dict[str, Any]:
    """One entry of os-migrations at microversion `v`."""
    body: dict[str, Any] = {
        "id": m.id,
        "instance_uuid": m.instance_uuid,
        **_move(m),
        "old_instance_type_id": m.old_instance_type_id,
        "new_instance_type_id": m.new_instance_type_id,
    }
    if v >= (2, 23):
        body["migration_type"] = m.migration_type
        if m.migration_type == LIVE and m.status in IN_PROGRESS[LIVE]:
            path = f"servers/{m.instance_uuid}/migrations/{m.id}"
            body["links"] = [
                {"rel": "self", "href": f"{base}/v2.1/{path}"},
                {"rel": "bookmark", "href": f"{base}/{path}"},
            ]
    return _with_owner(body, m, v)


def server_migration_body(m: Migration, v: Version) -> dict[str, Any]:
    """One live migration under way of a server (its progress is not measured: zeros)."""
    body: dict[str, Any] = {
        "id": m.id,
        "server_uuid": m.instance_uuid,
        **_move(m),
        **dict.fromkeys(
            (
                "memory_total_bytes",
                "memory_processed_bytes",
                "memory_remaining_bytes",
                "disk_total_bytes",
                "disk_processed_bytes",
                "disk_remaining_bytes",
            ),
            0,
        ),
    }
    return _with_owner(body, m, v)


def _allowed_query(v: Version) -> tuple[str, ...] | None:
    """The query parameters os-migrations takes; None: anything (below 2.59, as Nova)."""
    if v >= (2, 80):
        return _QUERY_2_80
    if v >= (2, 66):
        return _QUERY_2_66
    if v >= (2, 59):
        return _QUERY_2_59
    return None


def _when(name: str, raw: str | None) -> dt.datetime | None:
    if raw is None:
        return None
    try:
        return parse_isotime(raw).replace(tzinfo=None)
    except ValueError:
        raise BadRequest(f"Invalid input for query parameters {name}.") from None


def migration_filter(request: Request, v: Version) -> MigrationFilter:
    q = request.query_params
    allowed = _allowed_query(v)
    if allowed is not None:
        extra = sorted(set(q) - set(allowed))
        if extra:
            raise BadRequest(f"Additional properties are not allowed ('{extra[0][:64]}').")
    kind = q.get("migration_type")
    if kind is not None and kind not in MIGRATION_TYPES:
        raise BadRequest(f"Invalid input for query parameters migration_type: {kind[:64]!r}.")
    since, before = _when("changes-since", q.get("changes-since")), None
    if v >= (2, 66):
        before = _when("changes-before", q.get("changes-before"))
    if since is not None and before is not None and before < since:
        raise BadRequest("The value of changes-since must be less than or equal to changes-before.")
    paged = v >= (2, 59)
    return MigrationFilter(
        host=q.get("host"),
        source_compute=q.get("source_compute"),
        status=q.get("status"),
        instance_uuid=q.get("instance_uuid"),
        migration_type=kind,
        user_id=q.get("user_id") if v >= (2, 80) else None,
        project_id=q.get("project_id") if v >= (2, 80) else None,
        changes_since=since if paged else None,
        changes_before=before,
        limit=parse_limit(q.get("limit")) if paged else None,
        marker=q.get("marker") if paged else None,
    )


class MigrationHandlers(Handlers):
    async def migrations(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        require_admin(ctx)
        wanted = migration_filter(request, v)
        found = await run_in_threadpool(self.service.migrations.list, ctx, wanted)
        base = self.base(request)
        body: dict[str, Any] = {"migrations": [migration_body(m, v, base) for m in found]}
        if v >= (2, 59) and wanted.limit is not None and len(found) == wanted.limit and found:
            query = f"limit={wanted.limit}&marker={found[-1].uuid}"
            body["migrations_links"] = [
                {"rel": "next", "href": f"{base}/v2.1/os-migrations?{query}"}
            ]
        return JSONResponse(body)

    async def server_migrations(
        self, request: Request, ctx: RequestContext, v: Version
    ) -> Response:
        require_version(v, (2, 23))
        require_admin(ctx)
        server_id = request.path_params["id"]
        found = await run_in_threadpool(self.service.migrations.server_migrations, ctx, server_id)
        return JSONResponse({"migrations": [server_migration_body(m, v) for m in found]})

    async def server_migration(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        server_id, migration_id = request.path_params["id"], _migration_id(request)
        if request.method == "DELETE":
            require_version(v, (2, 24))
            require_admin(ctx)
            await run_in_threadpool(
                self.service.migrations.abort, ctx, server_id, migration_id, v >= (2, 65)
            )
            return Response(status_code=202)
        require_version(v, (2, 23))
        require_admin(ctx)
        found = await run_in_threadpool(
            self.service.migrations.in_progress, ctx, server_id, migration_id
        )
        return JSONResponse({"migration": server_migration_body(found, v)})

    async def server_migration_action(
        self, request: Request, ctx: RequestContext, v: Version
    ) -> Response:
        require_version(v, (2, 22))
        require_admin(ctx)
        body = await read_json(request)
        if body != {"force_complete": None}:
            raise BadRequest('The action body is {"force_complete": null}.')
        server_id, migration_id = request.path_params["id"], _migration_id(request)
        await run_in_threadpool(
            self.service.migrations.force_complete, ctx, server_id, migration_id
        )
        return Response(status_code=202)


def _migration_id(request: Request) -> int:
    raw = request.path_params["migration_id"]
    if not raw.isdigit() or len(raw) > 12:
        raise NotFound(f"Migration {raw[:64]} could not be found.")
    return int(raw)


# ------------------------------------------------------------------ the actions' bodies


def live_migrate_args(args: Any, v: Version, shared_storage: bool = False) -> str | None:
    """os-migrateLive's target host, refused as Nova's schema does: `block_migration` and
    `disk_over_commit` required to 2.24, "auto" from 2.25, `force` from 2.30 to 2.67. Hosts
    share instance storage only with root disks on RBD (`shared_storage`); otherwise a
    shared-storage migration (block_migration false) is refused."""
    if not isinstance(args, dict):
        raise BadRequest("Invalid input for field/attribute os-migrateLive: it must be an object.")
    allowed = {"host", "block_migration"}
    if v < (2, 25):
        allowed.add("disk_over_commit")
        for key in ("block_migration", "disk_over_commit", "host"):
            if key not in args:
                raise BadRequest(f"Invalid input: '{key}' is a required property.")
    elif "block_migration" not in args:
        raise BadRequest("Invalid input: 'block_migration' is a required property.")
    if (2, 30) <= v < (2, 68):
        allowed.add("force")
    extra = sorted(set(args) - allowed)
    if extra:
        raise BadRequest(f"Invalid input: additional properties are not allowed ({extra[0]!r}).")
    block = args["block_migration"]
    valid = (True, False, "auto") if v >= (2, 25) else (True, False, "true", "false")
    if block not in valid or (block in (0, 1) and not isinstance(block, bool)):
        raise BadRequest("Invalid input for field/attribute block_migration.")
    if block in (False, "false") and not shared_storage:
        raise BadRequest(
            "This cloud's hosts share no instance storage: live-migrate with block_migration "
            "true or auto (the local disk is copied)."
        )
    for key in ("disk_over_commit", "force"):
        if key in args and not isinstance(args[key], bool) and args[key] not in ("true", "false"):
            raise BadRequest(f"Invalid input for field/attribute {key}: a boolean.")
    return _host(args.get("host"))


def migrate_args(args: Any, v: Version) -> str | None:
    """The cold migration's target host: `{"migrate": null}`, or from 2.56 `{"host": ...}`."""
    if args is None:
        return None
    if not isinstance(args, dict) or v < (2, 56):
        raise BadRequest("Invalid input for field/attribute migrate: it must be null.")
    extra = sorted(set(args) - {"host"})
    if extra:
        raise BadRequest(f"Invalid input: additional properties are not allowed ({extra[0]!r}).")
    return _host(args.get("host"))


def _host(host: Any) -> str | None:
    if host is not None and (
        not isinstance(host, str) or not 0 < len(host) <= 255 or not host.isprintable()
    ):
        raise BadRequest("Invalid input for field/attribute host: 1 to 255 characters.")
    return host


def migration_routes(edge: Edge, h: MigrationHandlers) -> list[BaseRoute]:
    r, s = edge.route, "/v2.1/servers/{id}/migrations"
    return [
        r("/v2.1/os-migrations", versioned(h.migrations), {"GET": "compute:migration:list"}),
        r(s, versioned(h.server_migrations), {"GET": "compute:server_migration:list"}),
        r(
            f"{s}/{{migration_id}}",
            versioned(h.server_migration),
            {"GET": "compute:server_migration:show", "DELETE": "compute:server_migration:delete"},
        ),
        r(
            f"{s}/{{migration_id}}/action",
            versioned(h.server_migration_action),
            {"POST": "compute:server_migration:force_complete"},
        ),
    ]
