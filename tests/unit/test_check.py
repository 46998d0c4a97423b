"""`lifeboat check`: damage makes a repository unhealthy; leftovers of killed jobs are counted, not damage."""

import json

from imagekit import office_image

from lifeboat.cli import main
from lifeboat.engine.check import check_repository
from lifeboat.engine.prune import prune
from lifeboat.repo.store import Repository


def _repo_with_leftovers(tmp_path):
    repo = Repository.open(tmp_path / "r", create=True)
    manifest = office_image(repo, "one")
    repo.put_chunk(b"orphan" * 1000, 3)  # written by a capture that was killed
    (repo.tmp_dir / "manifest.json.999999999.abcd1234.part").write_bytes(b'{"schema": "lifeb')  # killed mid-write
    (repo.tmp_dir / "two.lock").write_bytes(b"")  # writer lock of a killed capture
    (repo.images_dir / "two").mkdir()  # image directory made just before the kill
    return repo, manifest


def test_leftovers_are_reported_but_healthy_and_prune_removes_them(tmp_path):
    repo, manifest = _repo_with_leftovers(tmp_path)
    report = check_repository(repo, read_data=True)
    assert report.healthy, report.problems
    lo = report.leftovers
    assert (lo.unreferenced_chunks, lo.tmp_files, lo.stale_locks, lo.empty_image_dirs) == (1, 1, 1, ("two",))
    referenced = set(manifest.referenced_chunks())
    assert report.images == 1 and report.chunks_referenced == len(referenced)
    assert report.chunks_stored == len(referenced) + 1
    assert report.bytes_read > 0
    pruned = prune(repo)
    assert pruned.removed_chunks == 1 and pruned.removed_leftovers == 3
    after = check_repository(repo)
    assert after.healthy and not after.leftovers.any


def test_missing_and_corrupt_chunks_are_damage(tmp_path, capsys):
    repo, manifest = _repo_with_leftovers(tmp_path)
    ext4 = manifest.partition(2).stream
    missing, corrupt = ext4.chunks[0], ext4.chunks[1]
    repo.chunk_path(missing.digest).unlink()
    raw = bytearray(repo.chunk_path(corrupt.digest).read_bytes())
    raw[-6] ^= 0xFF
    repo.chunk_path(corrupt.digest).write_bytes(bytes(raw))
    quick = check_repository(repo)
    assert not quick.healthy and len(quick.problems) == 1  # a stat does not see the flipped byte
    assert "image 'one', partition 2 (ext4) at offset 0: chunk" in quick.problems[0]
    assert quick.problems[0].endswith("missing")
    assert main(["check", "--repo", str(repo.root), "--read-data"]) == 1
    err = capsys.readouterr().err
    assert f"partition 2 (ext4) at offset {corrupt.offset}" in err and "2 problem(s)" in err


def test_unreadable_manifest_is_damage(tmp_path, capsys):
    repo, _ = _repo_with_leftovers(tmp_path)
    (repo.images_dir / "one" / "manifest.json").write_text("{not json")
    assert main(["check", "--repo", str(repo.root), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert not out["healthy"] and "image 'one'" in out["problems"][0] and "damaged" in out["problems"][0]
