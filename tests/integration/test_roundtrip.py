"""Capture → wipe → restore on real loop disks, to the same disk and to a larger one.

Asserts outcomes: the partition table (identifiers included), boot regions byte for byte, fsck,
and every file's hash.
"""

from __future__ import annotations

import pytest
from diskbuilder import (
    MiB,
    PartSpec,
    build_disk,
    fat_hashes,
    install_boot_code,
    loop_disk,
    mounted,
    partition_digest,
    read_boot_regions,
    sfdisk_dump,
    sh,
    tree_hashes,
    wipe,
)

from lifeboat.engine.capture import capture
from lifeboat.engine.plan import plan_restore
from lifeboat.engine.restore import restore
from lifeboat.engine.verify import verify
from lifeboat.layout.read import read_layout
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration

GPT_SPECS = [
    PartSpec(1, "bios-boot", gpt_type="21686148-6449-6E6F-744E-656564454649", name="bios"),
    PartSpec(40, "vfat", gpt_type="U", name="EFI System"),
    PartSpec(120, "ext4", name="root"),
    PartSpec(320, "xfs", name="srv"),
    PartSpec(150, "btrfs", name="home"),
    PartSpec(100, "ntfs", gpt_type="EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", name="Windows"),
    PartSpec(16, "swap", gpt_type="S"),
    PartSpec(8, "raw", name="unknown"),
    PartSpec(40, "exfat", gpt_type="EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", name="exchange"),
]
MBR_SPECS = [
    PartSpec(100, "ext4", mbr_type="83"),
    PartSpec(0, "extended"),
    PartSpec(100, "ntfs", mbr_type="7"),
    PartSpec(40, "vfat", mbr_type="c"),
    PartSpec(16, "swap", mbr_type="82"),
]
FSCK = {
    "ext4": ["e2fsck", "-f", "-n"],
    "xfs": ["xfs_repair", "-n"],
    "btrfs": ["btrfs", "check", "--readonly"],
    "vfat": ["fsck.vfat", "-n"],
    "ntfs": ["ntfsfix", "--no-action"],
    "exfat": ["fsck.exfat", "-n"],
}


def assert_contents(disk, built) -> None:
    """Every filesystem checks clean and holds exactly the files it was built with."""
    for number, expected in built.hashes.items():
        spec = built.specs[number]
        node = disk.node(number)
        disk.refresh()  # this host's kernel drops partition nodes whenever udev re-reads the disk
        proc = sh(*FSCK[spec.fstype], node, check=False)
        assert proc.returncode == 0, f"fsck of partition {number} ({spec.fstype}) failed: {proc.stdout[-400:]}{proc.stderr[-400:]}"
        disk.refresh()
        if spec.fstype == "vfat":
            got = fat_hashes(node)
        else:
            with mounted(node, spec.fstype, readonly=True) as mnt:
                got = tree_hashes(mnt)
        assert got == expected, f"partition {number} ({spec.fstype}): files differ"


def fs_size(node: str, fstype: str) -> int:
    """Size in bytes the filesystem itself believes it has."""
    if fstype == "ext4":
        info = dict(line.split(":", 1) for line in sh("dumpe2fs", "-h", node).stdout.splitlines() if ":" in line)
        return int(info["Block count"]) * int(info["Block size"])
    if fstype in ("xfs", "btrfs", "ntfs"):
        with mounted(node, fstype, readonly=True) as mnt:
            out = sh("df", "-B1", "--output=size", str(mnt)).stdout.split()
            return int(out[-1])
    raise ValueError(fstype)


