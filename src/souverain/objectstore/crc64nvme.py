"""CRC-64/NVME, S3's `x-amz-checksum-crc64nvme`: reflected polynomial 0x9A6C9329AC4BC9B5,
initial value and final XOR all ones.

Pure Python, one table lookup a byte: a few MB/s. It runs only for requests that ask for
this checksum (no client library computes it without the AWS CRT), never on the plain
path. Knows nothing of HTTP.
"""

from __future__ import annotations

POLY = 0x9A6C9329AC4BC9B5
MASK = 0xFFFFFFFFFFFFFFFF


def _table() -> tuple[int, ...]:
    rows = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ POLY if crc & 1 else crc >> 1
        rows.append(crc)
    return tuple(rows)


TABLE = _table()


def update(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """The CRC of everything so far (`crc`: the value returned for what came before)."""
    value = crc ^ MASK
    table = TABLE
    for byte in data:
        value = table[(value ^ byte) & 0xFF] ^ (value >> 8)
    return value ^ MASK


def _times(matrix: list[int], vector: int) -> int:
    total, row = 0, 0
    while vector:
        if vector & 1:
            total ^= matrix[row]
        vector >>= 1
        row += 1
    return total


def _square(matrix: list[int]) -> list[int]:
    return [_times(matrix, matrix[n]) for n in range(64)]


def combine(first: int, second: int, second_length: int) -> int:
    """The CRC of two runs of bytes joined, from each run's CRC and the second's length
    (how a multipart upload's whole-object CRC comes from its parts' CRCs): the first
    CRC is carried through `second_length` zero bytes by repeated squaring of the
    one-bit shift operator over GF(2), then folded into the second."""
    if second_length <= 0:
        return first
    odd = [POLY] + [1 << n for n in range(63)]  # the operator for one zero bit
    even = _square(odd)  # two zero bits
    odd = _square(even)  # four zero bits
    while True:
        even = _square(odd)  # first pass: one zero byte
        if second_length & 1:
            first = _times(even, first)
        second_length >>= 1
        if not second_length:
            break
        odd = _square(even)
        if second_length & 1:
            first = _times(odd, first)
        second_length >>= 1
        if not second_length:
            break
    return first ^ second


class Crc64Nvme:
    """A running CRC-64/NVME behind the hashlib interface (8-byte big-endian digest)."""

    def __init__(self) -> None:
        self._value = 0

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._value = update(data, self._value)

    def digest(self) -> bytes:
        return self._value.to_bytes(8, "big")
