"""The blob store: durable writes, nothing left behind on failure, ranged reads, the sweep."""

from __future__ import annotations

import base64
import hashlib
import os
import zlib
from pathlib import Path

import crc32c
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from souverain.objectstore.store import Digests, InlineReader
from souverain.objectstore.store import FileBlobStore as BlobStore


@pytest.fixture
def store(tmp_path: Path) -> BlobStore:
    blobs = BlobStore(tmp_path / "objects")
    blobs.setup()
    return blobs


def test_a_committed_blob_is_in_place_and_the_temp_file_gone(store: BlobStore) -> None:
    writer = store.writer()
    writer.write(b"hello ")
    writer.write(b"world")
    blob_id = writer.commit()
    assert store.path(blob_id).read_bytes() == b"hello world"
    assert list(store.tmp.iterdir()) == []
    assert writer.digests.hex("md5") == hashlib.md5(b"hello world").hexdigest()


def test_an_aborted_blob_leaves_nothing(store: BlobStore) -> None:
    writer = store.writer()
    writer.write(b"partial")
    writer.abort()
    assert list(store.tmp.iterdir()) == []
    assert not store.path(writer.blob_id).exists()


def test_blob_paths_never_leave_the_store(store: BlobStore) -> None:
    for hostile in ("../../etc/passwd", "/etc/passwd", "..", "", "A" * 32, "0" * 31 + "/"):
        with pytest.raises(ValueError):
            store.path(hostile)


def test_digests_match_the_reference_implementations() -> None:
    data = os.urandom(100_000)
    digests = Digests(["crc32", "crc32c", "sha1", "sha256"])
    for i in range(0, len(data), 7919):
        digests.update(data[i : i + 7919])
    assert digests.b64("crc32") == base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
    assert (
        digests.b64("crc32c") == base64.b64encode(crc32c.crc32c(data).to_bytes(4, "big")).decode()
    )
    assert digests.b64("sha1") == base64.b64encode(hashlib.sha1(data).digest()).decode()
    assert digests.b64("sha256") == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert digests.size == len(data)


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=1, max_value=300), min_size=1, max_size=5),
    data=st.data(),
)
def test_ranged_reads_across_segments_equal_slices(
    tmp_path_factory: pytest.TempPathFactory, sizes: list[int], data: st.DataObject
) -> None:
    store = BlobStore(tmp_path_factory.mktemp("ranges"))
    store.setup()
    whole = b""
    segments = []
    for size in sizes:
        part = os.urandom(size)
        writer = store.writer()
        writer.write(part)
        segments.append([writer.commit(), size])
        whole += part
    start = data.draw(st.integers(min_value=0, max_value=len(whole) - 1))
    end = data.draw(st.integers(min_value=start, max_value=len(whole) - 1))
    reader = store.open_segments(segments)
    try:
        got = b"".join(reader.chunks(start, end, chunk=97))
    finally:
        reader.close()
    assert got == whole[start : end + 1]


def test_a_reader_keeps_its_bytes_when_the_blob_is_deleted_meanwhile(store: BlobStore) -> None:
    writer = store.writer()
    writer.write(b"x" * 1000)
    blob_id = writer.commit()
    reader = store.open_segments([[blob_id, 1000]])
    store.delete([blob_id])
    assert b"".join(reader.chunks(0, 999)) == b"x" * 1000
    reader.close()


def test_sweep_removes_temp_files_and_unreferenced_blobs_only(store: BlobStore) -> None:
    kept, dropped = store.writer(), store.writer()
    kept.write(b"keep")
    dropped.write(b"drop")
    kept_id, dropped_id = kept.commit(), dropped.commit()
    interrupted = store.writer()
    interrupted.write(b"half")  # never committed: a crash mid-upload
    assert store.sweep({kept_id}) == 2
    assert store.path(kept_id).exists()
    assert not store.path(dropped_id).exists()
    assert list(store.tmp.iterdir()) == []


@settings(max_examples=60, deadline=None)
@given(data=st.binary(min_size=1, max_size=500), bounds=st.data())
def test_inline_reads_equal_slices(data: bytes, bounds: st.DataObject) -> None:
    start = bounds.draw(st.integers(min_value=0, max_value=len(data) - 1))
    end = bounds.draw(st.integers(min_value=start, max_value=len(data) - 1))
    reader = InlineReader(data)
    assert b"".join(reader.chunks(start, end, chunk=7)) == data[start : end + 1]
