"""Project key-encryption keys (KEKs): one active 256-bit KEK per project, created on first
use, stored only wrapped by the root of trust with the root key's version beside it, and
the data keys they wrap. Plaintext KEKs live in this process's memory only, by KEK id; a
KEK's id never changes, so a rotation elsewhere never makes a cached one wrong."""

from __future__ import annotations

import threading

from sqlalchemy import select, update
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
            row = s.scalars(
                select(ProjectKek).where(
                    ProjectKek.project_id == project_id, ProjectKek.state == ACTIVE
                )
            ).first()
            if row is not None:
                return row.id, self._open(row)
        return self._create(project_id)

    def _create(self, project_id: str) -> tuple[str, bytes]:
        key = sealing.new_key()
        kek_id = new_id()
        version, wrapped = self.root.wrap(key)
        try:
            with self.db.session() as s:
                # one active KEK a project: a concurrent first use loses and takes the winner's
                winner = s.scalars(
                    select(ProjectKek)
                    .where(ProjectKek.project_id == project_id, ProjectKek.state == ACTIVE)
                    .with_for_update()
                ).first()
                if winner is None:
                    s.add(
                        ProjectKek(
                            id=kek_id,
                            project_id=project_id,
                            state=ACTIVE,
                            root_version=version,
                            wrapped=wrapped,
                            created_at=self.clock.now(),
                        )
                    )
        except IntegrityError:
            winner = None
        if winner is not None:
            return winner.id, self._open(winner)
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

    def rewrap_all(self, keep: str) -> int:
        """Rewrap every KEK not wrapped under root version `keep` under the current root
        key; the number rewrapped. Each row is one compare-and-set: a reader sees the old
        wrap or the new one, both open while the old root version lives."""
        done = 0
        with self.db.session() as s:
            ids = s.scalars(select(ProjectKek.id).where(ProjectKek.root_version != keep)).all()
        for kek_id in ids:
            with self.db.session() as s:
                row = s.get(ProjectKek, kek_id)
                if row is None:
                    continue
                key = _checked(self.root.unwrap(row.root_version, row.wrapped))
                version, wrapped = self.root.wrap(key)
                s.execute(
                    update(ProjectKek)
                    .where(ProjectKek.id == kek_id, ProjectKek.root_version == row.root_version)
                    .values(root_version=version, wrapped=wrapped)
                )
                done += 1
        return done

    def count_under(self, version: str) -> int:
        with self.db.session() as s:
            return len(
                s.scalars(select(ProjectKek.id).where(ProjectKek.root_version == version)).all()
            )

    def new_active(self, project_id: str) -> str:
        """Make a new active KEK for the project; the old one becomes `previous` (it still
        opens what it wrapped). The new KEK's id."""
        key = sealing.new_key()
        kek_id = new_id()
        version, wrapped = self.root.wrap(key)
        with self.db.session() as s:
            s.execute(
                update(ProjectKek)
                .where(ProjectKek.project_id == project_id, ProjectKek.state == ACTIVE)
                .values(state=PREVIOUS)
            )
            s.add(
                ProjectKek(
                    id=kek_id,
                    project_id=project_id,
                    state=ACTIVE,
                    root_version=version,
                    wrapped=wrapped,
                    created_at=self.clock.now(),
                )
            )
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