def _roundtrip(workdir, label, specs, size, lifeboat_env):
    with loop_disk(workdir, "source", size) as src, loop_disk(workdir, "larger", size * 2) as big:
        built = build_disk(src, label, specs, workdir)
        boot = install_boot_code(src, label, 2048)
        table = sfdisk_dump(src)
        # the source was a fresh sparse file and the wipe zeroes it: a same-size restore must give
        # back every partition byte for byte. Not swap (recreated, not copied), not btrfs (mkfs.btrfs
        # leaves its first temporary chunks behind in what becomes free space, which is not copied).
        digests = {n: partition_digest(src, n) for n, s in built.specs.items() if s.fstype not in ("swap", "btrfs")}
        layout = read_layout(src.path)
        repo = Repository.open(workdir / "repo", create=True)
        manifest = capture(src.path, "machine", repo)
        assert verify(repo, "machine").ok

        # partition types the engine must recognise, and swap recorded but not copied
        modes = {p.number: (p.fstype, p.mode) for p in manifest.partitions}
        for number, spec in built.specs.items():
            if spec.fstype in ("ext4", "xfs", "btrfs", "vfat", "ntfs", "exfat"):
                assert modes[number] == (spec.fstype, "used-blocks")
            elif spec.fstype == "swap":
                assert modes[number] == ("swap", "swap")
            else:
                assert modes[number][1] == "raw"

        wipe(src)
        restore(plan_restore(repo, "machine", src.path), bootloader=False)
        assert sfdisk_dump(src) == table
        assert read_boot_regions(src, label, 2048) == boot
        assert {n: partition_digest(src, n) for n in digests} == digests  # before any mount touches them
        assert_contents(src, built)
        exfat = [n for n, s in built.specs.items() if s.fstype == "exfat"]
        for n in exfat:
            assert sh("fsck.exfat", "-n", src.node(n), check=False).returncode == 0
        swap = [n for n, s in built.specs.items() if s.fstype == "swap"][0]
        assert sh("blkid", "-p", "-s", "UUID", "-o", "value", src.node(swap)).stdout.strip() == next(
            p.uuid for p in manifest.partitions if p.number == swap
        )

        plan = plan_restore(repo, "machine", big.path)
        restore(plan, bootloader=False)
        grown = read_layout(big.path)
        assert grown.disk_id == layout.disk_id
        assert [p.uuid for p in grown.partitions] == [p.uuid for p in layout.partitions]
        assert read_boot_regions(big, label, 2048) == boot
        assert_contents(big, built)
        for action in plan.actions:
            if action.fstype in ("ext4", "xfs", "btrfs", "ntfs"):
                big.refresh()
                assert action.grows, f"partition {action.number} should grow on a disk twice the size"
                assert fs_size(big.node(action.number), action.fstype) > action.source.size * 512 * 1.5
            if action.fstype in ("vfat", "swap") or action.mode == "raw" and label == "gpt" and action.number == 1:
                assert action.target.size == action.source.size, f"partition {action.number} must keep its size"


def test_gpt_roundtrip_same_and_larger(workdir, lifeboat_env):
    _roundtrip(workdir, "gpt", GPT_SPECS, 900 * MiB, lifeboat_env)


def test_mbr_with_logical_partitions_roundtrip(workdir, lifeboat_env):
    _roundtrip(workdir, "dos", MBR_SPECS, 320 * MiB, lifeboat_env)


def test_second_capture_stores_only_changed_chunks(workdir, lifeboat_env):
    specs = [PartSpec(200, "ext4", name="data")]
    with loop_disk(workdir, "source", 260 * MiB) as src:
        build_disk(src, "gpt", specs, workdir)
        repo = Repository.open(workdir / "repo", create=True)
        first = capture(src.path, "monday", repo)
        total_chunks = len(first.partitions[0].stream.chunks)
        assert total_chunks >= 6
        with mounted(src.node(1), "ext4") as mnt:
            (mnt / "dir0" / "file0.bin").write_bytes(b"changed on tuesday\n" * 100)
        src.refresh()
        second = capture(src.path, "tuesday", repo)
        new = second.stats.new_chunks
        print(f"second capture: {new} new chunks of {total_chunks}")
        # one changed file touches its data block, an inode table block, bitmaps and the journal
        assert 1 <= new <= 8, f"{new} new chunks of {total_chunks} after changing one small file"
        assert second.stats.new_chunk_bytes < first.stats.new_chunk_bytes / 2
        assert verify(repo, "monday").ok and verify(repo, "tuesday").ok
