"""The PKCS#11 root of trust against a real SoftHSM2 token (tests/softhsm.py): wraps that
open and only open whole, root keys the token never gives out, rotation and retirement,
a restarted process, a forked one and threads, and the refusals an operator reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass
from pkcs11 import exceptions as p11
from sqlalchemy import select

from souverain.common.clock import Clock
from souverain.common.context import RequestContext
from souverain.common.keys import KeyUnavailable
from souverain.config import ConfigError
from souverain.db import migrate
from souverain.db.engine import Database, make_engine
from souverain.keymanager.models import Secret
from souverain.keymanager.pkcs11_root import LABEL_PREFIX, open_pkcs11_root
from souverain.keymanager.root import RootOfTrust
from souverain.keymanager.rotation import rotate
from souverain.keymanager.secrets import SecretSpec
from souverain.keymanager.service import KeyManagerService
from tests.softhsm import MODULE, SoftHsmToken

SRC = Path(__file__).resolve().parents[2] / "src"


@pytest.fixture
def root(softhsm: SoftHsmToken) -> Iterator[RootOfTrust]:
    opened = open_pkcs11_root(softhsm.settings())
    yield opened
    opened.close()


def _root_keys(token: SoftHsmToken) -> list[pkcs11.SecretKey]:
    """The token's root keys, seen by a logged-in session of the test's own (they are
    private objects: a session not logged in sees none)."""
    [found_token] = [
        slot.get_token()
        for slot in pkcs11.lib(str(MODULE)).get_slots(token_present=True)
        if slot.get_token().label == token.label
    ]
    try:
        session = found_token.open(rw=True, user_pin=token.pin)
    except p11.UserAlreadyLoggedIn:  # the root under test logged this process in
        session = found_token.open(rw=True)
    found = session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.TOKEN: True})
    return [k for k in found if str(k[Attribute.LABEL]).startswith(LABEL_PREFIX)]  # type: ignore[misc]


def test_a_wrapped_key_opens_to_the_same_bytes_and_the_wrap_hides_them(
    root: RootOfTrust,
) -> None:
    key = os.urandom(32)
    version, wrapped = root.wrap(key)
    assert version == root.current_version() == "hsm1"
    assert key not in wrapped and len(wrapped) == 40
    assert root.unwrap(version, wrapped) == key
    assert root.name == "pkcs11"


def test_the_root_key_is_sensitive_and_its_value_cannot_be_read(
    root: RootOfTrust, softhsm: SoftHsmToken
) -> None:
    [key] = _root_keys(softhsm)
    assert key[Attribute.LABEL] == f"{LABEL_PREFIX}1"
    assert key[Attribute.SENSITIVE] and not key[Attribute.EXTRACTABLE]
    assert key[Attribute.NEVER_EXTRACTABLE] and key[Attribute.LOCAL]  # made in the token
    assert not key[Attribute.DECRYPT]  # it unwraps keys, it is no decryption oracle
    with pytest.raises(p11.AttributeSensitive):
        key[Attribute.VALUE]


def test_a_tampered_or_truncated_wrap_does_not_open(root: RootOfTrust) -> None:
    version, wrapped = root.wrap(os.urandom(32))
    for position in (0, 17, 39):
        bad = bytearray(wrapped)
        bad[position] ^= 0x01
        with pytest.raises(ValueError):
            root.unwrap(version, bytes(bad))
    with pytest.raises(ValueError):
        root.unwrap(version, wrapped[:-8])
    with pytest.raises(ValueError):
        root.wrap(b"short")
    for hostile in ("../1", "", "v1", "hsm", "hsm-1", "hsm\u0661", "hsm" + "9" * 40, "hsm0"):
        with pytest.raises(KeyUnavailable):
            root.unwrap(hostile, wrapped)
    assert root.unwrap(version, wrapped)  # none of that disturbed the session


def test_rotate_makes_a_new_current_key_and_old_wraps_open_until_retired(
    root: RootOfTrust, softhsm: SoftHsmToken
) -> None:
    old_key = os.urandom(32)
    old_version, old_wrapped = root.wrap(old_key)
    new_version = root.rotate()
    assert new_version == root.current_version() == "hsm2" != old_version
    assert root.wrap(old_key)[0] == new_version
    assert root.unwrap(old_version, old_wrapped) == old_key
    with pytest.raises(ValueError):
        root.retire(new_version)  # the current key: rotate first
    root.retire(old_version)
    assert [k[Attribute.LABEL] for k in _root_keys(softhsm)] == [f"{LABEL_PREFIX}2"]
    with pytest.raises(KeyUnavailable) as refused:
        root.unwrap(old_version, old_wrapped)
    assert old_wrapped.hex() not in str(refused.value)


_RESTART = """
import json, sys
from souverain.config import KeyManagerSettings
from souverain.keymanager.pkcs11_root import open_pkcs11_root
args = json.loads(sys.argv[1])
root = open_pkcs11_root(KeyManagerSettings(**args["settings"]))
print(json.dumps({
    "key": root.unwrap(args["version"], bytes.fromhex(args["wrapped"])).hex(),
    "current": root.current_version(),
}))
root.close()
"""


def test_a_new_process_opens_what_an_earlier_one_wrapped_and_sees_its_rotation(
    root: RootOfTrust, softhsm: SoftHsmToken
) -> None:
    key = os.urandom(32)
    version, wrapped = root.wrap(key)
    root.close()
    settings = softhsm.settings().model_dump(mode="json")
    args = {"settings": settings, "version": version, "wrapped": wrapped.hex()}
    done = subprocess.run(
        [sys.executable, "-c", _RESTART, json.dumps(args)],
        env=os.environ | {"PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(done.stdout) == {"key": key.hex(), "current": "hsm1"}
    again = open_pkcs11_root(softhsm.settings())  # this process, restarted
    try:
        assert again.unwrap(version, wrapped) == key
        assert again.rotate() == "hsm2"
        assert root.current_version() == "hsm2"  # the closed root reopens its session
    finally:
        again.close()


def test_a_forked_child_and_many_threads_share_the_token_safely(root: RootOfTrust) -> None:
    key = os.urandom(32)
    version, wrapped = root.wrap(key)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # the child: as a `serve` worker forked after the root was opened
        try:
            own_version, own = root.wrap(b"c" * 32)
            answer = {"key": root.unwrap(version, wrapped).hex(), "own": [own_version, own.hex()]}
            os.write(writer, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        answer = json.loads(pipe.read() or "{}")
    os.waitpid(child, 0)
    assert answer["key"] == key.hex()
    assert root.unwrap(answer["own"][0], bytes.fromhex(answer["own"][1])) == b"c" * 32
    failures: list[BaseException] = []

    def churn() -> None:
        try:
            for _ in range(20):
                fresh = os.urandom(32)
                assert root.unwrap(*root.wrap(fresh)) == fresh
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=churn) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert root.unwrap(version, wrapped) == key  # the parent's session survived the child


def test_the_refusals_say_what_to_fix_and_never_show_the_pin(
    softhsm: SoftHsmToken, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = tmp_path / "wrong.pin"
    wrong.write_text("not-the-pin\n")
    wrong.chmod(0o644)
    with pytest.raises(ConfigError, match="refuses that PIN") as refused:
        open_pkcs11_root(softhsm.settings(pkcs11_pin_file=wrong))
    assert softhsm.pin not in str(refused.value) and "not-the-pin" not in caplog.text
    assert "readable by others than its owner" in caplog.text
    assert _root_keys(softhsm) == []  # nothing made on a refused start
    with pytest.raises(ConfigError, match="softhsm2-util --init-token") as missing:
        open_pkcs11_root(softhsm.settings(pkcs11_token_label="no-such-token"))
    assert "no-such-token" in str(missing.value)
    with pytest.raises(ConfigError, match="cannot be read"):
        open_pkcs11_root(softhsm.settings(pkcs11_pin_file=tmp_path / "absent.pin"))
    with pytest.raises(ConfigError, match=r"needs keymanager\.pkcs11_pin_file"):
        open_pkcs11_root(softhsm.settings(pkcs11_pin_file=None))
    with pytest.raises(ConfigError, match="pkcs11_module"):
        open_pkcs11_root(softhsm.settings(pkcs11_module=tmp_path / "libnothing.so"))


def test_a_token_that_goes_away_is_unavailable_not_a_crash(softhsm: SoftHsmToken) -> None:
    root = open_pkcs11_root(softhsm.settings())
    version, wrapped = root.wrap(os.urandom(32))
    for key in _root_keys(softhsm):
        key.destroy()  # as an operator wiping the token under a running cloud
    with pytest.raises(KeyUnavailable):
        root.wrap(os.urandom(32))
    with pytest.raises(KeyUnavailable):
        root.unwrap(version, wrapped)
    root.close()


def test_the_key_manager_on_the_token_survives_a_restart_and_a_root_rotation(
    softhsm: SoftHsmToken, tmp_path: Path
) -> None:
    """The envelope over the HSM in process: secrets sealed under project KEKs wrapped by
    the token, the KEKs rewrapped under a new root key, the old one retired, and a new
    service (a restart) reading every payload back."""
    engine = make_engine(f"sqlite:///{tmp_path / 'kms.db'}")
    migrate.upgrade(engine)
    db = Database(engine)
    payloads = {f"p{n}": os.urandom(24) for n in range(3)}
    first = KeyManagerService(db, open_pkcs11_root(softhsm.settings()), Clock())
    made = {
        project: first.secrets.create(_member(project), SecretSpec(payload=payload)).id
        for project, payload in payloads.items()
    }
    first.close()
    second = KeyManagerService(db, open_pkcs11_root(softhsm.settings()), Clock())
    try:
        report = rotate(second, projects=True)
        assert (report.old_version, report.new_version) == ("hsm1", "hsm2")
        assert report.keks_rewrapped == len(payloads) and report.retired == ["hsm1"]
        for project, payload in payloads.items():
            assert second.secrets.payload(_member(project), made[project])[1] == payload
        with db.session() as session:
            stored = b"".join(
                bytes(row.ciphertext or b"") for row in session.scalars(select(Secret))
            )
        assert stored and not any(payload in stored for payload in payloads.values())
    finally:
        second.close()
        engine.dispose()


def _member(project: str) -> RequestContext:
    return RequestContext("u1", "default", frozenset({"member"}), project_id=project)
