"""The sealed chunk format of encrypted objects: round trips, ranges at chunk edges, and
every tampering (a flipped bit, chunks swapped or reordered, a cut tail, a part moved)
refused. Real files through the real file blob store; raw keys, no key manager."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from souverain.objectstore.cipher import (
    CHUNK,
    PREFIX,
    SEALED_CHUNK,
    OpeningReader,
    SealBroken,
    SealingWriter,
    seal,
    sealed_size,
    stored_segments,
)
from souverain.objectstore.encryption import SSE_C, Sealer, customer_hmac, customer_matches
from souverain.objectstore.errors import S3Error
from souverain.objectstore.store import FileBlobStore, InlineReader

KEY = bytes(range(32))


@pytest.fixture
def store(tmp_path: Path) -> FileBlobStore:
    blobs = FileBlobStore(tmp_path)
    blobs.setup()
    return blobs


def put(store: FileBlobStore, data: bytes, part: int = 0, step: int = 100_003) -> list[object]:
    writer = SealingWriter(store.writer(), KEY, part, ["sha256"])
    for offset in range(0, len(data), step):
        writer.write(data[offset : offset + step])
    writer.commit()
    assert writer.size == len(data)
    assert writer.digests.hex("sha256") == __import__("hashlib").sha256(data).hexdigest()
    assert store.path(writer.blob_id).stat().st_size == sealed_size(len(data))
    return [writer.blob_id, len(data)]


def read(store: FileBlobStore, segments: list[list[object]], start: int, end: int) -> bytes:
    parts = [0] * len(segments) if len(segments) == 1 else list(range(1, len(segments) + 1))
    reader = OpeningReader(
        store.open_segments(stored_segments(segments)),
        KEY,
        [int(str(s[1])) for s in segments],
        parts,
    )
    try:
        return b"".join(reader.chunks(start, end))
    finally:
        reader.close()


def test_round_trip_and_ranges_at_chunk_edges(store: FileBlobStore) -> None:
    data = os.urandom(3 * CHUNK + 123)
    segment = put(store, data)
    blob = store.path(str(segment[0])).read_bytes()
    assert data[:4096] not in blob and data[-100:] not in blob  # ciphertext only
    assert read(store, [segment], 0, len(data) - 1) == data
    for start, end in [
        (0, 0),
        (CHUNK - 1, CHUNK),
        (CHUNK, 2 * CHUNK - 1),
        (CHUNK - 5, 3 * CHUNK + 5),
        (3 * CHUNK, len(data) - 1),
        (len(data) - 1, len(data) - 1),
    ]:
        assert read(store, [segment], start, end) == data[start : end + 1], (start, end)


def test_exact_multiple_and_zero_length(store: FileBlobStore) -> None:
    data = os.urandom(2 * CHUNK)
    segment = put(store, data, step=CHUNK)
    assert read(store, [segment], 0, len(data) - 1) == data
    empty = put(store, b"")
    assert sealed_size(0) == PREFIX + 16
    assert store.path(str(empty[0])).stat().st_size == PREFIX + 16
    # an inline object: sealed whole, opened through the same reader
    small = b"hello sealed world"
    sealed = seal(KEY, small)
    assert small not in sealed and len(sealed) == sealed_size(len(small))
    reader = OpeningReader(InlineReader(sealed), KEY, [len(small)], [0])
    assert b"".join(reader.chunks(6, 11)) == b"sealed"


def test_multipart_segments_and_part_binding(store: FileBlobStore) -> None:
    one, two = os.urandom(CHUNK + 7), os.urandom(2 * CHUNK)
    segments = [put(store, one, part=1), put(store, two, part=2)]
    joined = one + two
    assert read(store, segments, 0, len(joined) - 1) == joined
    assert read(store, segments, CHUNK, CHUNK + 20) == joined[CHUNK : CHUNK + 21]
    # the same parts listed in the other order: part numbers no longer match
    with pytest.raises(SealBroken):
        read(store, [segments[1], segments[0]], 0, 10)


def _tampered(store: FileBlobStore, segment: list[object], change: object) -> None:
    path = store.path(str(segment[0]))
    raw = bytearray(path.read_bytes())
    path.write_bytes(change(raw))  # type: ignore[operator]


def test_tampering_is_refused(store: FileBlobStore) -> None:
    data = os.urandom(3 * CHUNK)
    cases = {
        "bit flipped": lambda raw: raw[:100] + bytes([raw[100] ^ 1]) + raw[101:],
        "chunks swapped": lambda raw: (
            raw[:PREFIX]
            + raw[PREFIX + SEALED_CHUNK : PREFIX + 2 * SEALED_CHUNK]
            + raw[PREFIX : PREFIX + SEALED_CHUNK]
            + raw[PREFIX + 2 * SEALED_CHUNK :]
        ),
        "prefix changed": lambda raw: bytes(8) + raw[PREFIX:],
    }
    for name, change in cases.items():
        segment = put(store, data)
        _tampered(store, segment, change)
        with pytest.raises(SealBroken):
            read(store, [segment], 0, len(data) - 1)
        print("refused:", name)
    # truncated: the last chunk dropped and the row's size shrunk to match
    segment = put(store, data)
    _tampered(store, segment, lambda raw: raw[: PREFIX + 2 * SEALED_CHUNK])
    with pytest.raises(SealBroken):
        read(store, [[segment[0], 2 * CHUNK]], 0, 2 * CHUNK - 1)
    # a chunk from another object (another key) does not open either
    other = SealingWriter(store.writer(), os.urandom(32))
    other.write(data)
    other.commit()
    foreign = store.path(other.blob_id).read_bytes()
    segment = put(store, data)
    _tampered(store, segment, lambda raw: raw[:PREFIX] + foreign[PREFIX:])
    with pytest.raises(SealBroken):
        read(store, [segment], 0, 10)


def test_customer_keys_are_recognised_never_stored() -> None:
    key = os.urandom(32)
    sealer = Sealer(None)
    made = sealer.new("p1", SSE_C, customer_key=key)
    assert key not in made.wrapped and made.customer is not None
    assert key.hex() not in made.customer
    assert customer_matches(key, made.customer)
    assert not customer_matches(os.urandom(32), made.customer)
    assert customer_hmac(key) != customer_hmac(key)  # salted
    assert sealer.open("p1", SSE_C, made.wrapped, made.customer, key) == made.key
    with pytest.raises(S3Error) as refused:
        sealer.open("p1", SSE_C, made.wrapped, made.customer, os.urandom(32))
    assert refused.value.status == 403
    assert "key" not in repr(made).lower() or made.key.hex() not in repr(made)
