"""plan_restore against an image in a real repository and a target disk that only exists as disk_info."""

from __future__ import annotations

import pytest
from imagekit import MiB, fake_target, office_image

from lifeboat.engine.plan import plan_restore
from lifeboat.errors import ImageCorrupt, LifeboatError, TargetTooSmall, ToolMissing, UnsafeTarget
from lifeboat.fs.registry import CaptureMode
from lifeboat.repo.manifest import BlobRef, LuksContent, write_manifest
from lifeboat.repo.store import Repository


@pytest.fixture
def repo(tmp_path):
    repo = Repository.open(tmp_path / "repo", create=True)
    office_image(repo)
    return repo


def test_same_size_target_gets_the_image_as_it_was(repo, monkeypatch):
    fake_target(monkeypatch, 40 * MiB)
    plan = plan_restore(repo, "office", "/dev/sdt")
    modes = [(a.number, a.fstype, a.mode, a.grows) for a in plan.actions]
    assert modes == [(1, "vfat", CaptureMode.USED_BLOCKS, False), (2, "ext4", CaptureMode.USED_BLOCKS, False),
                     (3, "swap", CaptureMode.SWAP, False), (4, "", CaptureMode.RAW, False)]
    assert [a.write_bytes for a in plan.actions] == [4096 + 8192, 65536 + 8192, 0, 65536]
    assert plan.total_bytes == 4096 + 8192 + 65536 + 8192 + 65536
    assert plan.target_layout.disk_id == plan.source_layout.disk_id
    text = "\n".join(plan.describe())
    assert "Restore image 'office' (from Office PC disk, 40.0 MiB" in text
    assert "EVERYTHING on /dev/sdt will be replaced." in text and "no partition table (blank)" in text
    assert "new swap, same UUID" in text and "64.0 KiB raw" in text
    assert "Boot regions: mbr, post-mbr-gap." in text


def test_larger_target_grows_what_can_grow(repo, monkeypatch):
    fake_target(monkeypatch, 80 * MiB)
    plan = plan_restore(repo, "office", "/dev/sdt")
    by_number = {a.number: a for a in plan.actions}
    assert by_number[2].grows and by_number[2].grow == "resize2fs"
    assert not by_number[1].grows and not by_number[3].grows  # the ESP and swap keep their size
    # an unknown content's partition gets its share of the room, its content copied as it is
    assert by_number[4].grows and by_number[4].grow == "" and by_number[4].note == "content copied as is, its size unchanged"
    data = plan.to_json()
    assert data["actions"][1]["mode"] == "used-blocks" and data["actions"][1]["grow_tool"] == "resize2fs"
    assert set(data) == {"image", "repo", "target", "target_size", "current_layout", "target_layout", "actions",
                         "total_bytes", "notes", "keep_table", "source_sector_size", "target_sector_size",
                         "volume_groups", "volumes", "luks_containers"}


def test_refusals_before_anything_is_written(repo, monkeypatch):
    fake_target(monkeypatch, 20 * MiB)
    with pytest.raises(TargetTooSmall, match="short"):
        plan_restore(repo, "office", "/dev/sdt")
    fake_target(monkeypatch, 40 * MiB, unsafe="it holds the mounted filesystem /")
    with pytest.raises(UnsafeTarget, match="refusing to write to /dev/sdt: it holds the mounted filesystem /"):
        plan_restore(repo, "office", "/dev/sdt")
    fake_target(monkeypatch, 80 * MiB, tools_missing=("resize2fs",))
    with pytest.raises(ToolMissing, match="resize2fs"):
        plan_restore(repo, "office", "/dev/sdt")


def test_missing_chunk_is_named_with_partition_and_offset(repo, monkeypatch):
    fake_target(monkeypatch, 40 * MiB)
    manifest = plan_restore(repo, "office", "/dev/sdt").manifest
    ref = manifest.partition(2).stream.chunks[1]
    repo.chunk_path(ref.digest).unlink()
    with pytest.raises(ImageCorrupt) as caught:
        plan_restore(repo, "office", "/dev/sdt")
    assert str(caught.value) == (f"image 'office' is damaged: partition 2 (ext4) at offset {4 * MiB}: "
                                 f"chunk {ref.digest[:16]} missing; nothing was written")


def test_content_this_version_cannot_restore_is_refused(repo, monkeypatch):
    fake_target(monkeypatch, 40 * MiB)
    manifest = plan_restore(repo, "office", "/dev/sdt").manifest
    luks = LuksContent(2, "u", "", "aes-xts-plain64", BlobRef("ab" * 32, 4096))
    parts = tuple(p if p.number != 2 else type(p)(2, p.size, luks) for p in manifest.partitions)
    write_manifest(repo, type(manifest)(**{**manifest.__dict__, "name": "locked", "partitions": parts}))
    with pytest.raises(LifeboatError, match="partition 2 \\(crypto_LUKS\\) holds luks content, which this Lifeboat "
                                            "cannot restore yet; nothing was written"):
        plan_restore(repo, "locked", "/dev/sdt")
