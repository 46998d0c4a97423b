"""ISA-L's CRC32 (lifeboat.foreign.crc32) gives zlib's value for every buffer shape partclone's reader uses."""

import os
import zlib

import pytest

from lifeboat.foreign.crc32 import crc32


@pytest.mark.parametrize("start,end,state", [(0, 3_000_001, 0), (7, 1000, 5), (1, 2, 0xFFFFFFFF), (0, 0, 9),
                                             (100, 2_999_999, 123456789), (4096, 4096 * 257, 0)])
def test_same_as_zlib_on_writable_views(start, end, state):
    data = bytearray(os.urandom(3_000_001))
    assert crc32(memoryview(data)[start:end], state) == zlib.crc32(data[start:end], state)


def test_same_as_zlib_on_bytes_and_chained():
    data = os.urandom(100_000)
    assert crc32(data) == zlib.crc32(data)
    buf = bytearray(data)
    assert crc32(memoryview(buf)[50_000:], crc32(buf[:50_000])) == zlib.crc32(data)


def test_a_flipped_bit_changes_it():
    data = bytearray(1 << 20)
    before = crc32(data)
    data[12345] ^= 0x10
    assert crc32(data) != before
