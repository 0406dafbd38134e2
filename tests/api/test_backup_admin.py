"""The admin actions on backups: os-reset_status (to available or error) and
os-force_delete (whatever the status but `deleting`, the backup's objects with it)."""

from __future__ import annotations

import uuid

from sqlalchemy import update

from souverain.volume import models as m

from .support import S3, Cloud
from .test_volume_backups import backup, bucket_objects, show
from .test_volumes import admin, cinder_error, cloud, tenant

__all__ = ["cloud"]


def test_admin_resets_and_force_deletes_a_backup(cloud: Cloud) -> None:
    c = tenant(cloud)
    a = admin(cloud)
    made = backup(c, c.create()["id"])
    action = f"/backups/{made['id']}/action"
    assert a.post(action, {"os-reset_status": {"status": "error"}}).status_code == 202
    assert show(c, made["id"])["status"] == "error"
    cinder_error(a.post(action, {"os-reset_status": {"status": "creating"}}), 400)
    cinder_error(a.post(action, {"os-reset_status": {"status": None}}), 400)
    assert show(c, made["id"])["status"] == "error"

    # a backup stuck creating: members cannot delete it, an admin can force it away
    with cloud.platform.volume.shared.db.session() as s:
        s.execute(
            update(m.VolumeBackup).where(m.VolumeBackup.id == made["id"]).values(status="creating")
        )
    cinder_error(c.delete(f"/backups/{made['id']}"), 400)
    cinder_error(c.post(action, {"os-force_delete": {}}), 403)
    assert a.post(action, {"os-force_delete": {}}).status_code == 202
    cinder_error(c.get(f"/backups/{made['id']}"), 404)
    member = cloud.member(project_id=c.project_id)
    assert bucket_objects(cloud, S3(cloud, member), made["container"]) == {}


def test_backup_admin_actions_refuse_members_and_unknown_backups(cloud: Cloud) -> None:
    c = tenant(cloud)
    other = tenant(cloud)
    a = admin(cloud)
    made = backup(c, c.create()["id"])
    action = f"/backups/{made['id']}/action"
    for caller in (c, other):
        cinder_error(caller.post(action, {"os-reset_status": {"status": "error"}}), 403)
        cinder_error(caller.post(action, {"os-force_delete": {}}), 403)
    missing = f"/backups/{uuid.uuid4()}/action"
    cinder_error(a.post(missing, {"os-reset_status": {"status": "error"}}), 404)
    cinder_error(a.post(missing, {"os-force_delete": {}}), 404)
    cinder_error(a.post(action, {"os-frobnicate": {}}), 400)
    assert show(c, made["id"])["status"] == "available"
