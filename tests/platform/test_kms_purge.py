"""Old key-manager keys deleted once nothing names them, on the master key file and on a
SoftHSM2 token: after `rotate --projects` rewraps every secret, the previous project KEKs
no secret and no stored data key names are deleted (after their grace) and the old root
keys retired, while every secret and stored data key still opens, in this process and in
another; and a secret created while a rotation runs never ends up under a deleted KEK."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from sqlalchemy import select

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from souverain.keymanager import rotation
from souverain.keymanager.file_root import FileRoot
from souverain.keymanager.keks import ProjectKeks
from souverain.keymanager.models import ProjectKek
from souverain.keymanager.pkcs11_root import open_pkcs11_root
from souverain.keymanager.root import RootOfTrust
from souverain.keymanager.secrets import SecretSpec
from souverain.keymanager.service import KeyManagerService
from tests.postgres import postgres_session, shared_server
from tests.softhsm import SoftHsmToken

__all__ = ["postgres_session"]

NO_GRACE = dt.timedelta(0)
CREATES = 8  # secrets each of three threads creates while rotations run


class HeldKeys:
    """The object store's part (`DataKeyHolder`): the data keys it keeps wrapped. Its real
    counterpart, objectstore/wrapped_keys.py, is tested on real objects in
    tests/api/test_s3_encryption.py."""

    def __init__(self) -> None:
        self.wrapped: list[bytes] = []

    def wrapped_key_heads(self, size: int) -> set[bytes]:
        return {w[:size] for w in self.wrapped}


@contextmanager
def migrated(url: str) -> Iterator[Database]:
    engine = make_engine(url)
    migrate.upgrade(engine)
    yield Database(engine)
    engine.dispose()


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    """A database of the test's own: a rotation takes every project's keys in it."""
    with migrated(f"sqlite:///{tmp_path / 'kms.db'}") as database:
        yield database


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_session: None,
) -> Iterator[tuple[Database, Path]]:
    """A database and master key file the race tests share (projects of their own), on
    SQLite and on PostgreSQL, where the row locks are what orders a create and a purge."""
    where = tmp_path_factory.mktemp("kms")
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{where / 'kms.db'}"
        else:
            url = stack.enter_context(shared_server().database())
        database = stack.enter_context(migrated(url))
        yield database, where / "master.key"


@pytest.fixture(params=["file", "pkcs11"])
def roots(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[list[RootOfTrust]]:
    """Two handles on one root of trust: the rotating process's and a serving one's."""
    if request.param == "file":
        path = tmp_path / "master.key"
        yield [FileRoot(path), FileRoot(path)]
        return
    token: SoftHsmToken = request.getfixturevalue("softhsm")
    opened = [open_pkcs11_root(token.settings()), open_pkcs11_root(token.settings())]
    yield opened
    for root in opened:
        root.close()


def member(project: str) -> RequestContext:
    return RequestContext("u1", "default", frozenset({"member"}), project_id=project)


def kek_states(db: Database, project_id: str) -> list[str]:
    with db.session() as s:
        query = select(ProjectKek.state).where(ProjectKek.project_id == project_id)
        return sorted(s.scalars(query).all())


def test_rotate_deletes_only_what_nothing_names_and_everything_stays_readable(
    db: Database, roots: list[RootOfTrust]
) -> None:
    now = [dt.datetime(2026, 12, 7, 3, 0, tzinfo=dt.UTC)]
    kms = KeyManagerService(db, roots[0], Clock(lambda: now[0]))
    serving = KeyManagerService(db, roots[1], Clock())
    ctx = member("p1")
    stored = {
        kms.secrets.create(ctx, SecretSpec(payload=b"opaque-1")).id: b"opaque-1",
        kms.project_keys.create_secret_key("p1", "u1", "volume-key"): None,
    }
    later = kms.secrets.create(ctx, SecretSpec(name="two-step")).id
    kms.secrets.put_payload(ctx, later, b"second-step", "text/plain")
    stored[later] = b"second-step"
    held = HeldKeys()
    data = kms.project_keys.new_data_key("p1")  # an SSE-S3 object's key, under the first KEK
    held.wrapped.append(data.wrapped)
    first_root = roots[0].current_version()

    def readable(kms: KeyManagerService) -> None:
        for secret_id, payload in stored.items():
            if payload is None:
                assert len(kms.project_keys.secret_key("p1", secret_id)) == 32
            else:
                assert kms.secrets.payload(ctx, secret_id)[1] == payload
        for wrapped in held.wrapped:
            assert len(kms.project_keys.open_data_key("p1", wrapped)) == 32

    report = rotation.rotate(kms, projects=True, holders=[held], grace=NO_GRACE)
    assert report.secrets_rewrapped == 3 and report.keks_deleted == 0  # the object's KEK stays
    assert report.retired == [first_root] and roots[0].versions() == [report.new_version]
    assert kek_states(db, "p1") == ["active", "previous"]
    readable(kms)
    readable(serving)

    held.wrapped.clear()  # the object was deleted: its KEK is named by nothing now
    now[0] += dt.timedelta(minutes=5)
    report = rotation.rotate(kms, projects=True, holders=[held])  # within the default grace
    assert report.keks_deleted == 0 and kek_states(db, "p1") == ["active", "previous", "previous"]
    status = rotation.status(kms, [held])
    assert status.unnamed_previous_keks == 2 and status.root_versions == [report.new_version]

    now[0] += rotation.DEFAULT_GRACE
    report = rotation.rotate(kms, holders=[held])  # the root key only; the grace has passed
    assert report.keks_deleted == 2 and kek_states(db, "p1") == ["active"]
    assert rotation.status(kms, [held]).unnamed_previous_keks == 0
    assert roots[1].versions() == [report.new_version]
    readable(kms)
    readable(serving)
    readable(KeyManagerService(db, roots[1], Clock()))  # nothing cached: all from the database


def test_a_secret_sealed_before_a_rotation_and_committed_after_it_is_resealed(
    shared: tuple[Database, Path],
) -> None:
    """The race, in its worst order: the create has sealed its data key under the active
    KEK; a whole `rotate --projects` with its purge runs before the create commits."""
    db, path = shared
    kms = KeyManagerService(db, FileRoot(path), Clock())
    ctx = member("race")
    kms.secrets.create(ctx, SecretSpec(payload=b"first"))
    keks = kms.core.keks
    original = keks.wrap_data_key
    rotations: list[rotation.RotationReport] = []

    def wrap_then_rotate(project_id: str, data_key: bytes, purpose: str) -> tuple[str, bytes]:
        wrapped = original(project_id, data_key, purpose)
        if keks.wrap_data_key is wrap_then_rotate:  # once, and not in the rotation's rewraps
            keks.wrap_data_key = original  # type: ignore[method-assign]
            rotations.append(rotation.rotate(kms, projects=True, grace=NO_GRACE))
        return wrapped

    keks.wrap_data_key = wrap_then_rotate  # type: ignore[method-assign]
    made = kms.secrets.create(ctx, SecretSpec(payload=b"made-during-rotation"))
    assert rotations[0].keks_deleted == 1  # the KEK the create first sealed under is gone
    fresh = KeyManagerService(db, FileRoot(path), Clock())
    assert fresh.secrets.payload(ctx, made.id)[1] == b"made-during-rotation"


def test_secrets_created_while_rotations_run_all_stay_readable(
    shared: tuple[Database, Path],
) -> None:
    db, path = shared
    rotating = KeyManagerService(db, FileRoot(path), Clock())
    creating = [KeyManagerService(db, FileRoot(path), Clock()) for _ in range(3)]
    ctx = member("busy")
    made: dict[str, bytes] = {}
    failures: list[BaseException] = []

    def create(kms: KeyManagerService, n: int) -> None:
        try:
            for i in range(CREATES):
                payload = f"busy-{n}-{i}".encode()
                made[kms.secrets.create(ctx, SecretSpec(payload=payload)).id] = payload
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    rotating.secrets.create(ctx, SecretSpec(payload=b"before"))
    threads = [threading.Thread(target=create, args=(k, n)) for n, k in enumerate(creating)]
    for thread in threads:
        thread.start()
    rotations = 0
    while any(t.is_alive() for t in threads) or rotations < 2:
        rotation.rotate(rotating, projects=True, grace=NO_GRACE)
        rotations += 1
    for thread in threads:
        thread.join()
    assert not failures, failures
    rotation.rotate(rotating, projects=True, grace=NO_GRACE)
    assert kek_states(db, "busy") == ["active"]  # every secret ended under the active KEK
    reader = KeyManagerService(db, FileRoot(path), Clock())
    assert len(made) == CREATES * len(creating)
    for secret_id, payload in made.items():
        assert reader.secrets.payload(ctx, secret_id)[1] == payload


def test_a_kek_a_secret_still_names_is_never_deleted(shared: tuple[Database, Path]) -> None:
    db, path = shared
    kms = KeyManagerService(db, FileRoot(path), Clock())
    made = kms.secrets.create(member("kept"), SecretSpec(payload=b"kept"))
    old = kms.core.keks.active("kept")[0]
    kms.core.keks.new_active("kept")  # a rotation that has not rewrapped yet
    assert not kms.core.keks.delete_if_unnamed(old, set())
    assert kms.core.keks.delete_if_unnamed(kms.core.keks.active("kept")[0], set()) is False
    with db.session() as s:
        assert not ProjectKeks.still_active(s, old)
    assert kms.secrets.payload(member("kept"), made.id)[1] == b"kept"
