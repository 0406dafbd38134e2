"""The key manager on a SoftHSM2 token, end to end: a real `souverain serve` with
`keymanager.root = "pkcs11"` stores secrets through openstacksdk's key-manager proxy,
restarts, has its root key rotated by `souverain kms rotate` while it runs, and still
reads every secret back byte for byte; no payload is anywhere in the data dir in clear. A
start on a token that does not exist is refused, saying how to make one."""

from __future__ import annotations

import base64
import os
import subprocess
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import openstack.connection
import pkcs11
import pytest
from pkcs11 import Attribute, ObjectClass

from tests.e2e.conftest import BASE_ENV, CLI_TIMEOUT, SOUVERAIN, Cloud, CloudFactory, child_env
from tests.host_cleanup import kill_guests
from tests.softhsm import MODULE, SoftHsmToken

pytestmark = pytest.mark.e2e


def hsm_env(token: SoftHsmToken) -> dict[str, str]:
    return {
        "SOUVERAIN_KEYMANAGER__ROOT": "pkcs11",
        "SOUVERAIN_KEYMANAGER__PKCS11_MODULE": str(MODULE),
        "SOUVERAIN_KEYMANAGER__PKCS11_TOKEN_LABEL": token.label,
        "SOUVERAIN_KEYMANAGER__PKCS11_PIN_FILE": str(token.pin_file),
        **token.hsm.env,
    }


def kms(data_dir: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The operator's `souverain kms ...` on the server's data dir and settings."""
    return subprocess.run(
        [SOUVERAIN, "kms", *args, "--data-dir", str(data_dir)],
        env=child_env(**BASE_ENV, **env),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def root_key_labels(token: SoftHsmToken) -> list[str]:
    """What the token holds, through a session of this test's own (a second application
    of the token, as an HSM's own admin tool would be)."""
    lib = pkcs11.lib(str(MODULE))
    lib.reinitialize()  # tokens made since this process first loaded SoftHSM2
    [found] = [
        slot.get_token()
        for slot in lib.get_slots(token_present=True)
        if slot.get_token().label == token.label
    ]
    with found.open(user_pin=token.pin) as session:
        keys = session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY})
        return sorted(str(k[Attribute.LABEL]) for k in keys)


@pytest.fixture
def hsm_clouds() -> Iterator[list[Cloud]]:
    """Clouds the test starts by hand on one data dir (a restart); any still running at
    the end are killed and their host objects removed."""
    started: list[Cloud] = []
    yield started
    for cloud in started:
        proc = cloud.server.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        kill_guests(cloud.server.data_dir)


def test_secrets_on_an_hsm_survive_a_restart_and_a_root_key_rotation_byte_for_byte(
    start_cloud: CloudFactory, softhsm: SoftHsmToken, hsm_clouds: list[Cloud], tmp_path: Path
) -> None:
    env = hsm_env(softhsm)
    refused = subprocess.run(
        [
            SOUVERAIN,
            "serve",
            "--data-dir",
            str(tmp_path / "refused"),
            "--port",
            "0",
            "--s3-port",
            "0",
        ],
        env=child_env(**{**BASE_ENV, **env, "SOUVERAIN_KEYMANAGER__PKCS11_TOKEN_LABEL": "no"}),
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert refused.returncode == 2, refused.stderr
    assert "refusing to start" in refused.stderr and "softhsm2-util --init-token" in refused.stderr
    cloud = start_cloud("kms-hsm", **env)
    tenant = cloud.make_tenant("hsm")
    marker = uuid.uuid4().hex
    passphrase = f"hsm-passphrase-{marker}"
    symmetric = os.urandom(32)
    opaque = f"opaque-{marker}-".encode() + os.urandom(16)
    cloud.secrets.update({passphrase, base64.b64encode(symmetric).decode()})
    stored: dict[str, bytes] = {}
    with cloud.connect(tenant.user_name, tenant.password, tenant.project_name) as conn:
        made = conn.key_manager.create_secret(
            name="db-password",
            secret_type="passphrase",
            payload=passphrase,
            payload_content_type="text/plain",
        )
        stored[_uuid(made.id)] = passphrase.encode()
        for name, kind, payload in (
            ("volume-key", "symmetric", symmetric),
            ("blob", "opaque", opaque),
        ):
            made = conn.key_manager.create_secret(
                name=name,
                secret_type=kind,
                algorithm="aes" if kind == "symmetric" else None,
                bit_length=256 if kind == "symmetric" else None,
                payload=base64.b64encode(payload).decode(),
                payload_content_type="application/octet-stream",
                payload_content_encoding="base64",
            )
            stored[_uuid(made.id)] = payload
        assert _read_back(conn, stored) == stored
    assert root_key_labels(softhsm) == ["souverain-root-1"]
    assert cloud.server.stop() == 0, cloud.server.output()
    for log in (cloud.server.stdout_path, cloud.server.stderr_path):  # the restart rewrites them
        cloud.assert_no_secret_in(log)

    again = Cloud.start(cloud.workdir, **env)  # the same data dir and token: a restart
    hsm_clouds.append(again)
    again.secrets.update(cloud.secrets)
    rotated = kms(again.data_dir, env, "rotate", "--projects")  # beside the running server
    assert rotated.returncode == 0, rotated.stderr
    assert "hsm2" in rotated.stdout  # the new version, as the operator reads it
    assert root_key_labels(softhsm) == ["souverain-root-2"]  # the old key destroyed
    with again.connect(tenant.user_name, tenant.password, tenant.project_name) as conn:
        assert _read_back(conn, stored) == stored
    again.stop_and_check()
    _assert_no_plaintext(again.data_dir, stored.values())


def _uuid(secret_ref: str) -> str:
    """The id at the end of a secret's href (openstacksdk's `id` is the whole href)."""
    return secret_ref.rsplit("/", 1)[-1]


def _read_back(conn: openstack.connection.Connection, stored: dict[str, bytes]) -> dict[str, bytes]:
    """Each secret's payload as openstacksdk fetches it (metadata, then `/payload`)."""
    read: dict[str, bytes] = {}
    for secret_id in stored:
        secret = conn.key_manager.get_secret(secret_id)
        payload = secret.payload
        read[secret_id] = payload.encode() if isinstance(payload, str) else bytes(payload)
    return read


def _assert_no_plaintext(data_dir: Path, payloads: Iterable[bytes]) -> None:
    """Every file of the data dir (the SQLite file and its WAL included), searched for each
    payload as it was sent and as base64."""
    needles = [form for payload in payloads for form in (payload, base64.b64encode(payload))]
    for path in data_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
            found = [n for n in needles if n in content]
            assert not found, f"{path.relative_to(data_dir)} holds a payload in clear"
