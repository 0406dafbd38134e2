"""Project key-encryption keys (KEKs): one active 256-bit KEK per project, created on first
use, stored only wrapped by the root of trust with the root key's version beside it, and
the data keys they wrap. Plaintext KEKs live in this process's memory only, by KEK id; a
KEK's id never changes, so a rotation elsewhere never makes a cached one wrong.

A KEK is deleted only once it is `previous` and nothing names it. What names a KEK commits
with a check that it is still active (`still_active`, a shared row lock) and the deletion
takes the row's exclusive lock before looking for names (`delete_if_unnamed`): whichever
commits second sees the other, so no secret is ever left under a deleted KEK."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Collection

from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from souverain.common.clock import Clock, naive_utc
from souverain.common.ids import new_id
from souverain.common.keys import KeyNotFound
from souverain.db.engine import Database
from souverain.keymanager import sealing
from souverain.keymanager.models import ProjectKek, Secret
from souverain.keymanager.root import RootOfTrust

ACTIVE = "active"
PREVIOUS = "previous"


def data_key_associated(project_id: str, kek_id: str, purpose: str) -> bytes:
    """Binds a data key wrapped under a KEK to its project and to what it encrypts."""
    return f"souverain-dek:{project_id}:{kek_id}:{purpose}".encode()


class ProjectKeks:
    """The projects' KEKs over one root of trust."""

    def __init__(self, db: Database, root: RootOfTrust, clock: Clock) -> None:
        self.db = db
        self.root = root
        self.clock = clock
        self._cache: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def active(self, project_id: str) -> tuple[str, bytes]:
        """(id, plaintext) of the project's active KEK, made on first use."""
        with self.db.session() as s:
            row = s.scalars(select(ProjectKek).where(ProjectKek.active_for == project_id)).first()
            if row is not None:
                return row.id, self._open(row)
        return self._create(project_id)

    def _active_row(self, project_id: str, kek_id: str, version: str, wrapped: bytes) -> ProjectKek:
        """The row of a project's new active KEK (`active_for` keeps it the only one)."""
        return ProjectKek(
            id=kek_id,
            project_id=project_id,
            state=ACTIVE,
            active_for=project_id,
            root_version=version,
            wrapped=wrapped,
            created_at=self.clock.now(),
        )

    def _create(self, project_id: str) -> tuple[str, bytes]:
        key = sealing.new_key()
        kek_id = new_id()
        version, wrapped = self.root.wrap(key)
        row = self._active_row(project_id, kek_id, version, wrapped)
        try:
            with self.db.session() as s:
                s.add(row)
        except IntegrityError:  # a concurrent first use won (`active_for` is unique)
            return self.active(project_id)
        with self._lock:
            self._cache[kek_id] = key
        self._settle(kek_id, key, version)
        return kek_id, key

    def _settle(self, kek_id: str, key: bytes, version: str) -> None:
        """A KEK wrapped under a root key that a rotation made old before the row committed
        (the rotation's passes may have run before it): rewrap it from the plaintext still
        in hand, so retiring that root key never strands it."""
        while version != self.root.current_version():
            old = version
            version, wrapped = self.root.wrap(key)
            with self.db.session() as s:
                s.execute(
                    update(ProjectKek)
                    .where(ProjectKek.id == kek_id, ProjectKek.root_version == old)
                    .values(root_version=version, wrapped=wrapped)
                )

    def key(self, project_id: str, kek_id: str) -> bytes:
        """The plaintext of the project's KEK `kek_id` (active or previous)."""
        with self._lock:
            cached = self._cache.get(kek_id)
        if cached is not None:
            return cached
        with self.db.session() as s:
            row = s.get(ProjectKek, kek_id)
            if row is None or row.project_id != project_id:
                raise KeyNotFound("The key that wrapped this data key does not exist.")
            return self._open(row)

    def _open(self, row: ProjectKek) -> bytes:
        with self._lock:
            cached = self._cache.get(row.id)
        if cached is not None:
            return cached
        opened = self.root.unwrap(row.root_version, row.wrapped)
        key = _checked(opened)
        with self._lock:
            self._cache[row.id] = key
        return key

    def wrap_data_key(self, project_id: str, data_key: bytes, purpose: str) -> tuple[str, bytes]:
        """(kek id, sealed data key) under the project's active KEK."""
        kek_id, kek = self.active(project_id)
        return kek_id, sealing.seal(kek, data_key, data_key_associated(project_id, kek_id, purpose))

    def unwrap_data_key(self, project_id: str, kek_id: str, sealed: bytes, purpose: str) -> bytes:
        kek = self.key(project_id, kek_id)
        return sealing.open_sealed(kek, sealed, data_key_associated(project_id, kek_id, purpose))

    # rotation (souverain kms rotate): the root key under the KEKs, and the KEKs themselves

    def ids_not_under(self, version: str) -> list[str]:
        """The KEKs wrapped under another root key than `version`."""
        with self.db.session() as s:
            query = select(ProjectKek.id).where(ProjectKek.root_version != version)
            return list(s.scalars(query).all())

    def rewrap(self, kek_id: str) -> bool:
        """Rewrap one KEK under the current root key: one compare-and-set, so a reader sees
        the old wrap or the new one, and both open while the old root version lives."""
        with self.db.session() as s:
            row = s.get(ProjectKek, kek_id)
            if row is None:
                return False
            key = _checked(self.root.unwrap(row.root_version, row.wrapped))
            version, wrapped = self.root.wrap(key)
            done = s.execute(
                update(ProjectKek)
                .where(ProjectKek.id == kek_id, ProjectKek.root_version == row.root_version)
                .values(root_version=version, wrapped=wrapped)
            )
            return bool(getattr(done, "rowcount", 0))

    def count_by_root_version(self) -> dict[str, int]:
        with self.db.session() as s:
            rows = s.execute(
                select(ProjectKek.root_version, func.count()).group_by(ProjectKek.root_version)
            ).all()
        return {version: int(n) for version, n in rows}

    def count_by_state(self) -> dict[str, int]:
        with self.db.session() as s:
            rows = s.execute(
                select(ProjectKek.state, func.count()).group_by(ProjectKek.state)
            ).all()
        return {state: int(n) for state, n in rows}

    def new_active(self, project_id: str) -> str:
        """Make a new active KEK for the project; the old one becomes `previous` (it still
        opens what it wrapped). The new KEK's id."""
        key = sealing.new_key()
        kek_id = new_id()
        version, wrapped = self.root.wrap(key)
        with self.db.session() as s:
            s.execute(
                update(ProjectKek)
                .where(ProjectKek.active_for == project_id)
                .values(state=PREVIOUS, active_for=None, retired_at=naive_utc(self.clock.now()))
            )
            s.add(self._active_row(project_id, kek_id, version, wrapped))
        with self._lock:
            self._cache[kek_id] = key
        self._settle(kek_id, key, version)
        return kek_id

    # what names a KEK, and deleting the ones nothing names

    @staticmethod
    def still_active(s: Session, kek_id: str) -> bool:
        """In the transaction that stores a data key wrapped under `kek_id`, after its row is
        written: whether the KEK is still active, holding a shared lock on it to the commit
        (PostgreSQL; SQLite's writer holds the database). False: seal again."""
        query = (
            select(ProjectKek.id)
            .where(ProjectKek.id == kek_id, ProjectKek.state == ACTIVE)
            .with_for_update(read=True)
        )
        return s.scalar(query) is not None

    def previous_ids(self, retired_before: dt.datetime) -> list[str]:
        """Previous KEKs retired before the time (or before retirement times were kept)."""
        with self.db.session() as s:
            query = select(ProjectKek.id).where(
                ProjectKek.state == PREVIOUS,
                or_(ProjectKek.retired_at.is_(None), ProjectKek.retired_at <= retired_before),
            )
            return list(s.scalars(query).all())

    def delete_if_unnamed(self, kek_id: str, named_elsewhere: Collection[str]) -> bool:
        """Delete a previous KEK that no secret names and that is not in `named_elsewhere`
        (the KEKs the services' stored data keys name): the row lock first, then the
        look for secrets in a statement of its own, so it sees any that committed meanwhile."""
        if kek_id in named_elsewhere:
            return False
        with self.db.session() as s:
            locked = s.scalar(
                select(ProjectKek.id)
                .where(ProjectKek.id == kek_id, ProjectKek.state == PREVIOUS)
                .with_for_update()
            )
            if locked is None:
                return False
            done = s.execute(
                delete(ProjectKek).where(
                    ProjectKek.id == kek_id,
                    ProjectKek.state == PREVIOUS,
                    ~exists().where(Secret.kek_id == kek_id),
                )
            )
            deleted = bool(getattr(done, "rowcount", 0))
        if deleted:
            with self._lock:
                self._cache.pop(kek_id, None)
        return deleted

    def projects(self) -> list[str]:
        with self.db.session() as s:
            return sorted(set(s.scalars(select(ProjectKek.project_id)).all()))


def _checked(opened: bytes) -> bytes:
    """A root wrap carries the KEK alone; its binding to a project and id comes from the
    associated data of every data key sealed under it."""
    if len(opened) != sealing.KEY_BYTES:
        raise ValueError("a project key of the wrong length")
    return opened
