"""Rotation without downtime, as `souverain kms rotate` runs it beside a serving cloud.

Root key: make a new root key current, rewrap every project KEK under it (each row one
compare-and-set; a second pass takes a KEK a server made under the old key meanwhile),
then retire the old root key once no KEK is wrapped under it. Project KEKs (`--projects`):
a new active KEK per project, every secret's data key rewrapped under it (the payload's
ciphertext unchanged); the previous KEKs stay, able to open the data keys the object store
keeps beside its ciphertext. A running server reads each wrap by its version, so every
secret stays readable throughout.

Purge (every run, after the above): a previous KEK that no secret and no data key a
`DataKeyHolder` keeps names any more is deleted, once it has been previous for `grace` (a
data key handed out just before the rotation may belong to an upload still under way,
whose row is not written yet); then every older root key no KEK is wrapped under is
retired. Nothing still named is ever deleted (keks.py says how a racing create is seen)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from souverain.common.clock import naive_utc
from souverain.common.keys import DataKeyHolder
from souverain.keymanager.project_keys import KEK_HEAD_BYTES, named_keks
from souverain.keymanager.service import KeyManagerService

# how long a previous KEK is kept after a rotation even when nothing names it yet
DEFAULT_GRACE = dt.timedelta(hours=1)

# (what, done, total) after each step: the CLI draws its progress bars from it
Progress = Callable[[str, int, int], None]


@dataclass
class RotationReport:
    old_version: str
    new_version: str
    keks_rewrapped: int = 0
    retired: list[str] = field(default_factory=list)
    projects_rotated: int = 0
    secrets_rewrapped: int = 0
    keks_deleted: int = 0


def _each(what: str, items: Iterable[str], act: Callable[[str], bool], progress: Progress) -> int:
    listed = list(items)
    done = 0
    for n, item in enumerate(listed, 1):
        done += act(item)
        progress(what, n, len(listed))
    return done


def rotate(
    kms: KeyManagerService,
    projects: bool = False,
    progress: Progress | None = None,
    holders: Sequence[DataKeyHolder] = (),
    grace: dt.timedelta = DEFAULT_GRACE,
) -> RotationReport:
    """Rotate the root key (and with `projects`, every project's KEK), then purge what
    nothing names; see the module."""
    step = progress or (lambda _what, _done, _total: None)
    keks, root = kms.core.keks, kms.root
    report = RotationReport(root.current_version(), root.rotate())
    for _ in range(2):  # the second pass: KEKs made meanwhile under the old root key
        pending = keks.ids_not_under(report.new_version)
        report.keks_rewrapped += _each("rewrapping project keys", pending, keks.rewrap, step)
    if projects:
        rotated = _each("new project keys", keks.projects(), _new_kek(kms), step)
        report.projects_rotated = rotated
        pending = kms.secrets.ids_under_previous_keks()
        report.secrets_rewrapped = _each("rewrapping data keys", pending, kms.secrets.rewrap, step)
    report.keks_deleted = purge_keks(kms, holders, grace, step)
    report.retired = retire_unused_roots(kms)
    return report


def named_by_holders(holders: Sequence[DataKeyHolder]) -> set[str]:
    """The KEKs the services' stored data keys name."""
    return named_keks(head for h in holders for head in h.wrapped_key_heads(KEK_HEAD_BYTES))


def purge_keks(
    kms: KeyManagerService,
    holders: Sequence[DataKeyHolder],
    grace: dt.timedelta,
    progress: Progress,
) -> int:
    """Delete the previous KEKs, retired at least `grace` ago, that nothing names."""
    keks = kms.core.keks
    candidates = keks.previous_ids(naive_utc(kms.core.clock.now()) - grace)
    if not candidates:
        return 0
    elsewhere = named_by_holders(holders)  # read after the candidates: a later name is fresher

    def act(kek_id: str) -> bool:
        return keks.delete_if_unnamed(kek_id, elsewhere)

    return _each("deleting unused project keys", candidates, act, progress)


def retire_unused_roots(kms: KeyManagerService) -> list[str]:
    """Retire every root key but the current one that no KEK is wrapped under; a KEK a
    server is making under one meanwhile rewraps itself (`ProjectKeks._settle`)."""
    root, keks = kms.root, kms.core.keks
    current = root.current_version()
    retired: list[str] = []
    for version in root.versions():
        if version != current and keks.count_by_root_version().get(version, 0) == 0:
            root.retire(version)
            retired.append(version)
    return retired


def _new_kek(kms: KeyManagerService) -> Callable[[str], bool]:
    def act(project_id: str) -> bool:
        kms.core.keks.new_active(project_id)
        return True

    return act


@dataclass(frozen=True)
class Status:
    root: str
    current_version: str
    keks_by_root_version: dict[str, int]
    keks_by_state: dict[str, int]
    projects: int
    secrets: int
    root_versions: list[str]
    unnamed_previous_keks: int  # deleted by the next rotate once their grace has passed


def status(kms: KeyManagerService, holders: Sequence[DataKeyHolder] = ()) -> Status:
    keks = kms.core.keks
    named = kms.secrets.named_keks() | named_by_holders(holders)
    previous = keks.previous_ids(dt.datetime.max)
    return Status(
        kms.root.name,
        kms.root.current_version(),
        keks.count_by_root_version(),
        keks.count_by_state(),
        len(keks.projects()),
        kms.secrets.count(),
        kms.root.versions(),
        len(set(previous) - named),
    )
