"""`lifeboat check`: damage makes a repository unhealthy; leftovers of killed jobs are counted, not damage."""

import json

from lifeboat.cli import main
from lifeboat.engine.check import check_repository
from lifeboat.engine.prune import prune
from lifeboat.repo.store import Repository


def _image(repo, name, chunks):
    """A minimal valid manifest referencing `chunks` [(digest, length)]."""
    repo.write_manifest(name, {
        "schema": "lifeboat-image", "version": 1, "name": name, "created": "2026-01-01T00:00:00+00:00",
        "chunk_size": 4 * 1024 * 1024, "source": {"path": "/dev/x", "size": 1}, "boot_regions": [],
        "layout": {"label": "gpt", "disk_id": "X", "sector_size": 512, "disk_sectors": 100, "partitions": []},
        "partitions": [{"number": 1, "fstype": "ext4", "mode": "used-blocks", "size": 1,
                        "chunks": [[i, d, n] for i, (d, n) in enumerate(chunks)]}],
    })


def _repo_with_leftovers(tmp_path):
    repo = Repository.open(tmp_path / "r", create=True)
    a = repo.put_chunk(b"a" * 5000, 3)
    b = repo.put_chunk(b"b" * 7000, 3)
    repo.put_chunk(b"orphan" * 1000, 3)  # written by a capture that was killed
    _image(repo, "one", [(a[0], 5000), (b[0], 7000)])
    (repo.tmp_dir / "manifest.json.999999999.abcd1234.part").write_bytes(b'{"schema": "lifeb')  # killed mid-write
    (repo.tmp_dir / "two.lock").write_bytes(b"")  # writer lock of a killed capture
    (repo.images_dir / "two").mkdir()  # image directory made just before the kill
    return repo, a[0], b[0]


def test_leftovers_are_reported_but_healthy_and_prune_removes_them(tmp_path):
    repo, _, _ = _repo_with_leftovers(tmp_path)
    report = check_repository(repo, read_data=True)
    assert report.healthy, report.problems
    lo = report.leftovers
    assert (lo.unreferenced_chunks, lo.tmp_files, lo.stale_locks, lo.empty_image_dirs) == (1, 1, 1, ("two",))
    assert report.images == 1 and report.chunks_referenced == 2 and report.chunks_stored == 3
    assert report.bytes_read == 12000
    pruned = prune(repo)
    assert pruned.removed_chunks == 1 and pruned.removed_leftovers == 3
    after = check_repository(repo)
    assert after.healthy and not after.leftovers.any


def test_missing_and_corrupt_chunks_are_damage(tmp_path, capsys):
    repo, a, b = _repo_with_leftovers(tmp_path)
    repo.chunk_path(a).unlink()
    raw = bytearray(repo.chunk_path(b).read_bytes())
    raw[-6] ^= 0xFF
    repo.chunk_path(b).write_bytes(bytes(raw))
    quick = check_repository(repo)
    assert not quick.healthy and len(quick.problems) == 1  # a stat does not see the flipped byte
    assert "image 'one', partition 1 (ext4) at offset 0: chunk" in quick.problems[0] and "missing" in quick.problems[0]
    assert main(["check", "--repo", str(repo.root), "--read-data"]) == 1
    err = capsys.readouterr().err
    assert "at offset 4194304" in err and "2 problem(s)" in err


def test_unreadable_manifest_is_damage(tmp_path, capsys):
    repo, _, _ = _repo_with_leftovers(tmp_path)
    (repo.images_dir / "one" / "manifest.json").write_text("{not json")
    assert main(["check", "--repo", str(repo.root), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert not out["healthy"] and "not valid JSON" in out["problems"][0]
