"""Volume rules without HTTP: the status table, its compare-and-set, and the quota claims.

The service is built as the server builds it (SQLite and a backend in a temporary
directory, the real identity and image services), then driven directly.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import update

from souverain import server
from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.errors import ApiError, BadRequest, NotFound
from souverain.config import Settings, VolumeSettings
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from souverain.volume import models as m
from souverain.volume import schemas
from souverain.volume.backend import GIB
from souverain.volume.rules import QuotaExceeded, VolumeQuery
from souverain.volume.service import VolumeService
from souverain.volume.state import ATTACHED, DELETABLE, MOVES, VOLUME_STATUSES

MEMBER = RequestContext(
    user_id="u1", user_domain_id="default", roles=frozenset({"member"}), project_id="p1"
)
ADMIN = RequestContext(
    user_id="admin", user_domain_id="default", roles=frozenset({"admin"}), project_id="p0"
)
QUOTA = VolumeSettings(quota_volumes=3, quota_gigabytes=5, quota_snapshots=1)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VolumeService]:
    root = tmp_path_factory.mktemp("volume-rules")
    settings = Settings(data_dir=root, volume=QUOTA)
    engine = make_engine(f"sqlite:///{root / 'db.sqlite'}")
    migrate.upgrade(engine)
    db, clock = Database(engine), Clock()
    identity = server._identity(settings, db, clock)
    image = server._image(settings, db, identity, clock)
    image.store.setup()
    volumes = server._volume(settings, db, identity, image, clock)
    volumes.set_up()
    yield volumes
    engine.dispose()


@pytest.fixture
def project() -> RequestContext:
    """A fresh project per test, so quotas never carry over."""
    return RequestContext(
        user_id="u1",
        user_domain_id="default",
        roles=frozenset({"member"}),
        project_id=uuid.uuid4().hex,
    )


def _row(service: VolumeService, status: str, project_id: str = "p1") -> str:
    """A volume row in `status` (attached ones held by a server), without a file."""
    now = dt.datetime.now(dt.UTC)
    volume_id = str(uuid.uuid4())
    with service.db.session() as s:
        type_id = service.types.find(s, "default").id
        s.add(
            m.Volume(
                id=volume_id,
                project_id=project_id,
                user_id="u1",
                name=None,
                description=None,
                size=1,
                status=status,
                volume_type_id=type_id,
                availability_zone="nova",
                server_id="srv-1" if status in ATTACHED else None,
                attach_seq=0,
                created_at=now,
                updated_at=now,
            )
        )
    return volume_id


def _volume(service: VolumeService, ctx: RequestContext, size: int = 1) -> str:
    return service.creation.create(ctx, schemas.VolumeCreate(size=size))


def _set_status(service: VolumeService, volume_id: str, status: str) -> None:
    values: dict[str, object] = {"status": status}
    if status in ATTACHED:
        values["server_id"] = "srv-1"
    with service.db.session() as s:
        s.execute(update(m.Volume).where(m.Volume.id == volume_id).values(**values))


def _status(service: VolumeService, volume_id: str) -> str | None:
    with service.db.session() as s:
        row = s.get(m.Volume, volume_id)
        return row.status if row is not None else None


# ---------------------------------------------------------------------- the table


@pytest.mark.parametrize("move", sorted(MOVES))
@pytest.mark.parametrize("status", VOLUME_STATUSES)
def test_a_move_changes_status_only_from_its_sources(
    service: VolumeService, status: str, move: str
) -> None:
    sources, target = MOVES[move]
    volume_id = _row(service, status)
    moved = service.states.move(volume_id, move)
    assert moved == (status in sources)
    assert _status(service, volume_id) == (target if moved else status)


def test_two_racing_moves_from_one_status_cannot_both_win(service: VolumeService) -> None:
    volume_id = _row(service, "available")
    assert service.states.move(volume_id, "reserve")
    assert not service.states.move(volume_id, "reserve")
    assert not service.states.move(volume_id, "delete")
    assert _status(service, volume_id) == "attaching"


def test_every_move_ends_in_a_known_status() -> None:
    for sources, target in MOVES.values():
        assert target in VOLUME_STATUSES
        assert sources <= set(VOLUME_STATUSES)


# ---------------------------------------------------------------------- operations


@pytest.mark.parametrize("status", VOLUME_STATUSES)
def test_reserve_takes_only_an_available_volume(service: VolumeService, status: str) -> None:
    volume_id = _row(service, status)
    if status == "available":
        assert service.reserve(MEMBER, volume_id, "srv-2").id == volume_id
        assert _status(service, volume_id) == "attaching"
        return
    with pytest.raises(BadRequest, match="must be available to attach"):
        service.reserve(MEMBER, volume_id, "srv-2")
    assert _status(service, volume_id) == status


@pytest.mark.parametrize("status", VOLUME_STATUSES)
def test_attached_completes_only_an_attach_in_progress(service: VolumeService, status: str) -> None:
    volume_id = _row(service, status)
    if status in MOVES["attached"][0]:
        service.attached(volume_id, "srv-1", "/dev/vdb", "att-1")
        assert _status(service, volume_id) == "in-use"
        return
    with pytest.raises(BadRequest, match="is not being attached"):
        service.attached(volume_id, "srv-1", "/dev/vdb", "att-1")
    assert _status(service, volume_id) == status


@pytest.mark.parametrize("status", VOLUME_STATUSES)
def test_delete_is_refused_while_attached_or_busy(service: VolumeService, status: str) -> None:
    volume_id = _row(service, status)
    if status in DELETABLE:
        service.volumes.delete(MEMBER, volume_id)
        assert _status(service, volume_id) is None
        return
    message = "is attached; detach it first" if status in ATTACHED else "must be available"
    with pytest.raises(BadRequest, match=message):
        service.volumes.delete(MEMBER, volume_id)
    assert _status(service, volume_id) == status


def test_force_delete_takes_an_attached_volume_but_only_for_an_admin(
    service: VolumeService,
) -> None:
    volume_id = _row(service, "in-use")
    with pytest.raises(ApiError) as refused:
        service.volumes.delete(MEMBER, volume_id, force=True)
    assert refused.value.status == 403
    assert _status(service, volume_id) == "in-use"
    service.volumes.delete(ADMIN, volume_id, force=True)
    assert _status(service, volume_id) is None


def test_delete_with_snapshots_needs_cascade(
    service: VolumeService, project: RequestContext
) -> None:
    volume_id = _volume(service, project)
    snapshot = service.snapshots.create(project, schemas.SnapshotCreate(volume_id=volume_id))
    with pytest.raises(BadRequest, match="dependent snapshot"):
        service.volumes.delete(project, volume_id)
    service.volumes.delete(project, volume_id, cascade=True)
    assert _status(service, volume_id) is None
    assert not service.backend.snapshot_path(snapshot.id).exists()


@pytest.mark.parametrize("status", [s for s in VOLUME_STATUSES if s != "in-use"])
def test_extend_only_an_available_volume(
    service: VolumeService, project: RequestContext, status: str
) -> None:
    volume_id = _volume(service, project)
    _set_status(service, volume_id, status)
    if status == "available":
        service.volumes.extend(project, volume_id, 2)
        assert _status(service, volume_id) == "available"
        assert service.backend.virtual_size(service.backend.volume_path(volume_id)) == 2 * GIB
        return
    with pytest.raises(BadRequest, match="must be available or in-use to extend"):
        service.volumes.extend(project, volume_id, 2)
    assert _status(service, volume_id) == status


def test_extend_in_use_goes_back_to_in_use_when_no_guest_can_grow_it(
    service: VolumeService, project: RequestContext
) -> None:
    volume_id = _volume(service, project)
    _set_status(service, volume_id, "in-use")
    previous, service.attached_resizer = service.attached_resizer, None
    try:
        with pytest.raises(BadRequest, match="could not be extended while attached"):
            service.volumes.extend(project, volume_id, 2)
    finally:
        service.attached_resizer = previous
    assert _status(service, volume_id) == "in-use"
    assert service.volumes.get(project, volume_id).row.size == 1


def test_extend_must_grow(service: VolumeService, project: RequestContext) -> None:
    volume_id = _volume(service, project, size=2)
    with pytest.raises(BadRequest, match="must be greater than current size"):
        service.volumes.extend(project, volume_id, 2)
    assert _status(service, volume_id) == "available"


@pytest.mark.parametrize("status", [s for s in VOLUME_STATUSES if s != "available"])
def test_upload_to_image_only_from_available(
    service: VolumeService, project: RequestContext, status: str
) -> None:
    volume_id = _volume(service, project)
    _set_status(service, volume_id, status)
    with pytest.raises(BadRequest, match="must be available"):
        service.volumes.upload_to_image(project, volume_id, schemas.UploadToImage("img"))
    assert _status(service, volume_id) == status


def test_snapshot_of_an_in_use_volume_refused_with_force_false(
    service: VolumeService, project: RequestContext
) -> None:
    volume_id = _volume(service, project)
    _set_status(service, volume_id, "in-use")
    with pytest.raises(BadRequest, match="force=false was sent"):
        service.snapshots.create(project, schemas.SnapshotCreate(volume_id=volume_id, force=False))
    forced = service.snapshots.create(
        project, schemas.SnapshotCreate(volume_id=volume_id, force=True)
    )
    assert forced.status == "available"
    assert _status(service, volume_id) == "in-use"


@pytest.mark.parametrize("status", ["creating", "extending", "deleting", "error", "uploading"])
def test_snapshot_of_a_busy_volume_is_refused(
    service: VolumeService, project: RequestContext, status: str
) -> None:
    volume_id = _volume(service, project)
    _set_status(service, volume_id, status)
    with pytest.raises(BadRequest, match="it must be available"):
        service.snapshots.create(project, schemas.SnapshotCreate(volume_id=volume_id, force=True))


def test_another_projects_volume_is_not_found(
    service: VolumeService, project: RequestContext
) -> None:
    volume_id = _volume(service, project)
    with pytest.raises(NotFound):
        service.volumes.get(MEMBER, volume_id)
    with pytest.raises(NotFound):
        service.reserve(MEMBER, volume_id, "srv-1")
    assert _status(service, volume_id) == "available"


# ---------------------------------------------------------------------- quotas


def test_volume_count_quota_refuses_the_one_too_many(
    service: VolumeService, project: RequestContext
) -> None:
    for _ in range(QUOTA.quota_volumes):
        _volume(service, project)
    with pytest.raises(QuotaExceeded, match="VolumeLimitExceeded") as refused:
        _volume(service, project)
    assert refused.value.status == 413
    assert service.quotas.usage(project).used == {
        "volumes": 3,
        "gigabytes": 3,
        "snapshots": 0,
        "backups": 0,
        "backup_gigabytes": 0,
    }


def test_gigabytes_quota_counts_volumes_and_snapshots(
    service: VolumeService, project: RequestContext
) -> None:
    volume_id = _volume(service, project, size=2)
    service.snapshots.create(project, schemas.SnapshotCreate(volume_id=volume_id))
    with pytest.raises(QuotaExceeded, match="VolumeSizeExceedsAvailableQuota"):
        _volume(service, project, size=2)  # 2 + 2 + 2 > 5
    assert len(service.volumes.list_visible(project, VolumeQuery(filters={}))[0]) == 1


def test_snapshot_quota_refuses_the_one_too_many(
    service: VolumeService, project: RequestContext
) -> None:
    volume_id = _volume(service, project)
    service.snapshots.create(project, schemas.SnapshotCreate(volume_id=volume_id))
    with pytest.raises(QuotaExceeded, match="SnapshotLimitExceeded"):
        service.snapshots.create(project, schemas.SnapshotCreate(volume_id=volume_id))


def test_extend_past_the_gigabytes_quota_is_refused_and_leaves_the_volume(
    service: VolumeService, project: RequestContext
) -> None:
    volume_id = _volume(service, project, size=2)
    with pytest.raises(QuotaExceeded, match="VolumeSizeExceedsAvailableQuota"):
        service.volumes.extend(project, volume_id, 6)
    assert _status(service, volume_id) == "available"
    assert service.volumes.get(project, volume_id).row.size == 2


def test_an_admin_override_replaces_the_default_and_a_reset_restores_it(
    service: VolumeService, project: RequestContext
) -> None:
    assert project.project_id is not None
    service.quotas.update(ADMIN, project.project_id, {"volumes": 1})
    _volume(service, project)
    with pytest.raises(QuotaExceeded):
        _volume(service, project)
    service.quotas.reset(ADMIN, project.project_id)
    _volume(service, project)
    assert service.quotas.show(ADMIN, project.project_id, usage=False).limits["volumes"] == 3


def test_a_member_may_not_change_quotas(service: VolumeService) -> None:
    with pytest.raises(ApiError) as refused:
        service.quotas.update(MEMBER, "p1", {"volumes": 100})
    assert refused.value.status == 403


def test_recovery_resolves_what_a_stop_left_mid_way(
    service: VolumeService, project: RequestContext
) -> None:
    creating = _volume(service, project)
    deleting = _volume(service, project)
    extending = _volume(service, project)
    _set_status(service, creating, "creating")
    _set_status(service, deleting, "deleting")
    _set_status(service, extending, "extending")
    service.recovery.recover()
    assert _status(service, creating) == "error"
    assert _status(service, deleting) is None
    assert _status(service, extending) == "available"
    assert service.volumes.error_message(creating) is not None
