"""A real SoftHSM2 token for the tests: Debian's softhsm2 (a PKCS#11 library, no daemon).

`softhsm_store()` makes a token directory of its own under a temporary directory, with a
`softhsm2.conf` pointing `directories.tokendir` into it, exports `SOFTHSM2_CONF` to this
process (the library reads it when it is initialised, so one directory serves a whole
process: `softhsm_session`, one per pytest-xdist worker) and removes it all after.
`make_token()` initialises a token there with `softhsm2-util --init-token --free` and
writes its user PIN to a 0600 file; the `softhsm` fixture gives each test a fresh one and
deletes it after. The README's "Key manager on an HSM" types the same steps by hand.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from souverain.config import KeyManagerSettings

MODULE = Path("/usr/lib/softhsm/libsofthsm2.so")
UTIL = "softhsm2-util"


@dataclass(frozen=True)
class SoftHsm:
    """One token directory and the configuration file that names it."""

    root: Path
    conf: Path

    @property
    def env(self) -> dict[str, str]:
        """What a child process (`souverain serve`, `souverain kms`) needs to see it."""
        return {"SOFTHSM2_CONF": str(self.conf)}


@dataclass(frozen=True)
class SoftHsmToken:
    """An initialised token: its label, PINs and the 0600 file holding the user PIN."""

    hsm: SoftHsm
    label: str
    pin: str
    so_pin: str
    pin_file: Path

    def settings(self, **overrides: Any) -> KeyManagerSettings:
        """`[keymanager]` with `root = "pkcs11"` on this token."""
        values: dict[str, Any] = {
            "root": "pkcs11",
            "pkcs11_module": MODULE,
            "pkcs11_token_label": self.label,
            "pkcs11_pin_file": self.pin_file,
        }
        return KeyManagerSettings(**(values | overrides))


def _require_softhsm() -> None:
    if not shutil.which(UTIL) or not MODULE.is_file():
        raise RuntimeError(
            "SoftHSM2 is not installed: run ./scripts/install-system-packages (Debian's softhsm2)"
        )


def _util(hsm: SoftHsm, *args: str) -> None:
    env = os.environ | hsm.env
    done = subprocess.run(
        [UTIL, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{UTIL} {args[0]} failed: {done.stderr.strip() or done.stdout}")


@contextmanager
def softhsm_store() -> Iterator[SoftHsm]:
    """A token directory of its own, exported to this process as SOFTHSM2_CONF."""
    _require_softhsm()
    root = Path(tempfile.mkdtemp(prefix="svtest-softhsm-"))
    previous = os.environ.get("SOFTHSM2_CONF")
    try:
        (root / "tokens").mkdir(mode=0o700)
        conf = root / "softhsm2.conf"
        conf.write_text(
            f"directories.tokendir = {root / 'tokens'}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
        os.environ["SOFTHSM2_CONF"] = str(conf)
        yield SoftHsm(root=root, conf=conf)
    finally:
        if previous is None:
            os.environ.pop("SOFTHSM2_CONF", None)
        else:
            os.environ["SOFTHSM2_CONF"] = previous
        shutil.rmtree(root, ignore_errors=True)


def make_token(hsm: SoftHsm, label: str | None = None) -> SoftHsmToken:
    """A freshly initialised token (labels are at most 32 characters) and its PIN file."""
    label = label or f"svtest-{secrets.token_hex(6)}"
    pin, so_pin = secrets.token_hex(8), secrets.token_hex(8)
    _util(hsm, "--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", so_pin)
    pin_file = hsm.root / f"{label}.pin"
    fd = os.open(pin_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(pin + "\n")
    return SoftHsmToken(hsm=hsm, label=label, pin=pin, so_pin=so_pin, pin_file=pin_file)


def delete_token(token: SoftHsmToken) -> None:
    _util(token.hsm, "--delete-token", "--token", token.label)
    token.pin_file.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def softhsm_session() -> Iterator[SoftHsm]:
    """This process's SoftHSM2 token directory (a worker's own under xdist)."""
    with softhsm_store() as hsm:
        yield hsm


@pytest.fixture
def softhsm(softhsm_session: SoftHsm) -> Iterator[SoftHsmToken]:
    """A fresh token for one test, deleted after it."""
    token = make_token(softhsm_session)
    try:
        yield token
    finally:
        delete_token(token)
