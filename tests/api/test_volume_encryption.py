"""Encrypted volumes in-process: Cinder's encryption types (admin only, bad input refused,
frozen while volumes of the type exist) and LUKS volumes whose keys live in the key manager.

The bytes are checked with qemu-img and qemu-io themselves (the passphrase handed over a
pipe, as the service does); the keys through the platform's real key manager.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
import zlib
from pathlib import Path
from typing import Any

import pytest

from souverain.common.context import RequestContext
from souverain.common.errors import BadRequest
from souverain.common.keys import KeyNotFound
from souverain.volume import models as m

from .support import Cloud
from .test_volume_backups import backup, settle, show
from .test_volumes import Cinder, admin, cinder_error, cloud, tenant

__all__ = ["cloud"]

LUKS = {
    "provider": "luks",
    "cipher": "aes-xts-plain64",
    "key_size": 256,
    "control_location": "front-end",
}


def encrypted_type(a: Cinder, name: str, **spec: Any) -> tuple[str, dict[str, Any]]:
    made = a.post("/types", {"volume_type": {"name": name}})
    assert made.status_code == 200, made.text
    type_id: str = made.json()["volume_type"]["id"]
    added = a.post(f"/types/{type_id}/encryption", {"encryption": {**LUKS, **spec}})
    assert added.status_code == 200, added.text
    encryption: dict[str, Any] = added.json()["encryption"]
    return type_id, encryption


def qemu_io(path: Path, key: bytes, command: str) -> str:
    """Run one qemu-io command on a LUKS qcow2, the passphrase over a pipe."""
    read, write = os.pipe()
    os.write(write, key.hex().encode())
    os.close(write)
    try:
        done = subprocess.run(
            [
                "qemu-io", "--object", f"secret,id=k,format=raw,file=/dev/fd/{read}",
                "--image-opts", f"driver=qcow2,file.filename={path},encrypt.key-secret=k",
                "-c", command,
            ],
            capture_output=True, text=True, pass_fds=(read,), check=False, timeout=60,
        )  # fmt: skip
    finally:
        os.close(read)
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def luks_info(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        ["qemu-img", "info", "-U", "--output=json", str(path)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    encrypt: dict[str, Any] = json.loads(done.stdout)["format-specific"]["data"]["encrypt"]
    return encrypt


def secret_of(cloud: Cloud, project_id: str, key_id: str) -> bytes:
    keys = cloud.platform.project_keys
    assert keys is not None
    return keys.secret_key(project_id, key_id)


def consumers_of(cloud: Cloud, project_id: str, key_id: str) -> list[dict[str, str]]:
    """The key's consumers, as the key manager shows them to the project's members."""
    kms = cloud.platform.keymanager
    assert kms is not None
    ctx = RequestContext("u", "default", frozenset({"member"}), project_id=project_id)
    return list(kms.secrets.get(ctx, key_id).consumers)


def key_gone(cloud: Cloud, project_id: str, key_id: str) -> bool:
    try:
        secret_of(cloud, project_id, key_id)
    except KeyNotFound:
        return True
    return False


def test_encryption_types_are_admin_only_and_checked(cloud: Cloud) -> None:
    a, alice = admin(cloud), tenant(cloud)
    reader = cloud.member(role="reader", project_id=alice.project_id)
    bob_reader = Cinder(cloud, reader.token, reader.project_id, reader.id)
    made = a.post("/types", {"volume_type": {"name": "to-encrypt"}}).json()["volume_type"]
    type_id = made["id"]
    url = f"/types/{type_id}/encryption"

    assert a.get(url).json() == {}  # none yet, as Cinder answers
    for caller in (alice, bob_reader):
        cinder_error(caller.post(url, {"encryption": LUKS}), 403)
        cinder_error(caller.get(url), 403)
    for bad in (
        {"encryption": {**LUKS, "provider": "nova.volume.encryptors.cryptsetup.Plain"}},
        {"encryption": {**LUKS, "cipher": "aes-cbc-essiv:sha256"}},
        {"encryption": {**LUKS, "key_size": 100}},
        {"encryption": {**LUKS, "key_size": "256; DROP TABLE"}},
        {"encryption": {**LUKS, "control_location": "back-end"}},
        {"encryption": {**LUKS, "passphrase": "x"}},
        {"encryption": {}},
        {"volume_type": {}},
    ):
        cinder_error(a.post(url, bad), 400)
    assert a.get(url).json() == {}  # nothing left behind
    cinder_error(a.post("/types/no-such-type/encryption", {"encryption": LUKS}), 404)

    created = a.post(url, {"encryption": LUKS})
    assert created.status_code == 200, created.text
    spec = created.json()["encryption"]
    assert spec["provider"] == "luks" and spec["volume_type_id"] == type_id
    cinder_error(a.post(url, {"encryption": LUKS}), 400)  # already there
    shown = a.get(url).json()
    assert shown["cipher"] == "aes-xts-plain64" and shown["encryption_id"] == spec["encryption_id"]
    assert a.get(f"{url}/cipher").json() == {"cipher": "aes-xts-plain64"}
    cinder_error(a.get(f"{url}/nope"), 404)

    item = f"{url}/{spec['encryption_id']}"
    cinder_error(alice.put(item, {"encryption": {"key_size": 512}}), 403)
    cinder_error(a.put(item, {"encryption": {"key_size": 100}}), 400)
    changed = a.put(item, {"encryption": {"key_size": 512}})
    assert changed.status_code == 200 and changed.json() == {"encryption": {"key_size": 512}}
    cinder_error(a.put(f"{url}/{type_id}", {"encryption": {"key_size": 256}}), 404)
    cinder_error(alice.delete(item), 403)
    assert a.delete(item).status_code == 202
    assert a.get(url).json() == {}


@pytest.mark.one_backend("sqlite")  # the bytes and the keys are its subject, not the database
def test_encrypted_volume_snapshot_copy_image_and_delete(cloud: Cloud) -> None:
    """One LUKS volume through everything that must keep it encrypted (each new LUKS header
    costs QEMU's PBKDF calibration, a second or more of CPU: three here in all)."""
    a, alice, bob = admin(cloud), tenant(cloud), tenant(cloud)
    type_id, spec = encrypted_type(a, "luks-gold")
    backend = cloud.platform.volume.backend

    vol = alice.create(volume_type="luks-gold", size=1)
    assert vol["encrypted"] is True and vol["status"] == "available"
    key_id = alice.show(vol["id"])["encryption_key_id"]
    alice.version = "3.63"
    assert "encryption_key_id" not in alice.show(vol["id"])  # from 3.64, as Cinder
    alice.version = "3.70"
    key = secret_of(cloud, alice.project_id, key_id)  # the project's own secret
    volume_use = {"service": "volume", "resource_type": "volume", "resource_id": vol["id"]}
    assert consumers_of(cloud, alice.project_id, key_id) == [volume_use]
    cinder_error(bob.get(f"/volumes/{vol['id']}"), 404)
    with pytest.raises(KeyNotFound):
        secret_of(cloud, bob.project_id, key_id)
    handle = cloud.platform.volume.handle(vol["id"])  # what compute hands QEMU
    assert handle.passphrase == key.hex() and key.hex() not in repr(handle)

    path = backend.volume_path(vol["id"])
    info = luks_info(path)
    assert info["format"] == "luks" and info["cipher-alg"] == "aes-128"
    assert info["cipher-mode"] == "xts" and info["ivgen-alg"] == "plain64"
    qemu_io(path, key, "write -P 0x5a 0 1M")
    assert b"\x5a" * 4096 not in path.read_bytes()

    # the type's encryption is frozen while volumes of the type exist
    url = f"/types/{type_id}/encryption"
    cinder_error(a.put(f"{url}/{spec['encryption_id']}", {"encryption": {"key_size": 512}}), 400)
    cinder_error(a.delete(f"{url}/{spec['encryption_id']}"), 400)

    # what cannot stay encrypted is refused, nothing changed
    plain = a.post("/types", {"volume_type": {"name": "plain-x"}}).json()["volume_type"]
    cinder_error(alice.action(vol["id"], "os-retype", {"new_type": plain["id"]}), 400)
    cinder_error(alice.post("/os-volume-transfer", {"transfer": {"volume_id": vol["id"]}}), 400)
    raw_image = {"image_name": "x", "disk_format": "raw"}
    cinder_error(alice.action(vol["id"], "os-volume_upload_image", raw_image), 400)
    plain_copy = {"source_volid": vol["id"], "volume_type": "plain-x"}
    cinder_error(alice.post("/volumes", {"volume": plain_copy}), 400)
    assert alice.show(vol["id"])["volume_type"] == "luks-gold"
    assert alice.show(vol["id"])["status"] == "available"

    # a snapshot is LUKS under the volume's key
    snap = alice.snapshot(vol["id"])
    assert snap["status"] == "available"
    snap_path = backend.snapshot_path(snap["id"])
    assert luks_info(snap_path)["format"] == "luks"
    assert "read 1048576/1048576" in qemu_io(snap_path, key, "read -P 0x5a 0 1M")

    # with [encryption] mandatory even a plain type's new volume is LUKS, under its own key
    cloud.platform.volume.shared.encryption_mandatory = True
    try:
        copy = alice.create(snapshot_id=snap["id"], size=2, volume_type="plain-x")
    finally:
        cloud.platform.volume.shared.encryption_mandatory = False
    assert copy["status"] == "available" and copy["encrypted"] is True, copy
    copy_key_id = alice.show(copy["id"])["encryption_key_id"]
    assert copy_key_id != key_id
    copy_key = secret_of(cloud, alice.project_id, copy_key_id)
    copy_path = backend.volume_path(copy["id"])
    assert "read 1048576/1048576" in qemu_io(copy_path, copy_key, "read -P 0x5a 0 1M")
    assert alice.action(copy["id"], "os-extend", {"new_size": 3}).status_code == 202
    assert alice.show(copy["id"])["size"] == 3

    # an image of it stays LUKS, under a key of its own named as Cinder names it
    body = {"image_name": "sealed", "disk_format": "qcow2", "container_format": "bare"}
    done = alice.action(vol["id"], "os-volume_upload_image", body)
    assert done.status_code == 202, done.text
    image_id = done.json()["os-volume_upload_image"]["image_id"]
    image = cloud.platform.image.get(alice.ctx(), image_id)
    image_key_id = image["cinder_encryption_key_id"]
    assert image_key_id not in (key_id, copy_key_id) and image["status"] == "active"
    image_file = cloud.platform.image.image_for_boot(alice.ctx(), image_id).path
    assert image_file is not None and luks_info(image_file)["format"] == "luks"
    image_key = secret_of(cloud, alice.project_id, image_key_id)
    assert "read 1048576/1048576" in qemu_io(image_file, image_key, "read -P 0x5a 0 1M")

    # a volume whose key is gone is not attached (and stays available)
    keys = cloud.platform.project_keys
    assert keys is not None
    keys.delete_secret_key(alice.project_id, copy_key_id)
    with pytest.raises(BadRequest):
        cloud.platform.volume.reserve(alice.ctx(), copy["id"], str(uuid.uuid4()))
    assert alice.show(copy["id"])["status"] == "available"

    # delete: the key goes with the last volume or snapshot naming it
    assert alice.delete(f"/volumes/{copy['id']}").status_code == 202
    assert key_gone(cloud, alice.project_id, copy_key_id)
    cinder_error(alice.delete(f"/volumes/{vol['id']}"), 400)  # its snapshot first
    assert not key_gone(cloud, alice.project_id, key_id)
    assert consumers_of(cloud, alice.project_id, key_id) == [volume_use]
    assert consumers_of(cloud, alice.project_id, image_key_id) == []
    assert alice.delete(f"/volumes/{vol['id']}?cascade=true").status_code == 202
    assert key_gone(cloud, alice.project_id, key_id)
    assert not path.exists() and not snap_path.exists() and not copy_path.exists()
    assert not key_gone(cloud, alice.project_id, image_key_id)  # the image's, kept

    # Glance deletes the image's key with the image, as Cinder's property asks; another
    # project's attempt deletes neither
    assert image["cinder_encryption_key_deletion_policy"] == "on_image_deletion"
    url = f"/image/v2/images/{image_id}"
    assert cloud.client.delete(url, headers={"X-Auth-Token": bob.token}).status_code == 404
    assert not key_gone(cloud, alice.project_id, image_key_id)
    assert cloud.client.delete(url, headers={"X-Auth-Token": alice.token}).status_code == 204
    assert key_gone(cloud, alice.project_id, image_key_id)


@pytest.mark.one_backend("sqlite")  # the bytes and the keys are its subject, not the database
def test_encrypted_volume_backups_hold_ciphertext_and_own_their_keys(cloud: Cloud) -> None:
    """Cinder's way: the backup is the volume's ciphertext, under a clone of its key that the
    backup owns; restores get clones of their own; the objects hold no plaintext (three
    LUKS headers made in all: the volume, the restore's new volume, the existing target)."""
    a, alice, bob = admin(cloud), tenant(cloud), tenant(cloud)
    reader = cloud.member(role="reader", project_id=alice.project_id)
    alice_reader = Cinder(cloud, reader.token, reader.project_id, reader.id)
    type_id, _ = encrypted_type(a, "luks-backup")
    backend = cloud.platform.volume.backend
    vol = alice.create(volume_type="luks-backup", size=1)
    key_id = alice.show(vol["id"])["encryption_key_id"]
    key = secret_of(cloud, alice.project_id, key_id)
    path = backend.volume_path(vol["id"])
    qemu_io(path, key, "write -P 0x5a 0 1M")
    qemu_io(path, key, "write -P 0x11 1M 1M")

    full = backup(alice, vol["id"])
    assert full["status"] == "available" and full["object_count"] == 1, full
    full_key = full["encryption_key_id"]
    assert full_key not in (None, key_id) and secret_of(cloud, alice.project_id, full_key) == key
    with pytest.raises(KeyNotFound):  # the backup's key is its project's
        secret_of(cloud, bob.project_id, full_key)
    alice.version = "3.63"
    assert "encryption_key_id" not in show(alice, full["id"])
    alice.version = "3.70"

    qemu_io(path, key, "write -P 0x6b 0 1M")
    incr = backup(alice, vol["id"], incremental=True)
    assert incr["status"] == "available" and incr["is_incremental"] is True
    assert incr["encryption_key_id"] not in (full_key, key_id)

    # what the object store holds is ciphertext: no run of any pattern the volume holds
    objects = cloud.platform.volume.backups.objects
    keys = {c for row_id in (full["id"], incr["id"]) for _, c in backup_row(cloud, row_id).chunks}
    stored = [zlib.decompress(objects.get(full["container"], c)) for c in sorted(keys) if c]
    assert len(stored) == 2 and stored[0].startswith(b"QFI\xfb")  # the LUKS qcow2 itself
    for data in stored:
        for pattern in (b"\x5a", b"\x11", b"\x6b"):
            assert pattern * 4096 not in data

    # another project cannot restore it, a reader may not; a plain volume cannot take it
    cinder_error(bob.post(f"/backups/{full['id']}/restore", {"restore": {}}), 404)
    cinder_error(alice_reader.post(f"/backups/{full['id']}/restore", {"restore": {}}), 403)
    plain = alice.create(size=1)
    onto_plain = {"restore": {"volume_id": plain["id"]}}
    cinder_error(alice.post(f"/backups/{full['id']}/restore", onto_plain), 400)
    assert alice.show(plain["id"])["status"] == "available"
    assert show(alice, full["id"])["status"] == "available"

    # to a new volume: the backup's type, a clone of the backup's key, the latest bytes
    restored = alice.post(f"/backups/{incr['id']}/restore", {"restore": {}})
    assert restored.status_code == 202, restored.text
    settle(alice, incr["id"])
    new = alice.show(restored.json()["restore"]["volume_id"])
    assert new["status"] == "available" and new["volume_type"] == "luks-backup", new
    new_key = secret_of(cloud, alice.project_id, new["encryption_key_id"])
    assert new["encryption_key_id"] not in (key_id, incr["encryption_key_id"]) and new_key == key
    new_path = backend.volume_path(new["id"])
    assert "read 1048576/1048576" in qemu_io(new_path, new_key, "read -P 0x6b 0 1M")
    assert "read 1048576/1048576" in qemu_io(new_path, new_key, "read -P 0x11 1M 1M")

    # onto an existing volume of the type, bigger: its key replaced by a clone, the old gone
    target = alice.create(volume_type="luks-backup", size=2)
    old_key_id = alice.show(target["id"])["encryption_key_id"]
    onto = alice.post(f"/backups/{full['id']}/restore", {"restore": {"volume_id": target["id"]}})
    assert onto.status_code == 202, onto.text
    settle(alice, full["id"])
    shown = alice.show(target["id"])
    assert shown["status"] == "available" and shown["size"] == 2, shown
    assert shown["encryption_key_id"] not in (old_key_id, full_key)
    assert key_gone(cloud, alice.project_id, old_key_id)
    assert consumers_of(cloud, alice.project_id, shown["encryption_key_id"]) == [
        {"service": "volume", "resource_type": "volume", "resource_id": target["id"]}
    ]  # the volume uses its new key
    assert consumers_of(cloud, alice.project_id, full_key) == []  # a backup's: no consumer
    target_key = secret_of(cloud, alice.project_id, shown["encryption_key_id"])
    target_path = backend.volume_path(target["id"])
    assert "read 1048576/1048576" in qemu_io(target_path, target_key, "read -P 0x5a 0 1M")
    assert luks_info(target_path)["format"] == "luks"

    # deleting a backup deletes its key; the volumes' keys stay
    assert alice.delete(f"/backups/{incr['id']}").status_code == 202
    assert alice.delete(f"/backups/{full['id']}").status_code == 202
    assert key_gone(cloud, alice.project_id, incr["encryption_key_id"])
    assert key_gone(cloud, alice.project_id, full_key)
    assert not key_gone(cloud, alice.project_id, key_id)
    for volume in (vol, plain, new, target):
        assert alice.delete(f"/volumes/{volume['id']}").status_code == 202
    assert a.delete(f"/types/{type_id}").status_code == 202


def backup_row(cloud: Cloud, backup_id: str) -> m.VolumeBackup:
    with cloud.platform.db.session() as s:
        row = s.get(m.VolumeBackup, backup_id)
        assert row is not None
        s.expunge(row)
        return row
