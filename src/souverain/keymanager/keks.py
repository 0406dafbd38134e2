"""Project key-encryption keys (KEKs): one active 256-bit KEK per project, created on first
use, stored only wrapped by the root of trust with the root key's version beside it, and
the data keys they wrap. Plaintext KEKs live in this process's memory only, by KEK id; a
KEK's id never changes, so a rotation elsewhere never makes a cached one wrong."""

from __future__ import annotations

import threading

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from souverain.common.clock import Clock
from souverain.common.ids import new_id
from souverain.common.keys import KeyNotFound
from souverain.db.engine import Database
from souverain.keymanager import sealing
from souverain.keymanager.models import ProjectKek
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
        return kek_id, key

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
                .values(state=PREVIOUS, active_for=None)
            )
            s.add(self._active_row(project_id, kek_id, version, wrapped))
        with self._lock:
            self._cache[kek_id] = key
        return kek_id

    def projects(self) -> list[str]:
        with self.db.session() as s:
            return sorted(set(s.scalars(select(ProjectKek.project_id)).all()))


def _checked(opened: bytes) -> bytes:
    """A root wrap carries the KEK alone; its binding to a project and id comes from the
    associated data of every data key sealed under it."""
    if len(opened) != sealing.KEY_BYTES:
        raise ValueError("a project key of the wrong length")
    return opened
