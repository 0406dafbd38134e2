"""Where object bytes live is chosen at start (`objectstore.backend`); a choice that cannot
work stops the start with a message saying what to do, before any request is served."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from souverain import server
from souverain.config import Settings
from souverain.objectstore.rados_store import RadosBlobStore, new_blob_id, stripe_of
from souverain.objectstore.store import FileBlobStore


def settings(tmp_path: Path, **objectstore: object) -> Settings:
    return Settings.model_validate({"data_dir": str(tmp_path), "objectstore": objectstore})


def test_files_are_the_default(tmp_path: Path) -> None:
    assert isinstance(server._blob_store(settings(tmp_path)), FileBlobStore)


@pytest.mark.parametrize(
    "objectstore",
    [
        {"backend": "s3fs"},
        {"rados_pool": "bad pool/name"},
        {"rados_stripe_bytes": 100_000},  # not a multiple of 64 KiB
        {"rados_stripe_bytes": 128 * 1024**2},
        {"rados_ec_profile": "k=2;m=1"},
    ],
)
def test_settings_that_cannot_work_are_refused(
    tmp_path: Path, objectstore: dict[str, object]
) -> None:
    with pytest.raises(ValidationError):
        settings(tmp_path, **objectstore)


def test_rados_without_a_cluster_says_to_set_the_conf_file(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match=r"set ceph\.conf_file"):
        server._blob_store(settings(tmp_path, backend="rados"))


def test_rados_with_a_missing_conf_file_says_where_to_point_it(tmp_path: Path) -> None:
    chosen = Settings.model_validate(
        {
            "data_dir": str(tmp_path),
            "objectstore": {"backend": "rados"},
            "ceph": {"conf_file": str(tmp_path / "nowhere" / "ceph.conf")},
        }
    )
    store = server._blob_store(chosen)
    assert isinstance(store, RadosBlobStore)
    with pytest.raises(RuntimeError, match=r"does not exist: point it at the cluster's ceph\.conf"):
        store.setup()


@pytest.mark.parametrize("stripe", [64 * 1024, 4 * 1024**2, 64 * 1024**2])
def test_a_blob_id_is_32_hex_digits_naming_its_stripe_size(stripe: int) -> None:
    blob_id = new_blob_id(stripe)
    assert len(blob_id) == 32 and int(blob_id, 16) >= 0
    assert stripe_of(blob_id) == stripe
