from lifeboat.layout.model import DiskLayout, PartitionEntry
from lifeboat.layout.write import partition_node, sfdisk_script


def test_gpt_script_carries_every_identifier():
    layout = DiskLayout("gpt", "11111111-2222-3333-4444-555555555555", 512, 204800, (
        PartitionEntry(1, 2048, 2048, "21686148-6449-6E6F-744E-656564454649", uuid="AAAA", name="bios"),
        PartitionEntry(2, 4096, 20480, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", uuid="BBBB", name='EFI "sys"',
                       attrs="RequiredPartition"),
    ), first_lba=34, last_lba=204766)
    script = sfdisk_script(layout)
    assert "label: gpt\nlabel-id: 11111111-2222-3333-4444-555555555555\n" in script
    assert "first-lba: 34\nlast-lba: 204766\n" in script
    assert 'part1 : start=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649, uuid=AAAA, name="bios"' in script
    assert 'name="EFI sys", attrs="RequiredPartition"' in script


def test_mbr_script_numbers_logical_partitions_and_keeps_the_active_flag():
    layout = DiskLayout("dos", "0x1234abcd", 512, 204800, (
        PartitionEntry(1, 2048, 2048, "83", bootable=True),
        PartitionEntry(2, 4096, 100000, "5"),
        PartitionEntry(5, 6144, 2048, "7"),
    ))
    script = sfdisk_script(layout)
    assert "label-id: 0x1234abcd" in script
    assert "part1 : start=2048, size=2048, type=83, bootable" in script
    assert "part5 : start=6144, size=2048, type=7" in script
    assert "first-lba" not in script


def test_layout_json_round_trip():
    layout = DiskLayout("gpt", "D", 512, 100, (PartitionEntry(1, 34, 10, "X", flags=("boot", "esp")),))
    assert DiskLayout.from_json(layout.to_json()) == layout


def test_partition_node_names():
    assert partition_node("/dev/sda", 2) == "/dev/sda2"
    assert partition_node("/dev/nvme0n1", 1) == "/dev/nvme0n1p1"
    assert partition_node("/dev/loop7", 3) == "/dev/loop7p3"
