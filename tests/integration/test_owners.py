"""Which file owns a damaged byte range, on xfs, btrfs and ntfs (ext4 is covered end to end in
test_rescue.py).

The expected owner's physical location comes from tools independent of lifeboat.fs.owners: FIEMAP
(filefrag) for xfs, btrfs-map-logical to turn btrfs's logical addresses into device offsets, and the
file's run list (ntfscluster -F) with the cluster size (ntfscluster -i) for ntfs.
"""

from __future__ import annotations

import re

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk, mounted, sh

from lifeboat.fs.owners import owners_of

pytestmark = pytest.mark.integration


def _first_extent(path) -> tuple[int, int]:
    """(physical byte offset, length) of a file's first extent, as FIEMAP reports it."""
    out = sh("filefrag", "-v", "-b512", str(path)).stdout
    found = re.search(r"^\s*0:\s+\d+\.\.\s*\d+:\s+(\d+)\.\.\s*(\d+):", out, re.M)
    start, end = int(found.group(1)), int(found.group(2))
    return start * 512, (end - start + 1) * 512


def _big_file(mnt) -> str:
    return max((p for p in mnt.rglob("*.bin")), key=lambda p: p.stat().st_size)


@pytest.fixture(scope="module")
def disk(tmp_path_factory):
    base = tmp_path_factory.mktemp("owners")
    with loop_disk(base, "owners", 520 * MiB) as d:
        build_disk(d, "gpt", [PartSpec(320, "xfs", seed=3), PartSpec(150, "btrfs", seed=4),
                                     PartSpec(24, "ntfs", seed=5)], base)
        yield d


def test_xfs_file_is_named(disk):
    node = disk.node(1)
    with mounted(node, "xfs", readonly=True) as mnt:
        path = _big_file(mnt)
        name = "/" + str(path.relative_to(mnt))
        offset, _ = _first_extent(path)
    owners = owners_of("xfs", node, [(offset + 4096, 512)])
    assert owners.files == (name,), owners


def test_btrfs_file_is_named(disk):
    node = disk.node(2)
    with mounted(node, "btrfs", readonly=True) as mnt:
        path = _big_file(mnt)
        name = "/" + str(path.relative_to(mnt))
        logical, _ = _first_extent(path)  # btrfs's FIEMAP answers in its logical address space
    mapped = sh("btrfs-map-logical", "-l", str(logical + 4096), node).stdout
    physical = int(re.search(r"physical (\d+)", mapped).group(1))
    owners = owners_of("btrfs", node, [(physical, 512)])
    assert owners.files == (name,), owners


def test_unowned_metadata_is_said_so(disk):
    owners = owners_of("xfs", disk.node(1), [(0, 512)])  # the superblock
    assert owners.files == () and "filesystem metadata" in owners.note


def test_ntfs_file_is_named(disk):
    node = disk.node(3)
    with mounted(node, "ntfs", readonly=True) as mnt:
        path = _big_file(mnt)
        name = "/" + str(path.relative_to(mnt))
    cluster = int(re.search(r"bytes per cluster\s*:\s*(\d+)", sh("ntfscluster", "-i", node).stdout).group(1))
    runs = sh("ntfscluster", "-F", name, node).stdout
    lcn = int(re.search(r"VCN\s+LCN\s+Length\s*\n\s*0\s+(\d+)", runs).group(1))
    owners = owners_of("ntfs", node, [(lcn * cluster + 1024, 512)])
    assert owners.files == (name,), owners


def test_btrfs_metadata_is_said_so(disk):
    owners = owners_of("btrfs", disk.node(2), [(64 * 1024, 512)])  # the primary superblock: in no chunk
    assert owners.files == () and owners.note == "filesystem metadata", owners


def test_ntfs_metadata_is_said_so(disk):
    owners = owners_of("ntfs", disk.node(3), [(0, 512)])  # the boot sector ($Boot)
    assert owners.files == () and owners.note == "filesystem metadata", owners
