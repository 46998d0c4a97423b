"""The image view reads any byte range of a partition from its block map and chunks, zero elsewhere,
fetching only the windows it touches."""

from __future__ import annotations

import time

from imagekit import MiB, OFFICE, data, office_image

from lifeboat.imagefs.view import PREFETCH, SpaceReader, WindowCache, address_spaces
from lifeboat.repo.manifest import CHUNK_SIZE
from lifeboat.repo.store import Repository


def _expected(number: int) -> bytes:
    _, size_mib, _, runs = OFFICE[number]
    out = bytearray(size_mib * MiB)
    for offset, length in runs.items():
        out[offset : offset + length] = data(number, offset, length)
    return bytes(out)


def test_reads_match_the_partition_at_any_offset(tmp_path):
    repo = Repository.open(tmp_path / "repo", create=True)
    manifest = office_image(repo)
    spaces = {s.name: s for s in address_spaces(manifest)}
    assert sorted(spaces) == ["p1", "p2", "p4"]  # swap has no stored data
    assert (spaces["p2"].fstype, spaces["p2"].size, spaces["p2"].label) == ("ext4", 16 * MiB, "label2")
    cache = WindowCache(repo, capacity=2)
    reader = SpaceReader(repo, spaces["p2"], cache)
    whole = _expected(2)
    for offset, size in ((0, 4096), (65530, 20), (CHUNK_SIZE - 10, 2000), (9 * MiB - 1, 4098), (16 * MiB - 5, 100),
                         (0, 16 * MiB)):
        assert reader.read(offset, size) == whole[offset : offset + size], (offset, size)
    assert reader.read(16 * MiB, 10) == b""


def test_only_touched_windows_are_fetched_and_cached(tmp_path):
    repo = Repository.open(tmp_path / "repo", create=True)
    spaces = {s.name: s for s in address_spaces(office_image(repo))}
    cache = WindowCache(repo, capacity=2)
    reader = SpaceReader(repo, spaces["p2"], cache)
    reader.read(CHUNK_SIZE + 1024, 4096)
    assert (cache.stats.chunks_fetched, cache.stats.cache_hits) == (1, 0)
    reader.read(CHUNK_SIZE, 100)
    assert (cache.stats.chunks_fetched, cache.stats.cache_hits) == (1, 1)
    reader.read(3 * CHUNK_SIZE + 5, 100)  # a window with no data: zeros, nothing fetched
    assert cache.stats.chunks_fetched == 1
    reader.read(0, 10), reader.read(9 * MiB, 10), reader.read(CHUNK_SIZE, 10)  # LRU of 2: window 1 was evicted
    assert cache.stats.chunks_fetched == 4


def test_a_reader_going_in_order_reads_ahead_and_a_random_one_does_not(tmp_path):
    repo = Repository.open(tmp_path / "repo", create=True)
    spaces = {s.name: s for s in address_spaces(office_image(repo))}
    whole = _expected(2)
    cache = WindowCache(repo)
    reader = SpaceReader(repo, spaces["p2"], cache)
    for offset in range(0, 2 * CHUNK_SIZE, 128 * 1024):  # in order, as the kernel reads a file: 2 windows
        assert reader.read(offset, 128 * 1024) == whole[offset : offset + 128 * 1024]
    touched = {w for w in range(2) if w in reader.refs}
    ahead = {w for w in range(2, 2 + PREFETCH) if w in reader.refs}
    assert ahead, "the test image must have data after the first two windows"
    deadline = time.monotonic() + 10
    while cache.stats.chunks_fetched < len(touched | ahead) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cache.stats.chunks_fetched == len(touched | ahead)  # the next windows were fetched, no more
    assert reader.read(2 * CHUNK_SIZE, 4096) == whole[2 * CHUNK_SIZE : 2 * CHUNK_SIZE + 4096]

    cache = WindowCache(repo)
    reader = SpaceReader(repo, spaces["p2"], cache)
    for offset in (0, 4096, CHUNK_SIZE + 5, CHUNK_SIZE + 4101):  # lookups, short runs: nothing read ahead
        reader.read(offset, 4096)
    time.sleep(0.2)
    assert cache.stats.chunks_fetched == 2  # windows 0 and 1; not 2, which holds data too
