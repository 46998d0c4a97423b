"""fit_layout is pure: every rule of growing and refusing, without a disk."""

import pytest

from lifeboat.errors import TargetTooSmall
from lifeboat.layout.fit import fit_layout
from lifeboat.layout.model import GPT_BIOS_BOOT, GPT_ESP, DiskLayout, PartitionEntry

GiB = 1024**3
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def gpt(*parts, disk_gib=10):
    sectors = disk_gib * GiB // 512
    return DiskLayout("gpt", "D1SK", 512, sectors, tuple(parts), first_lba=34, last_lba=sectors - 34)


def test_same_size_keeps_everything_exactly():
    layout = gpt(PartitionEntry(1, 2048, 4096, GPT_ESP), PartitionEntry(2, 6144, 1000000, LINUX, uuid="U2"))
    fitted, parts = fit_layout(layout, 10 * GiB)
    assert fitted == layout
    assert not any(p.grows for p in parts)


def test_larger_disk_grows_data_partitions_in_proportion_and_keeps_esp_and_bios_boot():
    layout = gpt(
        PartitionEntry(1, 2048, 2048, GPT_BIOS_BOOT),
        PartitionEntry(2, 4096, 204800, GPT_ESP),
        PartitionEntry(3, 208896, 4 * 2097152, LINUX),  # 4 GiB
        PartitionEntry(4, 208896 + 4 * 2097152, 2 * 2097152, LINUX),  # 2 GiB
    )
    fitted, parts = fit_layout(layout, 20 * GiB)
    p = {e.number: e for e in fitted.partitions}
    assert p[1] == layout.partitions[0] and p[2] == layout.partitions[1]
    grow3, grow4 = p[3].size - layout.partitions[2].size, p[4].size - layout.partitions[3].size
    assert grow3 > 0 and grow4 > 0
    assert abs(grow3 / grow4 - 2.0) < 0.01  # in proportion to their sizes
    assert p[4].start == p[3].end + 1  # the gap (none) is kept
    assert all(e.start % 2048 == 0 and e.size % 2048 == 0 for e in fitted.partitions)
    assert p[4].end <= fitted.last_lba
    assert fitted.last_lba == 20 * GiB // 512 - 34


def test_keep_size_partitions_do_not_grow():
    layout = gpt(PartitionEntry(1, 2048, 204800, LINUX), PartitionEntry(2, 206848, 204800, LINUX))
    fitted, _ = fit_layout(layout, 20 * GiB, keep_size=frozenset({1}))
    assert fitted.partition(1).size == 204800
    assert fitted.partition(2).size > 204800


def test_smaller_target_that_still_holds_every_partition_is_accepted():
    layout = gpt(PartitionEntry(1, 2048, 2097152, LINUX))  # 1 GiB on a 10 GiB disk
    fitted, _ = fit_layout(layout, 2 * GiB)
    assert fitted.partition(1) == layout.partition(1)
    assert fitted.last_lba == 2 * GiB // 512 - 34


def test_too_small_target_is_refused_with_the_shortfall():
    layout = gpt(PartitionEntry(1, 2048, 4 * 2097152, LINUX))
    with pytest.raises(TargetTooSmall) as err:
        fit_layout(layout, 2 * GiB)
    short = (layout.min_disk_sectors - 2 * GiB // 512) * 512
    assert f"{short} bytes" in str(err.value)


def test_mbr_extended_container_follows_its_logical_partitions():
    sectors = 10 * GiB // 512
    layout = DiskLayout("dos", "0x12345678", 512, sectors, (
        PartitionEntry(1, 2048, 1048576, "83", bootable=True),
        PartitionEntry(2, 1050624, 2099200, "5"),
        PartitionEntry(5, 1052672, 1048576, "83"),
        PartitionEntry(6, 2103296, 1046528, "7"),
    ))
    fitted, _ = fit_layout(layout, 20 * GiB)
    ext, l5, l6 = fitted.partition(2), fitted.partition(5), fitted.partition(6)
    assert l5.start - ext.start == 2048  # room for the EBR kept
    assert ext.end >= l6.end and ext.start <= l5.start
    assert l6.start - l5.end - 1 == 2048
    assert fitted.partition(1).bootable
