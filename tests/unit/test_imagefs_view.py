"""The image view reads any byte range of a partition from its block map and chunks, zero elsewhere,
fetching only the windows it touches."""

from __future__ import annotations

from imagekit import MiB, OFFICE, data, office_image

from lifeboat.imagefs.view import SpaceReader, WindowCache, address_spaces
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
