"""A LUKS `create` whose PBKDF timing failed is tried again; on RBD the failed try had
already made the image, so what it left is removed first (CI once saw "rbd create: File
exists" on the second try). The qemu-img here is a stand-in script that behaves as QEMU's
rbd create does: the name is taken before the header's PBKDF is timed."""

from __future__ import annotations

from pathlib import Path

import pytest

from souverain.volume.backend import BackendError
from souverain.volume.luks import CALIBRATION_FAILED, Passphrase, Step, run_step

IMAGE_CREATE = """#!/bin/sh
# every argument after the secrets' objects is ignored; the state is two files
state="{state}"
if [ -e "$state/image" ]; then echo "qemu-img: error rbd create: File exists" >&2; exit 1; fi
touch "$state/image"
if [ ! -e "$state/tried" ]; then
    touch "$state/tried"
    echo "qemu-img: {failure}" >&2
    exit 1
fi
exit 0
"""


@pytest.fixture
def qemu_img(tmp_path: Path) -> Path:
    script = tmp_path / "qemu-img"
    script.write_text(IMAGE_CREATE.format(state=tmp_path, failure=CALIBRATION_FAILED))
    script.chmod(0o755)
    return script


def step() -> Step:
    return Step(["create", "-q", "-f", "luks"], (Passphrase("k" * 64),), ["target", "1G"])


def test_the_retry_after_a_timing_failure_first_undoes_the_failed_try(
    qemu_img: Path, tmp_path: Path
) -> None:
    undone: list[bool] = []

    def undo() -> None:
        (tmp_path / "image").unlink()
        undone.append(True)

    run_step(str(qemu_img), step(), 10, undo=undo)
    assert undone == [True] and (tmp_path / "image").exists()


def test_without_undo_the_second_try_meets_the_first_ones_image(qemu_img: Path) -> None:
    with pytest.raises(BackendError, match="File exists") as caught:
        run_step(str(qemu_img), step(), 10)
    assert "k" * 64 not in str(caught.value)


def test_other_failures_are_not_tried_again(tmp_path: Path) -> None:
    script = tmp_path / "qemu-img"
    script.write_text('#!/bin/sh\necho "qemu-img: Invalid parameter" >&2\nexit 1\n')
    script.chmod(0o755)
    calls: list[bool] = []
    with pytest.raises(BackendError, match="Invalid parameter"):
        run_step(str(script), step(), 10, undo=lambda: calls.append(True))
    assert calls == []
