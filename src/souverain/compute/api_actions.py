"""Server actions over HTTP: `POST /servers/{id}/action` and the instance-action log.

An action body names exactly one action; `ACTIONS` maps each name to its handler,
and the actions that take no arguments to the service call they make.

Part of compute's HTTP layer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.jsoncodec import JSONResponse
from souverain.compute import schemas, views
from souverain.compute.api_base import Handlers, require_admin
from souverain.compute.api_consoles import LEGACY_PROTOCOLS, ConsoleHandlers
from souverain.compute.api_migrations import live_migrate_args, migrate_args
from souverain.compute.service import ComputeService
from souverain.openstack.auth import audit
from souverain.openstack.body import read_json
from souverain.openstack.microversion import Version

ServiceCall = Callable[[RequestContext, str], None]

# Actions that take no arguments: the service method each calls, and its status.
SIMPLE_ACTIONS: dict[str, tuple[Callable[[ComputeService], ServiceCall], int]] = {
    "os-stop": (lambda s: s.stop, 202),
    "os-start": (lambda s: s.start, 202),
    "unrescue": (lambda s: s.rescue.unrescue, 202),
    "shelve": (lambda s: s.shelving.shelve, 202),
    "pause": (lambda s: s.pause, 202),
    "unpause": (lambda s: s.unpause, 202),
    "suspend": (lambda s: s.suspend, 202),
    "resume": (lambda s: s.resume, 202),
    "confirmResize": (lambda s: s.confirm_resize, 204),
    "revertResize": (lambda s: s.revert_resize, 202),
}


@dataclass(frozen=True)
class Call:
    """One action request: who asks, on which server, at which version, with what."""

    request: Request
    ctx: RequestContext
    v: Version
    server_id: str
    args: Any
    name: str = ""


ActionHandler = Callable[["ActionHandlers", Call], Awaitable[Response]]


class ActionHandlers(Handlers):
    async def server_action(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        server_id = request.path_params["id"]
        body = await read_json(request)
        if len(body) != 1:
            raise BadRequest("The action body names exactly one action.")
        ((name, args),) = body.items()
        audit(request, f"compute.server.{name}", "server", server_id)
        call = Call(request, ctx, v, server_id, args, name)
        if name in SIMPLE_ACTIONS:
            method, status = SIMPLE_ACTIONS[name]
            await run_in_threadpool(method(self.service), ctx, server_id)
            return Response(status_code=status)
        handler = ACTIONS.get(name)
        if handler is None:
            raise BadRequest(f"There is no such action: {name}")
        return await handler(self, call)

    async def reboot(self, call: Call) -> Response:
        hard = schemas.reboot_is_hard(call.args)
        await run_in_threadpool(self.service.reboot, call.ctx, call.server_id, hard)
        return Response(status_code=202)

    async def lock(self, call: Call) -> Response:
        self.service.lock(call.ctx, call.server_id, True)
        return Response(status_code=202)

    async def unlock(self, call: Call) -> Response:
        self.service.lock(call.ctx, call.server_id, False)
        return Response(status_code=202)

    async def console_output(self, call: Call) -> Response:
        length = schemas.console_length(call.args)
        output = await run_in_threadpool(
            self.service.console_output, call.ctx, call.server_id, length
        )
        return JSONResponse({"output": output})

    async def get_console(self, call: Call) -> Response:
        """The legacy console actions (to 2.5); remote-consoles replaced them."""
        consoles = ConsoleHandlers(self.service, self.public_url)
        return await consoles.legacy_console(
            call.request, call.ctx, call.v, call.server_id, call.name, call.args
        )

    async def create_image(self, call: Call) -> Response:
        image = schemas.image_request(call.args)
        image_id = await run_in_threadpool(
            self.service.create_image, call.ctx, call.server_id, image.name, image.metadata
        )
        return self._image_made(call, image_id, located=True)

    async def create_backup(self, call: Call) -> Response:
        backup = schemas.backup_request(call.args)
        image_id = await run_in_threadpool(
            self.service.create_backup, call.ctx, call.server_id, backup
        )
        # below 2.45, Nova names no image when rotation 0 deletes it at once
        return self._image_made(call, image_id, located=backup.rotation > 0)

    def _image_made(self, call: Call, image_id: str, located: bool) -> Response:
        """The image's id in the body from 2.45, in a Location header below."""
        if call.v >= (2, 45):
            return JSONResponse({"image_id": image_id}, status_code=202)
        if not located:
            return Response(status_code=202)
        cloud = self.base(call.request).rsplit("/compute", 1)[0]
        return Response(
            status_code=202, headers={"Location": f"{cloud}/image/v2/images/{image_id}"}
        )

    async def rebuild(self, call: Call) -> Response:
        image_ref, changes = schemas.rebuild_request(call.args, call.v)
        server = await run_in_threadpool(
            self.service.rebuild, call.ctx, call.server_id, image_ref, changes
        )
        server["status"] = "REBUILD"
        body = views.rebuilt_server_body(self.base(call.request), server, call.v, call.ctx.is_admin)
        body["adminPass"] = server["admin_pass"]
        return JSONResponse({"server": body}, status_code=202)

    async def add_security_group(self, call: Call) -> Response:
        name = schemas.security_group_name(call.args)
        await run_in_threadpool(
            self.service.set_security_group, call.ctx, call.server_id, name, True
        )
        return Response(status_code=202)

    async def remove_security_group(self, call: Call) -> Response:
        name = schemas.security_group_name(call.args)
        await run_in_threadpool(
            self.service.set_security_group, call.ctx, call.server_id, name, False
        )
        return Response(status_code=202)

    async def reset_state(self, call: Call) -> Response:
        require_admin(call.ctx)
        state = call.args.get("state") if isinstance(call.args, dict) else None
        if state not in ("active", "error"):
            raise BadRequest("Invalid input for field/attribute state: active or error.")
        await run_in_threadpool(self.service.reset_state, call.ctx, call.server_id, state)
        return Response(status_code=202)

    async def rescue(self, call: Call) -> Response:
        image_ref, admin_pass = schemas.rescue_request(call.args)
        password = await run_in_threadpool(
            self.service.rescue.rescue, call.ctx, call.server_id, image_ref, admin_pass
        )
        return JSONResponse({"adminPass": password})

    def _shared_storage(self) -> bool:
        """Root disks on RBD: every host opens the same disk (Nova's shared storage)."""
        return self.service.settings.disk_backend == "rbd"

    async def evacuate(self, call: Call) -> Response:
        require_admin(call.ctx)  # Nova's os-evacuate is the admin's
        host, admin_pass = _evacuate_args(call.args, call.v, self._shared_storage())
        password = await run_in_threadpool(
            self.service.evacuation.evacuate,
            call.ctx,
            call.server_id,
            host,
            call.v >= (2, 95),
            admin_pass,
        )
        if call.v < (2, 14):
            return JSONResponse({"adminPass": password})
        return Response(status_code=200)

    async def live_migrate(self, call: Call) -> Response:
        require_admin(call.ctx)  # Nova's os-migrate-server:migrate_live is the admin's
        host = live_migrate_args(call.args, call.v, self._shared_storage())
        await run_in_threadpool(
            self.service.migrations.live_migrate, call.ctx, call.server_id, host
        )
        return Response(status_code=202)

    async def migrate(self, call: Call) -> Response:
        require_admin(call.ctx)  # Nova's os-migrate-server:migrate is the admin's
        host = migrate_args(call.args, call.v)
        await run_in_threadpool(
            self.service.migrations.cold_migrate, call.ctx, call.server_id, host
        )
        return Response(status_code=202)

    async def shelve_offload(self, call: Call) -> Response:
        require_admin(call.ctx)  # Nova's os-shelve:shelve_offload is the admin's
        await run_in_threadpool(self.service.shelving.shelve_offload, call.ctx, call.server_id)
        return Response(status_code=202)

    async def unshelve(self, call: Call) -> Response:
        zone = schemas.unshelve_zone(call.args, call.v)
        await run_in_threadpool(self.service.shelving.unshelve, call.ctx, call.server_id, zone)
        return Response(status_code=202)

    async def resize(self, call: Call) -> Response:
        flavor_ref = schemas.resize_flavor(call.args)
        await run_in_threadpool(self.service.resize, call.ctx, call.server_id, flavor_ref)
        return Response(status_code=202)

    # -------------------------------------------------------------- the instance-action log

    async def actions(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        items = self.service.instance_actions(ctx, request.path_params["id"])
        return JSONResponse(
            {"instanceActions": [views.instance_action_body(a, v, None) for a in items]}
        )

    async def action(self, request: Request, ctx: RequestContext, v: Version) -> Response:
        item = self.service.instance_action(
            ctx, request.path_params["id"], request.path_params["req"]
        )
        body = views.instance_action_body(item, v, self.service.host, ctx.is_admin)
        return JSONResponse({"instanceAction": body})


# Actions with arguments (or answers of their own), by the name the body gives them.
ACTIONS: dict[str, ActionHandler] = {
    "reboot": ActionHandlers.reboot,
    "lock": ActionHandlers.lock,
    "unlock": ActionHandlers.unlock,
    "os-getConsoleOutput": ActionHandlers.console_output,
    "createImage": ActionHandlers.create_image,
    "createBackup": ActionHandlers.create_backup,
    **{name: ActionHandlers.get_console for name in LEGACY_PROTOCOLS},
    "rebuild": ActionHandlers.rebuild,
    "resize": ActionHandlers.resize,
    "rescue": ActionHandlers.rescue,
    "os-resetState": ActionHandlers.reset_state,
    "addSecurityGroup": ActionHandlers.add_security_group,
    "removeSecurityGroup": ActionHandlers.remove_security_group,
    "unshelve": ActionHandlers.unshelve,
    "shelveOffload": ActionHandlers.shelve_offload,
    "evacuate": ActionHandlers.evacuate,
    "os-migrateLive": ActionHandlers.live_migrate,
    "migrate": ActionHandlers.migrate,
}


def _evacuate_args(
    args: Any, v: Version, shared_storage: bool = False
) -> tuple[str | None, str | None]:
    """The target host and password of an evacuate, refused as Nova's schema does:
    `onSharedStorage` required to 2.13 and gone after, `force` from 2.29 to 2.67; true is
    refused unless root disks are on RBD (`shared_storage`: the disk is kept either way)."""
    if not isinstance(args, dict):
        raise BadRequest("Invalid input for field/attribute evacuate: it must be an object.")
    allowed = {"host", "adminPass"}
    if v < (2, 14):
        allowed.add("onSharedStorage")
        if "onSharedStorage" not in args:
            raise BadRequest("Invalid input: 'onSharedStorage' is a required property.")
    if (2, 29) <= v < (2, 68):
        allowed.add("force")
    extra = sorted(set(args) - allowed)
    if extra:
        raise BadRequest(f"Invalid input: additional properties are not allowed ({extra[0]!r}).")
    host, admin_pass = args.get("host"), args.get("adminPass")
    if host is not None and (not isinstance(host, str) or not 0 < len(host) <= 255):
        raise BadRequest("Invalid input for field/attribute host: 1 to 255 characters.")
    if admin_pass is not None and (not isinstance(admin_pass, str) or len(admin_pass) > 255):
        raise BadRequest("Invalid input for field/attribute adminPass: a string.")
    if "force" in args and not isinstance(args["force"], bool):
        raise BadRequest("Invalid input for field/attribute force: a boolean.")
    shared = args.get("onSharedStorage", False)
    if shared not in (True, False, "true", "false", "True", "False"):
        raise BadRequest("Invalid input for field/attribute onSharedStorage: a boolean.")
    if shared in (True, "true", "True") and not shared_storage:
        raise BadRequest(
            "This cloud's hosts share no instance storage: evacuate with onSharedStorage false."
        )
    return host, admin_pass
