"""4K-sector support, pure parts: a table converted between sector sizes, and the sector size each
filesystem records (synthetic superblocks)."""

from __future__ import annotations

import struct

import pytest

from lifeboat.errors import LifeboatError
from lifeboat.fs.sectors import sector_limit
from lifeboat.layout.fit import fit_layout
from lifeboat.layout.model import DiskLayout, PartitionEntry, gpt_head_sectors
from lifeboat.layout.sectors import convert_layout

MiB = 1 << 20


def layout(parts, ss=512, disk_mib=200):
    return DiskLayout("gpt", "D1", ss, disk_mib * MiB // ss, tuple(parts), first_lba=gpt_head_sectors(ss) if ss == 4096 else 2048)


def test_gpt_table_area_follows_the_sector_size():
    assert gpt_head_sectors(512) == 34 and gpt_head_sectors(4096) == 6
    four = layout([PartitionEntry(1, 256, 2560, "L")], 4096)
    assert four.min_disk_sectors == 256 + 2560 + 5  # backup header + 4 entry sectors
    assert four.with_partitions(list(four.partitions), 51200).last_lba == 51200 - 6


def test_512_table_converted_to_4096_and_back():
    src = layout([PartitionEntry(1, 2048, 122880, "L", uuid="A"), PartitionEntry(2, 124928, 200000, "L", uuid="B")])
    four = convert_layout(src, 4096)
    assert [(p.start, p.size, p.uuid) for p in four.partitions] == [(256, 15360, "A"), (15616, 25000, "B")]
    assert four.sector_size == 4096 and four.disk_sectors == 200 * MiB // 4096 and four.first_lba == 256
    assert convert_layout(four, 512).partitions == src.partitions
    fitted, _ = fit_layout(four, 200 * MiB)
    assert fitted.last_lba == 200 * MiB // 4096 - 6


def test_misaligned_partition_refused_with_its_offset():
    src = layout([PartitionEntry(1, 2048, 8, "L"), PartitionEntry(2, 2057, 100, "L")])
    with pytest.raises(LifeboatError, match=r"partition 2: its start \(1053184 bytes\) is not a multiple"):
        convert_layout(src, 4096)
    with pytest.raises(LifeboatError, match=r"partition 1: its size \(512 bytes\)"):  # rounded up, it reaches p2
        convert_layout(layout([PartitionEntry(1, 2048, 1, "L"), PartitionEntry(2, 2049, 7, "L")]), 4096)


def test_a_size_off_the_target_sectors_is_rounded_up_when_there_is_room():
    """An installer's last partition ends where the 512-byte table's usable area ends (34 sectors before the
    disk's end): its size is no whole number of 4 KiB sectors. It gets the next whole sector."""
    src = layout([PartitionEntry(1, 2048, 4096, "L"), PartitionEntry(2, 6144, 403_423, "L")])
    four = convert_layout(src, 4096)
    assert [(p.start, p.size) for p in four.partitions] == [(256, 512), (768, 50_428)]  # 403_423 / 8 = 50_427.9
    end_of_table = layout([PartitionEntry(1, 2048, 200 * MiB // 512 - 2048 - 33, "L")])  # up to the last usable LBA
    four = convert_layout(end_of_table, 4096)
    assert four.partitions[0].end == 200 * MiB // 4096 - 5  # past the 4Kn usable area (which ends 6 before)
    assert four.disk_sectors == four.partitions[0].end + 6 == four.min_disk_sectors  # backup GPT: 5 sectors
    grown, fitted = fit_layout(four, 210 * MiB)
    assert grown.partitions[0].end <= grown.last_lba and fitted[0].grows


def _head() -> bytearray:
    return bytearray(4096)


def test_sector_limits_from_superblocks():
    ext = _head()
    struct.pack_into("<I", ext, 1024 + 24, 0)  # 1 KiB blocks
    struct.pack_into("<H", ext, 1024 + 56, 0xEF53)
    assert sector_limit("ext4", bytes(ext)).largest == 1024
    struct.pack_into("<I", ext, 1024 + 24, 2)
    assert sector_limit("ext4", bytes(ext)).largest == 4096
    xfs = _head()
    xfs[:4] = b"XFSB"
    struct.pack_into(">H", xfs, 102, 512)
    assert sector_limit("xfs", bytes(xfs)).what == "XFS sector size (sectsz) 512"
    fat = _head()
    struct.pack_into("<H", fat, 11, 512)
    assert sector_limit("vfat", bytes(fat)).largest == 512
    struct.pack_into("<H", fat, 11, 4096)
    assert sector_limit("vfat", bytes(fat)).largest == 4096
    assert sector_limit("btrfs", bytes(_head())) is None
    assert sector_limit("ext4", bytes(_head())) is None  # no magic: not guessed
