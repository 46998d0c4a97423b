"""verify re-reads every chunk and names the partition and offset of any damage."""

from __future__ import annotations

import pytest
from imagekit import MiB, office_image

from lifeboat.engine.verify import verify
from lifeboat.repo.store import Repository


@pytest.fixture
def repo(tmp_path):
    return Repository.open(tmp_path / "repo", create=True)


def test_intact_image(repo):
    manifest = office_image(repo)
    seen = []
    report = verify(repo, "office", progress=seen.append, workers=2)
    assert report.ok and report.problems == []
    assert report.chunks == len(manifest.referenced_chunks()) == 11
    assert seen[-1].done == seen[-1].total == report.bytes


def test_corrupt_chunk_named_with_partition_and_offset(repo):
    manifest = office_image(repo)
    ref = manifest.partition(2).stream.chunks[2]
    path = repo.chunk_path(ref.digest)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    report = verify(repo, "office")
    assert not report.ok and len(report.problems) == 1
    assert report.problems[0].startswith(f"partition 2 (ext4) at offset {2 * 4 * MiB}: chunk {ref.digest[:16]} ")


def test_missing_boot_region_and_block_map(repo):
    manifest = office_image(repo)
    repo.chunk_path(manifest.boot_regions[1].digest).unlink()
    repo.chunk_path(manifest.partition(4).stream.map.digest).unlink()
    problems = verify(repo, "office").problems
    assert f"boot region post-mbr-gap (offset {34 * 512}): chunk {manifest.boot_regions[1].digest[:16]} is missing" \
        in problems
    assert any(p.startswith("partition 4 (raw) block map: chunk") and p.endswith("is missing") for p in problems)


def test_block_map_that_disagrees_with_the_chunks(repo):
    from lifeboat.fs.usedmap import encode_runs
    from lifeboat.repo.manifest import BlockMapRef, DataStream, FilesystemContent, write_manifest

    manifest = office_image(repo)
    esp = manifest.partition(1)
    blob = encode_runs([(0, 4096), (5 * MiB, 4096)])  # 4 KiB less than the chunks hold
    digest, _ = repo.put_chunk(blob, 3)
    stream = DataStream(BlockMapRef(digest, len(blob), 2), esp.stream.chunks, esp.stream.used_bytes)
    parts = (type(esp)(1, esp.size, FilesystemContent("vfat", "", "", stream)), *manifest.partitions[1:])
    write_manifest(repo, type(manifest)(**{**manifest.__dict__, "name": "odd", "partitions": parts}))
    assert verify(repo, "odd").problems == ["partition 1: block map covers 8192 bytes but chunks hold 12288"]



def rescued_image(tmp_path):
    """A real repository holding the office image as a rescue capture leaves it: 1024 bytes of partition 2
    unreadable, owned by /docs/report.odt."""
    import dataclasses

    from imagekit import office_manifest

    from lifeboat.repo.manifest import ByteRange, write_manifest
    from lifeboat.repo.store import Repository

    repo = Repository.open(tmp_path / "repo", create=True)
    manifest = office_manifest(repo, "rescued")
    part = manifest.partition(2)
    stream = dataclasses.replace(part.content.stream, unreadable=(ByteRange(8192, 1024),),
                                 unreadable_files=("/docs/report.odt",), unreadable_note="")
    parts = tuple(dataclasses.replace(p, content=dataclasses.replace(p.content, stream=stream)) if p is part else p
                  for p in manifest.partitions)
    write_manifest(repo, dataclasses.replace(manifest, partitions=parts))
    return repo


def test_verify_of_a_rescue_image_says_it_is_incomplete_and_where(tmp_path):
    """The TUI's verify: intact, with the INCOMPLETE line `lifeboat verify` prints as a warning."""
    import threading

    from lifeboat.tui.engine_backend import EngineBackend

    repo = rescued_image(tmp_path)
    outcome = EngineBackend(log_path="/dev/null").run_verify(str(repo.root), "rescued", lambda e: None,
                                                             threading.Event())
    assert outcome.lines[0].startswith("Verified: all")
    assert outcome.warnings == ("INCOMPLETE: partition 2 (ext4): 1024 bytes unreadable in 1 ranges (bytes 8192+1024); "
                                "files: /docs/report.odt",)


def test_image_lists_count_the_unreadable_bytes(tmp_path, capsys, monkeypatch):
    """`lifeboat images --json` and the TUI's image list say a rescue image is incomplete."""
    import json

    from lifeboat.cli import main
    from lifeboat.tui.engine_backend import EngineBackend

    monkeypatch.setenv("LIFEBOAT_CONFIG", str(tmp_path / "no-config.toml"))
    repo = rescued_image(tmp_path)
    assert main(["images", "--repo", str(repo.root), "--json"]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert [p["unreadable_bytes"] for p in listed["partitions"]] == [0, 1024, 0, 0]
    (info,) = EngineBackend(log_path="/dev/null").list_images(str(repo.root))
    assert info.unreadable_bytes == 1024


def test_unreadable_bytes_inside_a_luks_container_or_a_logical_volume_are_shown(tmp_path):
    """A rescue capture records a LUKS container's opened contents' and a logical volume's unreadable ranges in
    their own streams: images, verify and the restore plan (unreadable_lines) and the summaries must see them."""
    import dataclasses

    from test_lvm import _lvm_manifest

    from lifeboat.engine.rescue import unreadable_lines
    from lifeboat.repo.manifest import BlobRef, ByteRange, LuksContent, load_manifest, write_manifest
    from lifeboat.repo.store import Repository

    repo = Repository.open(tmp_path / "repo", create=True)
    manifest = _lvm_manifest(repo)
    vg = manifest.volume_groups[0]
    root = vg.lvs[0]
    lost_root = dataclasses.replace(root.content.stream, unreadable=(ByteRange(4096, 512),),
                                    unreadable_files=("/etc/fstab",))
    lvs = (dataclasses.replace(root, content=dataclasses.replace(root.content, stream=lost_root)), *vg.lvs[1:])
    esp = manifest.partitions[0]
    lost_esp = dataclasses.replace(esp.content.stream, unreadable=(ByteRange(0, 1024),), unreadable_note="filesystem metadata")
    digest, _ = repo.put_chunk(b"a LUKS header backup", 3)
    luks = LuksContent(2, "luks-uuid", "", "aes-xts-plain64", BlobRef(digest, 20),
                       dataclasses.replace(esp.content, stream=lost_esp), 16 * 1024 * 1024)
    manifest = dataclasses.replace(manifest, name="lost", partitions=(dataclasses.replace(esp, content=luks),
                                                                      *manifest.partitions[1:]),
                                   volume_groups=(dataclasses.replace(vg, lvs=lvs),))
    write_manifest(repo, manifest)
    loaded = load_manifest(repo, "lost")
    assert unreadable_lines(loaded) == [
        "partition 1 (crypto_LUKS), inside its LUKS container: 1024 bytes unreadable in 1 ranges (bytes 0+1024); "
        "files: none; filesystem metadata",
        "logical volume lbvg/root: 512 bytes unreadable in 1 ranges (bytes 4096+512); files: /etc/fstab"]
    summary = loaded.summary()
    assert summary.partitions[0].unreadable_bytes == 1024
    assert [v.unreadable_bytes for v in summary.volume_groups[0].lvs] == [512, 0, 0]
    assert summary.to_json()["volume_groups"][0]["lvs"][0]["unreadable_bytes"] == 512
