"""Encrypted volume files: qcow2 with QEMU's own LUKS encryption (`encrypt.format=luks`),
made, copied, grown and exported by `qemu-img` with the passphrase handed over a pipe.

The passphrase (the hex of the key-manager secret's bytes, as os-brick derives it) reaches
qemu-img as `--object secret,file=/dev/fd/N`: N is the read end of a pipe this process wrote
and closed before the call, so the passphrase is never in argv (visible in /proc to every
user), never in the environment, never in a file. Nothing here logs, raises or returns it.
Files are published as `backend.VolumeBackend` publishes its own (tmp, fsync, rename).
This module knows nothing of rows, keys or tenancy; LUKS on RBD is `luks_rbd.py`, which
runs its qemu-img calls through `run_step` here.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from souverain.volume.backend import (
    COPY_TIMEOUT,
    GIB,
    QUICK_TIMEOUT,
    BackendError,
    VolumeBackend,
    _fsync_file,
    _without_paths,
    publish,
)

# The passphrase is a random 256-bit key, not a password a person chose: key stretching adds
# nothing to it, and each open (every attach, every copy) would pay QEMU's 2 s default.
ITER_TIME_MS = 10
CALIBRATION_FAILED = "Unable to get accurate CPU usage"
CALIBRATION_ATTEMPTS = 3


@dataclass(frozen=True)
class LuksSpec:
    """How a new LUKS volume is encrypted: Cinder's `aes-xts-plain64` with `key_size` bits of
    XTS key (two AES keys of half the size each, as dm-crypt reads it)."""

    key_size: int = 256

    def create_options(self, secret_id: str) -> str:
        """`-o` of a LUKS-encrypted qcow2."""
        options = self.luks_options(secret_id).split(",")
        return ",".join(("encrypt.format=luks", *(f"encrypt.{o}" for o in options)))

    def luks_options(self, secret_id: str) -> str:
        """`-o` of a bare LUKS container (`-f luks`, what an RBD image holds)."""
        return ",".join(
            (
                f"key-secret={secret_id}",
                f"cipher-alg=aes-{self.key_size // 2}",
                "cipher-mode=xts",
                "ivgen-alg=plain64",
                f"iter-time={ITER_TIME_MS}",
            )
        )


@dataclass(frozen=True, repr=False)
class Passphrase:
    """A volume's LUKS passphrase; its repr and str never show it."""

    text: str = field(repr=False)

    @classmethod
    def of_key(cls, key: bytes) -> Passphrase:
        """os-brick's derivation: the lower-case hex of the key's bytes."""
        return cls(key.hex())

    def __str__(self) -> str:
        return "<passphrase>"

    __repr__ = __str__


class LuksFiles:
    """LUKS-in-qcow2 volume and snapshot files, beside the plain ones of `files`."""

    def __init__(self, files: VolumeBackend) -> None:
        self.files = files

    def make_blank(
        self, volume_id: str, size_gib: int, spec: LuksSpec, passphrase: Passphrase
    ) -> None:
        final = self.files.volume_path(volume_id)
        tmp = self.files.temp_path()
        create = Step(
            ["create", "-q", "-f", "qcow2"],
            (passphrase,),
            ["-o", spec.create_options("sec0"), str(tmp), f"{size_gib}G"],
        )
        self._publish(tmp, final, [create], QUICK_TIMEOUT)

    def copy(
        self,
        source: Path,
        source_format: str,
        source_key: Passphrase | None,
        final: Path,
        size_gib: int,
        spec: LuksSpec,
        passphrase: Passphrase,
        shared: bool = False,
    ) -> None:
        """A LUKS copy of `source` (plain in `source_format`, or LUKS qcow2 under
        `source_key`) at `final`, under `passphrase`, grown to `size_gib`. `shared`: the
        source is attached to a guest whose writes the caller holds."""
        if self.files.virtual_size(source, source_format, True) > size_gib * GIB:
            raise BackendError(f"The source does not fit in a volume of {size_gib} GiB.")
        tmp = self.files.temp_path()
        keys = (passphrase,) if source_key is None else (passphrase, source_key)
        rest = ["-U"] if shared else []
        rest += _source_args(source, source_format, source_key is not None)
        rest += ["-O", "qcow2", "-o", spec.create_options("sec0"), str(tmp)]
        steps = [Step(["convert", "-q"], keys, rest), _resize(tmp, size_gib, passphrase)]
        self._publish(tmp, final, steps, COPY_TIMEOUT)

    def grow(self, path: Path, size_gib: int, passphrase: Passphrase) -> None:
        """Grow a detached LUKS volume in place."""
        self._run(_resize(path, size_gib, passphrase), QUICK_TIMEOUT)
        _fsync_file(path)

    def export(self, source: Path, source_key: Passphrase, out: Path, out_key: Passphrase) -> None:
        """A standalone LUKS qcow2 of the volume at `out` under another key (an image's)."""
        rest = [*_source_args(source, "qcow2", True), "-O", "qcow2"]
        rest += ["-o", LuksSpec(512).create_options("sec0"), str(out)]
        try:
            self._run(Step(["convert", "-q"], (out_key, source_key), rest), COPY_TIMEOUT)
            _fsync_file(out)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                out.unlink()
            raise

    # -------------------------------------------------------------- plumbing

    def _publish(self, tmp: Path, final: Path, steps: list[Step], timeout: float) -> None:
        def run_steps() -> None:
            for step in steps:
                self._run(step, timeout)

        publish(tmp, final, run_steps)

    def _run(self, step: Step, timeout: float) -> None:
        run_step(self.files.qemu_img, step, timeout)

    def adopt(self, source: Path, final: Path, size_gib: int, passphrase: Passphrase) -> None:
        """A LUKS qcow2 made elsewhere (a restored backup's bytes at `source`, taken) put at
        `final`, grown to `size_gib` under the passphrase its header opens with."""
        tmp = self.files.temp_path()

        def make() -> None:
            os.replace(source, tmp)
            self._run(_resize(tmp, size_gib, passphrase), QUICK_TIMEOUT)

        publish(tmp, final, make)

    def duplicate(self, source: Path, final: Path) -> None:
        """A byte copy of a detached (or paused and flushed) LUKS file: the same header, so
        the same key opens it (a snapshot's), and no new PBKDF to pay."""
        tmp = self.files.temp_path()
        publish(tmp, final, lambda: shutil.copyfile(source, tmp))


