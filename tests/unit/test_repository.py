import json
import os
import threading

import pytest

from lifeboat.repo.manifest import load_manifest
from lifeboat.errors import ImageCorrupt, ImageNotFound, InvalidName, RepositoryError
from lifeboat.repo.store import Repository, check_image_name
from lifeboat.timing import StageTimes


def test_chunks_are_content_addressed_and_stored_once(tmp_path):
    repo = Repository.open(tmp_path / "r", create=True)
    data = os.urandom(100_000) + bytes(1_000_000)
    digest, written = repo.put_chunk(data, 3)
    assert written > 0 and written < len(data)
    again, written_again = repo.put_chunk(data, 3)
    assert again == digest and written_again == 0
    assert repo.get_chunk(digest, len(data)) == data


def test_a_chunk_already_stored_is_hashed_but_not_compressed_again(tmp_path):
    """A second capture of an unchanged disk costs a read and a hash per chunk, nothing more."""
    repo = Repository.open(tmp_path / "r", create=True)
    data = os.urandom(50_000) * 20
    repo.put_chunk(data, 3)
    assert set(repo.stage_times.seconds) == {"hash", "compress", "write"}
    repo.stage_times = StageTimes()
    repo.put_chunk(bytearray(data), 3)
    assert set(repo.stage_times.seconds) == {"hash"}
    assert repo.stage_times.bytes["hash"] == len(data)
    assert "hash" in repo.stage_times.summary(workers=1)


def test_an_incompressible_chunk_takes_the_fast_level_and_reads_back_the_same(tmp_path):
    """Random (already compressed) data is stored at level 1, text-like data at the level asked; both are
    plain zstd frames that the same reader decompresses, and the chunk id does not depend on the level."""
    import zstandard

    from lifeboat.repo import store

    probe = zstandard.ZstdCompressor(level=1)
    packed = os.urandom(4 * 1024 * 1024)
    text = b"".join(b"line %d of a log file, much like the one before\n" % i for i in range(90_000))[: 4 * 1024 * 1024]
    assert store.looks_incompressible(packed, probe)
    assert store.looks_incompressible(memoryview(bytearray(packed)), probe)
    assert not store.looks_incompressible(text, probe)
    assert not store.looks_incompressible(packed[:100_000], probe)  # too short to sample: the level asked
    half = packed[: 2 * 1024 * 1024] + text[: 2 * 1024 * 1024]  # samples at 0, 1/4 packed; 1/2, 3/4 text
    assert not store.looks_incompressible(half, probe)

    repo = Repository.open(tmp_path / "r", create=True)
    for data in (packed, text, half):
        digest, written = repo.put_chunk(data, 3)
        assert digest == store.chunk_hash(data)
        frame = repo.chunk_path(digest).read_bytes()
        assert zstandard.get_frame_parameters(frame).content_size == len(data)
        assert repo.get_chunk(digest, len(data)) == data
    assert repo.chunk_path(store.chunk_hash(text)).stat().st_size < len(text) // 5


def test_a_chunk_decompresses_into_a_buffer_checked_for_length_and_hash(tmp_path):
    repo = Repository.open(tmp_path / "r", create=True)
    data = os.urandom(70_000) * 30
    digest, _ = repo.put_chunk(data, 3)
    buf = memoryview(bytearray(len(data) + 10))
    repo.get_chunk_into(digest, buf[: len(data)])
    assert buf[: len(data)] == data
    with pytest.raises(ImageCorrupt, match="more than"):
        repo.get_chunk_into(digest, buf[: len(data) - 1])
    with pytest.raises(ImageCorrupt, match="expected"):
        repo.get_chunk_into(digest, buf)
    other, _ = repo.put_chunk(data[:-1] + bytes([data[-1] ^ 1]), 3)  # same length, last byte differs
    os.replace(repo.chunk_path(other), repo.chunk_path(digest))
    with pytest.raises(ImageCorrupt, match="does not match its hash"):
        repo.get_chunk_into(digest, buf[: len(data)])


def test_damaged_chunks_are_detected(tmp_path):
    repo = Repository.open(tmp_path / "r", create=True)
    digest, _ = repo.put_chunk(b"x" * 5000 + os.urandom(5000), 3)
    path = repo.chunk_path(digest)
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(ImageCorrupt):
        repo.get_chunk(digest, 10000)
    path.write_bytes(b"abc")
    assert repo.chunk_problem(digest).startswith("truncated")
    path.unlink()
    assert repo.chunk_problem(digest) == "missing"


