"""Rotation without downtime, as `souverain kms rotate` runs it beside a serving cloud.

Root key: make a new root key current, rewrap every project KEK under it (each row one
compare-and-set; a second pass takes a KEK a server made under the old key meanwhile),
then retire the old root key once no KEK is wrapped under it. Project KEKs (`--projects`):
a new active KEK per project, every secret's data key rewrapped under it (the payload's
ciphertext unchanged); the previous KEKs stay, able to open the data keys the object store
and volumes keep beside their ciphertext (the key manager cannot list those). A running
server reads each wrap by its version, so every secret stays readable throughout."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from souverain.keymanager.service import KeyManagerService

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


def _each(what: str, items: Iterable[str], act: Callable[[str], bool], progress: Progress) -> int:
    listed = list(items)
    done = 0
    for n, item in enumerate(listed, 1):
        done += act(item)
        progress(what, n, len(listed))
    return done


def rotate(
    kms: KeyManagerService, projects: bool = False, progress: Progress | None = None
) -> RotationReport:
    """Rotate the root key (and with `projects`, every project's KEK); see the module."""
    step = progress or (lambda _what, _done, _total: None)
    keks, root = kms.core.keks, kms.root
    report = RotationReport(root.current_version(), root.rotate())
    for _ in range(2):  # the second pass: KEKs made meanwhile under the old root key
        pending = keks.ids_not_under(report.new_version)
        report.keks_rewrapped += _each("rewrapping project keys", pending, keks.rewrap, step)
    if keks.count_by_root_version().get(report.old_version, 0) == 0:
        root.retire(report.old_version)
        report.retired.append(report.old_version)
    if projects:
        rotated = _each("new project keys", keks.projects(), _new_kek(kms), step)
        report.projects_rotated = rotated
        pending = kms.secrets.ids_under_previous_keks()
        report.secrets_rewrapped = _each("rewrapping data keys", pending, kms.secrets.rewrap, step)
    return report


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


def status(kms: KeyManagerService) -> Status:
    keks = kms.core.keks
    return Status(
        kms.root.name,
        kms.root.current_version(),
        keks.count_by_root_version(),
        keks.count_by_state(),
        len(keks.projects()),
        kms.secrets.count(),
    )