def run_step(
    qemu_img: str, step: Step, timeout: float, undo: Callable[[], None] | None = None
) -> None:
    """One qemu-img call with its keys over pipes; a `BackendError` naming no path or key.
    `undo` removes what a failed try left behind before the next (an RBD image `create`
    made before its header failed: a file is overwritten, an image name is taken)."""
    for attempt in range(CALIBRATION_ATTEMPTS):
        result = _run_once(qemu_img, step, timeout)
        if result.returncode == 0:
            return
        # QEMU times its PBKDF on the thread's CPU clock when it makes a LUKS header;
        # on a busy host that clock can read no progress at all, and qemu-img gives up
        if CALIBRATION_FAILED not in result.stderr or attempt + 1 == CALIBRATION_ATTEMPTS:
            break
        if undo is not None:
            undo()
    detail = result.stderr.strip().splitlines()[-1:] or ["no detail"]
    raise BackendError(f"qemu-img {step.command[0]} failed: {_without_paths(detail[0])}")


def _run_once(qemu_img: str, step: Step, timeout: float) -> subprocess.CompletedProcess[str]:
    with _secrets(step.keys) as (fds, objects):
        argv = [qemu_img, *step.command, *objects, *step.rest]
        try:
            return subprocess.run(  # a fixed argv, no shell; the secrets come over pipes
                argv,
                capture_output=True,
                timeout=timeout,
                stdin=subprocess.DEVNULL,
                check=False,
                text=True,
                pass_fds=tuple(fds),
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"},
            )
        except subprocess.TimeoutExpired:
            raise BackendError(
                f"qemu-img {step.command[0]} took longer than {timeout:.0f} s."
            ) from None


@dataclass(frozen=True)
class Step:
    """One qemu-img call: its command, the keys it reads (as `sec0`, `sec1`... in this
    order, each over a fresh pipe), and the arguments after them."""

    command: list[str]
    keys: tuple[Passphrase, ...]
    rest: list[str]


def _source_args(source: Path, source_format: str, encrypted: bool) -> list[str]:
    if not encrypted:
        return ["-f", source_format, str(source)]
    # a file name with a comma would be read as another option: ours are ids, checked
    if "," in str(source):
        raise BackendError("A volume file name cannot hold a comma.")
    return ["--image-opts", f"driver=qcow2,file.filename={source},encrypt.key-secret=sec1"]


def _resize(path: Path, size_gib: int, passphrase: Passphrase) -> Step:
    if "," in str(path):
        raise BackendError("A volume file name cannot hold a comma.")
    image = f"driver=qcow2,file.filename={path},encrypt.key-secret=sec0"
    return Step(["resize", "-q"], (passphrase,), ["--image-opts", image, f"{size_gib}G"])


@contextlib.contextmanager
def _secrets(keys: Sequence[Passphrase]) -> Iterator[tuple[list[int], list[str]]]:
    """One pipe per key, written and closed on our side: the read ends to pass to qemu-img
    and the `--object` arguments naming them (`sec0`, `sec1`...)."""
    fds: list[int] = []
    objects: list[str] = []
    try:
        for index, key in enumerate(keys):
            read, write = os.pipe()
            fds.append(read)
            try:
                os.write(write, key.text.encode("ascii"))  # 64 bytes: far below a pipe's buffer
            finally:
                os.close(write)
            objects += ["--object", f"secret,id=sec{index},format=raw,file=/dev/fd/{read}"]
        yield fds, objects
    finally:
        for fd in fds:
            os.close(fd)
