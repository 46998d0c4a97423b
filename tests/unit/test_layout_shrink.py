"""Fitting a layout onto a smaller disk: fixed partitions keep their size, the others give up the
shortfall above their minimum, swap only when short, and a refusal names the partition and bytes."""

from __future__ import annotations

import pytest
from imagekit import ESP, LINUX, MiB, SWAP, fake_target, gpt_layout, office_image

from lifeboat.engine.plan import plan_restore
from lifeboat.errors import TargetTooSmall
from lifeboat.layout.fit import ALIGN
from lifeboat.layout.shrink import MIN_SWAP, ShrinkNeed, shrink_layout
from lifeboat.repo.store import Repository

LAYOUT = gpt_layout({1: (ESP, 100), 2: (LINUX, 1000), 3: (LINUX, 2000), 4: (SWAP, 512)}, 3700)
NEEDS = {
    1: ShrinkNeed(1, 0, False),
    2: ShrinkNeed(2, 300 * MiB, True, title="partition 2 (ext4)", data_bytes=250 * MiB),
    3: ShrinkNeed(3, 400 * MiB, True, title="partition 3 (xfs)", data_bytes=300 * MiB),
    4: ShrinkNeed(4, 0, True, swap=True, title="partition 4 (swap)"),
}


def _sizes(layout) -> dict[int, int]:
    return {p.number: p.size * 512 // MiB for p in layout.partitions}


def test_data_partitions_shrink_in_proportion_and_the_rest_keep_their_size():
    layout, fitted, notes = shrink_layout(LAYOUT, 2500 * MiB, NEEDS)
    sizes = _sizes(layout)
    assert sizes[1] == 100 and sizes[4] == 512 and notes == []
    assert 300 <= sizes[2] < 1000 and 400 <= sizes[3] < 2000
    # the room above the minimum is shared in proportion to what each had (700 : 1600)
    assert abs((sizes[2] - 300) / (sizes[3] - 400) - 700 / 1600) < 0.05
    ends = [p.end for p in layout.partitions]
    assert max(ends) <= 2500 * 2048 - 34
    for p in layout.partitions:
        assert p.start % ALIGN == 0
    assert [f.source.size for f in fitted] == [p.size for p in LAYOUT.partitions]
    starts = sorted(p.start for p in layout.partitions)
    assert starts[0] == LAYOUT.partitions[0].start  # the first partition never moves


def test_swap_shrinks_only_when_the_data_partitions_are_at_their_minimum():
    layout, _, notes = shrink_layout(LAYOUT, 1100 * MiB, NEEDS)
    sizes = _sizes(layout)
    assert sizes[2] == 300 and sizes[3] == 400 and MIN_SWAP // MiB <= sizes[4] < 512
    assert len(notes) == 1 and notes[0].startswith("swap partition 4 shrinks from 512.0 MiB")


def test_too_small_names_the_partition_and_the_shortfall():
    # minimum: 1 MiB gap + 100 + 300 + 400 + 64 MiB of swap, and the backup GPT
    with pytest.raises(TargetTooSmall) as err:
        shrink_layout(LAYOUT, 800 * MiB, NEEDS)
    text = str(err.value)
    assert "partition 3 (xfs) holds 300.0 MiB of data and needs at least 400.0 MiB" in text
    short = int(text.split(" bytes) short")[0].rsplit("(", 1)[1])
    assert short == (1 + 100 + 300 + 400 + 64 - 800) * MiB + 33 * 512  # the backup GPT
    assert "nothing was written" in text


def test_plan_refuses_an_image_whose_partitions_cannot_shrink(tmp_path, monkeypatch):
    repo = Repository.open(tmp_path / "repo", create=True)
    office_image(repo)  # its ext4 is too small to shrink below its 16 MiB, its raw partition cannot
    fake_target(monkeypatch, 30 * MiB)
    with pytest.raises(TargetTooSmall, match=r"short; partition 2 \(ext4\) holds"):
        plan_restore(repo, "office", "/dev/sdt")


def test_minimum_bytes_is_the_smallest_disk_that_fits():
    from lifeboat.layout.shrink import minimum_bytes

    least = minimum_bytes(LAYOUT, NEEDS)
    assert least == (1 + 100 + 300 + 400 + 64) * MiB + 33 * 512
    shrink_layout(LAYOUT, least, NEEDS)
    with pytest.raises(TargetTooSmall, match=r"\(512 bytes\) short"):
        shrink_layout(LAYOUT, least - 512, NEEDS)


def test_mbr_logical_partitions_shrink_inside_their_extended_container():
    from lifeboat.layout.model import DiskLayout, PartitionEntry

    parts = (PartitionEntry(1, 2048, 400 * 2048, "83"), PartitionEntry(2, 402 * 2048, 1201 * 2048, "5"),
             PartitionEntry(5, 403 * 2048, 600 * 2048, "83"), PartitionEntry(6, 1004 * 2048, 599 * 2048, "7"))
    layout = DiskLayout("dos", "0x1234abcd", 512, 1603 * 2048, parts)
    needs = {1: ShrinkNeed(1, 100 * MiB, True, title="partition 1 (ext4)"),
             5: ShrinkNeed(5, 200 * MiB, True, title="partition 5 (ext4)"),
             6: ShrinkNeed(6, 100 * MiB, True, title="partition 6 (ntfs)")}
    fitted, _, _ = shrink_layout(layout, 1000 * MiB, needs)
    p = {e.number: e for e in fitted.partitions}
    assert p[5].start - p[2].start == 2048 and p[6].start - p[5].end - 1 == 2048  # EBR gaps kept
    assert p[2].end == p[6].end and p[6].end < 1000 * 2048
    assert p[1].size >= 100 * 2048 and p[5].size >= 200 * 2048 and p[6].size >= 100 * 2048
