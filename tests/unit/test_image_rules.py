"""Image rules without HTTP: the upload state machine, attribute checks, visibility, members.

The service is built as the server builds it (SQLite and a store in a temporary
directory), then driven directly.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import update

from souverain import server
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest, Conflict, Forbidden, NotFound
from souverain.config import Settings
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from souverain.image import models as m
from souverain.image import schemas
from souverain.image.service import ImageService, ListQuery

STATUSES = ("queued", "saving", "active", "deactivated", "killed")
ADMIN = RequestContext(
    user_id="admin", user_domain_id="default", roles=frozenset({"admin"}), project_id="p0"
)


def _member(project_id: str) -> RequestContext:
    return RequestContext(
        user_id=f"u-{project_id}",
        user_domain_id="default",
        roles=frozenset({"member"}),
        project_id=project_id,
    )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageService]:
    root = tmp_path_factory.mktemp("image-rules")
    settings = Settings(data_dir=root)
    engine = make_engine(f"sqlite:///{root / 'db.sqlite'}")
    migrate.upgrade(engine)
    db, clock = Database(engine), Clock()
    image = server._image(settings, db, server._identity(settings, db, clock), clock)
    image.store.setup()
    yield image
    engine.dispose()


@pytest.fixture
def owner() -> RequestContext:
    return _member(uuid.uuid4().hex)


def _create(service: ImageService, ctx: RequestContext, **attributes: Any) -> str:
    body = {"disk_format": "raw", "container_format": "bare", **attributes}
    return service.create(ctx, schemas.image_create(body)).id


def _set_status(service: ImageService, image_id: str, status: str) -> None:
    with service.db.session() as s:
        s.execute(update(m.Image).where(m.Image.id == image_id).values(status=status))


def _status(service: ImageService, image_id: str) -> str:
    return service.show(ADMIN, image_id).status


# ---------------------------------------------------------------------- the state machine


@pytest.mark.parametrize("status", STATUSES)
def test_an_upload_starts_only_on_a_queued_image(
    service: ImageService, owner: RequestContext, status: str
) -> None:
    image_id = _create(service, owner)
    _set_status(service, image_id, status)
    if status == "queued":
        assert service.begin_upload(owner, image_id) == "raw"
        assert _status(service, image_id) == "saving"
        service.abandon_upload(image_id)
        assert _status(service, image_id) == "queued"
        return
    with pytest.raises(Conflict, match="data can only be uploaded once"):
        service.begin_upload(owner, image_id)
    assert _status(service, image_id) == status


# Glance's admin moves: deactivate an active image, reactivate a deactivated one; asking
# for the status an image already has changes nothing. An image without data (queued,
# saving) or killed can be neither: reactivating it would make an empty image active.
ADMIN_MOVES = {("active", False): "deactivated", ("deactivated", True): "active"}


@pytest.mark.parametrize("active", [True, False])
@pytest.mark.parametrize("status", ["queued", "saving", "active", "deactivated", "killed"])
def test_deactivate_and_reactivate_only_move_images_with_data(
    service: ImageService, owner: RequestContext, status: str, active: bool
) -> None:
    image_id = _create(service, owner)
    _set_status(service, image_id, status)
    target = "active" if active else "deactivated"
    if status == target or (status, active) in ADMIN_MOVES:
        service.set_active(ADMIN, image_id, active)
        assert _status(service, image_id) == target
    else:
        with pytest.raises(BadRequest, match="Not allowed to"):
            service.set_active(ADMIN, image_id, active)
        assert _status(service, image_id) == status


def test_only_an_admin_deactivates(service: ImageService, owner: RequestContext) -> None:
    image_id = _create(service, owner)
    _set_status(service, image_id, "active")
    with pytest.raises(Forbidden):
        service.set_active(owner, image_id, False)
    assert _status(service, image_id) == "active"


def test_a_failed_snapshot_kills_the_image(service: ImageService, owner: RequestContext) -> None:
    record = service.create_snapshot_record(owner, "snap", {"kernel_id": "k"})
    assert record["status"] == "queued" and record["visibility"] == "private"
    service.fail_image(record["id"], "the guest went away")
    assert _status(service, record["id"]) == "killed"


# ---------------------------------------------------------------------- attributes


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        ("min_disk", -1, BadRequest),
        ("min_ram", True, BadRequest),
        ("protected", "yes", BadRequest),
        ("disk_format", "floppy", BadRequest),
        ("visibility", "everyone", BadRequest),
        ("name", "x" * 256, BadRequest),
        ("status", "active", Forbidden),
        ("locations", [], Forbidden),
        ("custom", 5, BadRequest),
    ],
)
def test_bad_attributes_are_refused_before_the_service(
    key: str, value: Any, error: type[ApiError]
) -> None:
    with pytest.raises(error):
        schemas.image_create({key: value})


def test_a_format_cannot_change_once_the_image_has_data(
    service: ImageService, owner: RequestContext
) -> None:
    image_id = _create(service, owner)
    _set_status(service, image_id, "active")
    change = schemas.patch([{"op": "replace", "path": "/disk_format", "value": "qcow2"}])
    with pytest.raises(Forbidden, match="only replaced for a queued image"):
        service.update(owner, image_id, change)


def test_only_an_admin_publicizes(service: ImageService, owner: RequestContext) -> None:
    with pytest.raises(Forbidden, match="publicize"):
        _create(service, owner, visibility="public")
    assert service.show(ADMIN, _create(service, ADMIN, visibility="public")).owner == "p0"


def test_a_patch_is_all_or_nothing(service: ImageService, owner: RequestContext) -> None:
    image_id = _create(service, owner, name="before")
    change = schemas.patch(
        [
            {"op": "replace", "path": "/name", "value": "after"},
            {"op": "remove", "path": "/missing"},
        ]
    )
    with pytest.raises(Conflict, match="does not exist"):
        service.update(owner, image_id, change)
    assert service.show(owner, image_id).name == "before"


def test_a_protected_image_is_not_deleted(service: ImageService, owner: RequestContext) -> None:
    image_id = _create(service, owner, protected=True)
    with pytest.raises(Forbidden, match="protected"):
        service.delete(owner, image_id)
    assert _status(service, image_id) == "queued"


# ---------------------------------------------------------------------- visibility and members


def test_a_private_image_is_not_found_by_another_project(
    service: ImageService, owner: RequestContext
) -> None:
    image_id = _create(service, owner, visibility="private")
    stranger = _member(uuid.uuid4().hex)
    with pytest.raises(NotFound):
        service.show(stranger, image_id)
    assert image_id not in [r.id for r in service.list_images(stranger, ListQuery({}))[0]]


def test_a_shared_image_lists_for_a_member_once_accepted(
    service: ImageService, owner: RequestContext
) -> None:
    image_id = _create(service, owner, visibility="shared")
    guest = _member(uuid.uuid4().hex)
    assert guest.project_id is not None
    service.members.add_member(owner, image_id, guest.project_id)
    assert service.show(guest, image_id).id == image_id
    assert image_id not in [r.id for r in service.list_images(guest, ListQuery({}))[0]]
    with pytest.raises(Forbidden):
        service.members.update_member(owner, image_id, guest.project_id, "accepted")
    service.members.update_member(guest, image_id, guest.project_id, "accepted")
    assert image_id in [r.id for r in service.list_images(guest, ListQuery({}))[0]]


def test_only_the_owner_manages_members(service: ImageService, owner: RequestContext) -> None:
    image_id = _create(service, owner, visibility="shared")
    guest = _member(uuid.uuid4().hex)
    assert guest.project_id is not None
    service.members.add_member(owner, image_id, guest.project_id)
    with pytest.raises(Forbidden, match="Only the owner"):
        service.members.add_member(guest, image_id, "someone-else")
    with pytest.raises(Conflict, match="already a member"):
        service.members.add_member(owner, image_id, guest.project_id)
