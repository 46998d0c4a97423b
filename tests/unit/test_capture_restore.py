"""The capture and restore pipelines on plain files: no root, no partclone (block maps given directly).

Capture reads "partitions" from regular files, stores chunks in a real repository and writes a real
manifest; restore writes the streams back into a target file. The parts that need a block device
(sfdisk, partx, BLKZEROOUT, mkswap, the bootloader) are covered by the integration tests.
"""

from __future__ import annotations

import hashlib
import os
import threading

import pytest
from imagekit import MiB, fake_target, gpt_layout, LINUX

from lifeboat.engine import capture as cap
from lifeboat.engine import restore as rst
from lifeboat.events import Outcome, StepFinished
from lifeboat.engine.plan import plan_restore
from lifeboat.engine.verify import verify
from lifeboat.fs.registry import CaptureMode, kind_for
from lifeboat.repo.manifest import CHUNK_SIZE, ContentKind, load_manifest
from lifeboat.repo.store import Repository

EXT4_RUNS = [(0, 1 * MiB), (3 * MiB, 2 * MiB), (9 * MiB + 4096, 8192)]  # the second run crosses window 0/1


@pytest.fixture
def repo(tmp_path):
    return Repository.open(tmp_path / "repo", create=True)


def pattern(seed: int, length: int) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (length // 32) + bytes(length % 32)


@pytest.fixture
def source(tmp_path):
    """A 'disk' file with boot code, and two partition files: ext4 with used runs, and raw content."""
    layout = gpt_layout({1: (LINUX, 12), 2: (LINUX, 4)}, 20)
    disk = tmp_path / "disk"
    with open(disk, "wb") as f:
        f.truncate(20 * MiB)
        f.write(b"\xeb\x63" + pattern(1, 510))
        f.seek(34 * 512)
        f.write(pattern(2, 4096))
    ext4, raw = tmp_path / "p1", tmp_path / "p2"
    with open(ext4, "wb") as f:
        f.truncate(12 * MiB)
        for start, length in EXT4_RUNS:
            f.seek(start)
            f.write(pattern(start, length))
        f.seek(7 * MiB)
        f.write(b"free space, not in the map" * 100)
    with open(raw, "wb") as f:
        f.truncate(4 * MiB)
        f.seek(2 * MiB + 65536)
        f.write(pattern(9, 1000))  # one non-zero 64 KiB block
    parts = [cap.SourcePartition(layout.partition(1), str(ext4), "ext4", kind_for("ext4"), "U1", "root",
                                 list(EXT4_RUNS)),
             cap.SourcePartition(layout.partition(2), str(raw), "", kind_for(""))]
    return cap.SourceInfo(str(disk), 20 * MiB, "Test disk", "S1", layout, parts)


def run_capture(info, repo, name="files"):
    events = []
    writer = cap._Writer(repo, 3, events.append, info.to_read)
    manifest = cap._capture(info, name, repo, writer, threading.Event(), 2)
    return manifest, events


def test_source_partition_reads_what_its_mode_says(source):
    ext4, raw = source.partitions
    assert (ext4.kind.mode, raw.kind.mode) == (CaptureMode.USED_BLOCKS, CaptureMode.RAW)
    assert ext4.to_read == sum(n for _, n in EXT4_RUNS) and raw.to_read == 4 * MiB
    assert source.to_read == ext4.to_read + raw.to_read
    assert (ext4.title, raw.title) == ("partition 1 (ext4)", "partition 2 (raw)")
    swap = cap.SourcePartition(ext4.entry, "/dev/null", "swap", kind_for("swap"))
    assert swap.to_read == 0


def test_capture_writes_a_manifest_that_loads_and_verifies(source, repo):
    manifest, events = run_capture(source, repo)
    assert load_manifest(repo, "files") == manifest
    ext4, raw = manifest.partitions
    assert ext4.content.kind is ContentKind.FILESYSTEM and (ext4.uuid, ext4.label) == ("U1", "root")
    assert [c.window for c in ext4.stream.chunks] == [0, 1, 2]
    assert [c.length for c in ext4.stream.chunks] == [2 * MiB, 1 * MiB, 8192]  # runs split at the window edge
    assert raw.content.kind is ContentKind.RAW and raw.content.reason == "content not recognised"
    assert raw.used_bytes == 65536 and [c.window for c in raw.stream.chunks] == [0]
    assert [r.name for r in manifest.boot_regions] == ["mbr", "post-mbr-gap"]
    assert manifest.stats.read_bytes == source.to_read
    assert StepFinished("manifest", Outcome.DONE, "files") in events
    assert verify(repo, "files").ok


def test_second_capture_stores_nothing_new(source, repo):
    first, _ = run_capture(source, repo, "one")
    second, _ = run_capture(source, repo, "two")
    assert first.stats.new_chunks > 0 and second.stats.new_chunks == 0 and second.stats.new_chunk_bytes == 0
    assert second.referenced_chunks() == first.referenced_chunks()


def test_restore_writes_each_stream_back_at_its_partition(source, repo, tmp_path, monkeypatch):
    run_capture(source, repo)
    fake_target(monkeypatch, 20 * MiB)
    plan = plan_restore(repo, "files", "/dev/sdt")
    target = tmp_path / "target"
    with open(target, "wb") as f:
        f.truncate(20 * MiB)
    fds = rst._TargetFds(str(target))
    totals = [0]
    try:
        boot_code = rst._write_boot_regions(repo, fds.buffered, plan.manifest, plan.target_layout)
        ext4 = plan.actions[0]
        rst._write_partition(repo, fds, ext4, rst._stream_of(plan.manifest, ext4), lambda e: None,
                             threading.Event(), totals, plan.total_bytes, 2)
        rst.commit_table(fds.buffered, [], boot_code)  # the boot code goes to sector 0 with the table, last
    finally:
        fds.sync_and_close()
    assert totals == [ext4.write_bytes]
    with open(target, "rb") as out, open(source.partitions[0].node, "rb") as src:
        base = ext4.target.start * 512
        for start, length in EXT4_RUNS:
            out.seek(base + start)
            src.seek(start)
            assert out.read(length) == src.read(length)
        out.seek(base + 7 * MiB)
        assert out.read(100) == bytes(100)  # free space is not copied
        out.seek(0)
        disk = open(source.path, "rb").read(34 * 512 + 4096)
        written = out.read(34 * 512 + 4096)
    assert written[:440] == disk[:440] and written[440:512] == bytes(72)  # boot code only: sfdisk writes the table
    assert written[34 * 512:] == disk[34 * 512:]


def test_a_damaged_chunk_stops_the_write_naming_where(source, repo, tmp_path, monkeypatch):
    manifest, _ = run_capture(source, repo)
    ref = manifest.partition(1).stream.chunks[1]
    repo.chunk_path(ref.digest).write_bytes(repo.chunk_path(manifest.partition(1).stream.chunks[2].digest).read_bytes())
    fake_target(monkeypatch, 20 * MiB)
    plan = plan_restore(repo, "files", "/dev/sdt")
    (tmp_path / "target").write_bytes(bytes(20 * MiB))
    fds = rst._TargetFds(str(tmp_path / "target"))
    try:
        with pytest.raises(rst.ImageCorrupt, match=f"^partition 1 \\(ext4\\) at offset {CHUNK_SIZE}: chunk "):
            rst._write_partition(repo, fds, plan.actions[0], rst._stream_of(plan.manifest, plan.actions[0]),
                                 lambda e: None, threading.Event(), [0], 1, 1)
    finally:
        fds.close()


def test_complement_of_a_block_map():
    assert rst._complement([(0, 10), (20, 5)], 40) == [(10, 10), (25, 15)]
    assert rst._complement([], 8) == [(0, 8)]
    assert rst._complement([(0, 8)], 8) == []


def test_restore_result_steps_are_typed_and_keep_their_json():
    result = rst.RestoreResult("img", "/dev/sdt", 10, 1.234)
    result.steps += [rst.StepRecord("partition table", Outcome.DONE, "gpt"),
                     rst.StepRecord("bootloader: detect", Outcome.NOT_NEEDED, "no system"),
                     rst.StepRecord("bootloader: grub", Outcome.FAILED, "no core.img")]
    assert result.failed_steps() == [result.steps[2]]
    assert result.to_json() == {
        "image": "img", "target": "/dev/sdt", "bytes_written": 10, "seconds": 1.23,
        "steps": [{"step": "partition table", "outcome": "done", "detail": "gpt"},
                  {"step": "bootloader: detect", "outcome": "not-needed", "detail": "no system"},
                  {"step": "bootloader: grub", "outcome": "failed", "detail": "no core.img"}]}


def test_no_stream_for_swap_and_empty(monkeypatch, tmp_path):
    from imagekit import office_image

    repo = Repository.open(tmp_path / "r", create=True)
    office_image(repo)
    fake_target(monkeypatch, 40 * MiB)
    plan = plan_restore(repo, "office", "/dev/sdt")
    assert [rst._stream_of(plan.manifest, a) is None for a in plan.actions] == [False, False, True, False]
    assert os.path.exists(repo.root)
