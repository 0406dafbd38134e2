"""The key manager's envelope built directly, without HTTP: the file root (created 0600,
rotation, retirement, a second process seeing a rotation), project KEKs made on first use
and stored wrapped, secret payloads sealed per secret, ProjectKeys' data keys for both
cases, and tampering of every layer detected."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select, update

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.keys import KeyNotFound, KeyUnavailable
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from souverain.keymanager import rotation
from souverain.keymanager.file_root import FileRoot
from souverain.keymanager.models import ProjectKek, Secret
from souverain.keymanager.secrets import SecretSpec
from souverain.keymanager.service import KeyManagerService

PAYLOAD = b"the-envelope-payload-7d1f"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    """One migrated database for the module (each test uses its own projects)."""
    engine = make_engine(f"sqlite:///{tmp_path_factory.mktemp('kms') / 'kms.db'}")
    migrate.upgrade(engine)
    yield Database(engine)
    engine.dispose()


@pytest.fixture(scope="module")
def root_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module's master key file: every KEK in the module's database is under it."""
    return tmp_path_factory.mktemp("root") / "master.key"


@pytest.fixture
def kms(db: Database, root_file: Path) -> KeyManagerService:
    return KeyManagerService(db, FileRoot(root_file), Clock())


def member(project: str, user: str = "u1") -> RequestContext:
    return RequestContext(user, "default", frozenset({"member"}), project_id=project)


def test_file_root_is_private_warns_and_rotates_without_losing_old_wraps(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "keys" / "master.key"
    root = FileRoot(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert "not an HSM" in caplog.text
    key = os.urandom(32)
    v1, wrapped = root.wrap(key)
    assert key not in path.read_bytes() and key not in wrapped
    other = FileRoot(path)  # another process: it follows the file
    v2 = root.rotate()
    assert v2 != v1 and other.current_version() == v2
    assert other.unwrap(v1, wrapped) == key
    root.retire(v1)
    with pytest.raises(KeyUnavailable):
        other.unwrap(v1, wrapped)
    with pytest.raises(ValueError):
        root.retire(v2)


def test_file_root_detects_a_tampered_wrap(tmp_path: Path) -> None:
    root = FileRoot(tmp_path / "master.key")
    version, wrapped = root.wrap(os.urandom(32))
    flipped = wrapped[:-1] + bytes([wrapped[-1] ^ 1])
    with pytest.raises(ValueError):
        root.unwrap(version, flipped)


def test_secret_payload_is_sealed_under_a_wrapped_project_kek(
    kms: KeyManagerService, db: Database
) -> None:
    ctx = member("p1")
    record = kms.secrets.create(ctx, SecretSpec(payload=PAYLOAD, content_type="text/plain"))
    assert kms.secrets.payload(ctx, record.id)[1] == PAYLOAD
    with db.session() as s:
        row = s.get(Secret, record.id)
        assert row is not None and row.ciphertext is not None
        assert PAYLOAD not in row.ciphertext
        kek = s.scalars(select(ProjectKek).where(ProjectKek.project_id == "p1")).one()
        assert kek.root_version == "v1" and len(kek.wrapped) == 12 + 32 + 16
    # the ciphertext moved onto another secret does not open (bound to its id)
    other = kms.secrets.create(ctx, SecretSpec(payload=b"x" * 8))
    with db.session() as s:
        s.execute(update(Secret).where(Secret.id == other.id).values(ciphertext=row.ciphertext))
    with pytest.raises(ValueError):
        kms.secrets.payload(ctx, other.id)


def test_project_keys_sse_s3_and_sse_kms_and_isolation(kms: KeyManagerService) -> None:
    keys = kms.project_keys
    data = keys.new_data_key("q1")
    assert len(data.plaintext) == 32 and data.plaintext not in data.wrapped
    assert keys.open_data_key("q1", data.wrapped) == data.plaintext
    with pytest.raises(KeyNotFound):
        keys.open_data_key("q2", data.wrapped)  # another project's KEK
    tampered = data.wrapped[:-1] + bytes([data.wrapped[-1] ^ 1])
    with pytest.raises(KeyNotFound):
        keys.open_data_key("q1", tampered)
    key_id = keys.create_secret_key("q1", "u1", "volume-key")
    assert len(keys.secret_key("q1", key_id)) == 32
    with pytest.raises(KeyNotFound):
        keys.secret_key("q2", key_id)
    sse_kms = keys.new_data_key("q1", key_id)
    assert keys.open_data_key("q1", sse_kms.wrapped) == sse_kms.plaintext
    with pytest.raises(KeyNotFound):
        keys.new_data_key("q2", key_id)
    with pytest.raises(KeyNotFound):
        keys.open_data_key("q2", sse_kms.wrapped)
    keys.delete_secret_key("q1", key_id)
    keys.delete_secret_key("q1", key_id)  # already gone is not an error
    with pytest.raises(KeyNotFound):
        keys.open_data_key("q1", sse_kms.wrapped)
    opaque = kms.secrets.create(member("q1"), SecretSpec(payload=b"not a key"))
    with pytest.raises(KeyNotFound):
        keys.new_data_key("q1", opaque.id)
    with pytest.raises(KeyNotFound):
        keys.open_data_key("q1", b"garbage")


def test_rotation_keeps_secrets_and_data_keys_readable(db: Database, root_file: Path) -> None:
    root = FileRoot(root_file)
    kms = KeyManagerService(db, root, Clock())
    serving = KeyManagerService(db, FileRoot(root_file), Clock())
    ctx = member("r1")
    record = kms.secrets.create(ctx, SecretSpec(payload=PAYLOAD))
    data = kms.project_keys.new_data_key("r1")
    before = rotation.status(kms)
    report = rotation.rotate(kms, projects=True)
    assert report.retired == [before.current_version] and report.keks_rewrapped >= 1
    assert report.projects_rotated >= 1 and report.secrets_rewrapped >= 1
    after = rotation.status(kms)
    assert set(after.keks_by_root_version) == {report.new_version}
    assert after.keks_by_state["previous"] >= 1
    # another process (a running server, its KEKs cached or not) still reads everything
    for reader in (serving, KeyManagerService(db, FileRoot(root.path), Clock())):
        assert reader.secrets.payload(ctx, record.id)[1] == PAYLOAD
        assert reader.project_keys.open_data_key("r1", data.wrapped) == data.plaintext
    with db.session() as s:
        row = s.get(Secret, record.id)
        active = s.scalars(
            select(ProjectKek.id).where(ProjectKek.project_id == "r1", ProjectKek.state == "active")
        ).one()
        assert row is not None and row.kek_id == active
    with pytest.raises(KeyUnavailable):  # the old root key is gone from the file
        root.unwrap(before.current_version, b"\0" * 60)


def test_concurrent_first_uses_agree_on_one_project_kek(db: Database, root_file: Path) -> None:
    services = [KeyManagerService(db, FileRoot(root_file), Clock()) for _ in range(4)]
    start = threading.Barrier(len(services))
    found: list[str] = []

    def first_use(kms: KeyManagerService) -> None:
        start.wait()
        found.append(kms.core.keks.active("c1")[0])

    threads = [threading.Thread(target=first_use, args=(k,)) for k in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    with db.session() as s:
        rows = s.scalars(select(ProjectKek).where(ProjectKek.project_id == "c1")).all()
    assert len(rows) == 1 and set(found) == {rows[0].id}