def test_compression_is_thread_safe(tmp_path):
    repo = Repository.open(tmp_path / "r", create=True)
    blobs = [os.urandom(1000) * 200 for _ in range(16)]
    results = []

    def work(b):
        results.append(repo.put_chunk(b, 3)[0])

    threads = [threading.Thread(target=work, args=(b,)) for b in blobs]
    [t.start() for t in threads]
    [t.join() for t in threads]
    for b in blobs:
        from lifeboat.repo.store import chunk_hash

        assert repo.get_chunk(chunk_hash(b), len(b)) == b


@pytest.mark.parametrize("bad", ["a/b", "../x", "..", ".x", "", "x" * 200, "a b"])
def test_image_names_are_checked(bad):
    with pytest.raises(InvalidName):
        check_image_name(bad)


def test_repository_must_exist_or_be_created_in_an_empty_directory(tmp_path):
    with pytest.raises(RepositoryError):
        Repository.open(tmp_path / "nothing")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    with pytest.raises(RepositoryError):
        Repository.open(tmp_path / "busy", create=True)


def test_manifest_is_only_an_image_when_complete_and_known(tmp_path):
    repo = Repository.open(tmp_path / "r", create=True)
    with pytest.raises(ImageNotFound):
        load_manifest(repo, "absent")
    repo.write_manifest("future", {"schema": "lifeboat-image", "version": 3})
    with pytest.raises(ImageCorrupt, match="schema version 3 is not supported"):
        load_manifest(repo, "future")
    (repo.image_dir("broken")).mkdir()
    (repo.image_dir("broken") / "manifest.json").write_text("{not json")
    with pytest.raises(ImageCorrupt):
        load_manifest(repo, "broken")
    assert repo.image_names() == ["broken", "future"]
    assert json.loads((repo.root / "lifeboat-repo.json").read_text())["format"] == "lifeboat-repo"


def test_one_writer_per_image(tmp_path):
    repo = Repository.open(tmp_path / "r", create=True)
    with repo.writer_lock("img"):
        with pytest.raises(RepositoryError):
            with repo.writer_lock("img"):
                pass


def _fake_image(repo, name, digests):
    """A version-1 manifest, as the first Lifeboat wrote them (the map chunk is one of the data chunks)."""
    manifest = {
        "schema": "lifeboat-image", "version": 1, "name": name, "created": "2026-01-01T00:00:00+00:00",
        "chunk_size": 4 * 1024 * 1024, "source": {"path": "/dev/x", "size": 1}, "boot_regions": [],
        "layout": {"label": "gpt", "disk_id": "X", "sector_size": 512, "disk_sectors": 100 * 2048,
                   "partitions": [{"number": 1, "start": 2048, "size": 64 * 2048, "type": "L"}]},
        "partitions": [{"number": 1, "fstype": "ext4", "mode": "used-blocks", "size": 64 * 2048 * 512,
                        "used_bytes": 10 * len(digests), "map": {"chunk": digests[0], "length": 10, "runs": 1},
                        "chunks": [[i, d, 10] for i, d in enumerate(digests)]}],
    }
    repo.write_manifest(name, manifest)


def test_prune_removes_only_unreferenced_chunks(tmp_path):
    from lifeboat.engine.prune import delete_image, prune

    repo = Repository.open(tmp_path / "r", create=True)
    a = repo.put_chunk(b"a" * 10, 3)[0]
    b = repo.put_chunk(b"b" * 10, 3)[0]
    c = repo.put_chunk(b"c" * 10, 3)[0]
    _fake_image(repo, "one", [a, b])
    _fake_image(repo, "two", [b])
    assert prune(repo).removed_chunks == 1 and not repo.has_chunk(c)
    delete_image(repo, "one")
    assert prune(repo, dry_run=True).removed_chunks == 1 and repo.has_chunk(a)
    report = prune(repo)
    assert report.removed_chunks == 1 and report.kept_chunks == 1
    assert not repo.has_chunk(a) and repo.has_chunk(b)


def test_prune_waits_for_captures(tmp_path):
    from lifeboat.engine.prune import prune

    repo = Repository.open(tmp_path / "r", create=True)
    with repo.shared_use():
        with pytest.raises(RepositoryError, match="capture is writing"):
            prune(repo)


def test_clean_tmp_keeps_files_of_other_live_processes(tmp_path):
    repo = Repository.open(tmp_path / "r", create=True)
    mine = repo.tmp_dir / f"x.zst.{os.getpid()}.abcd.part"
    other = repo.tmp_dir / "x.zst.1.abcd.part"  # pid 1 is always alive
    dead = repo.tmp_dir / "x.zst.999999999.abcd.part"
    for p in (mine, other, dead):
        p.write_bytes(b"partial")
    repo.clean_tmp()
    assert not mine.exists() and other.exists() and not dead.exists()
