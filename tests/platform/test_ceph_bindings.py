"""scripts/expose-ceph-bindings: a virtualenv sees Debian's `rados` and `rbd`, and only them.

Each test makes a fresh virtualenv (no pip: a second) from the project's Python, as the
install step does, and runs the script on it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "expose-ceph-bindings"
DEBIAN = Path("/usr/lib/python3/dist-packages")


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    path = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path


def _expose(
    venv: Path, bindings: Path = DEBIAN, relative: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run the script on `venv`; `relative`: named from its parent, as `make install` does
    (`.venv`)."""
    env = {"PATH": "/usr/bin:/bin", "CEPH_BINDINGS_DIR": str(bindings)}
    argv, cwd = [str(SCRIPT), str(venv)], None
    if relative:
        argv, cwd = [str(SCRIPT), venv.name], venv.parent
    return subprocess.run(argv, capture_output=True, text=True, env=env, check=False, cwd=cwd)


def _python(venv: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-c", code], capture_output=True, text=True, check=False
    )


def test_the_venv_imports_rados_and_rbd_and_nothing_else_of_debian(venv: Path) -> None:
    assert _python(venv, "import rados").returncode != 0  # not there before
    result = _expose(venv)
    assert result.returncode == 0, result.stderr
    found = _python(venv, "import rados, rbd; print(rados.__file__); print(rbd.RBD().version())")
    assert found.returncode == 0, found.stderr
    assert found.stdout.startswith(str(venv / "ceph-bindings" / "rados."))
    # Debian's other modules stay out (cherrypy comes with ceph-mgr, yaml with python3-yaml)
    assert (DEBIAN / "cherrypy").is_dir() and (DEBIAN / "yaml").is_dir()
    for module in ("cherrypy", "yaml"):
        assert "ModuleNotFoundError" in _python(venv, f"import {module}").stderr
    again = _expose(venv)  # the install step may run it twice
    assert again.returncode == 0, again.stderr


def test_a_venv_named_relatively_works_from_anywhere(venv: Path, tmp_path: Path) -> None:
    result = _expose(venv, relative=True)  # `make install` passes `.venv`
    assert result.returncode == 0, result.stderr
    found = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import rados, rbd"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path.parent,  # elsewhere: the .pth names the bindings by an absolute path
    )
    assert found.returncode == 0, found.stderr


def test_missing_bindings_say_which_package_to_install(venv: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    result = _expose(venv, empty)
    assert result.returncode == 1
    assert "python3-rados" in result.stderr
    assert not (venv / "ceph-bindings").exists() or not any((venv / "ceph-bindings").iterdir())


def test_bindings_for_another_python_name_both_versions(venv: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "rados.cpython-39-x86_64-linux-gnu.so").write_bytes(b"")
    result = _expose(venv, other)
    assert result.returncode == 1
    assert "rados.cpython-39-x86_64-linux-gnu.so" in result.stderr
    assert f"Python {sys.version_info.major}.{sys.version_info.minor}" in result.stderr
    assert "PYTHON=/usr/bin/python3 make install" in result.stderr
