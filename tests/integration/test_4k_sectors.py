"""4K-sector disks (issue 11) on real loop devices with 4096-byte logical sectors (`losetup --sector-size`):
a 4Kn round trip, a 512-byte image restored onto a 4Kn disk and back with the table's sector numbers
converted (read back with sfdisk -d), FAT onto 4Kn made anew with 4096-byte sectors, and refusals (a
partition off the 4 KiB grid, an ext4 with 1 KiB blocks) made before a byte of the target is written."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import pytest
from diskbuilder import MiB, PartSpec, build_disk, fat_hashes, loop_disk, mounted, sh, tree_hashes

from lifeboat.engine.capture import capture
from lifeboat.engine.plan import plan_restore
from lifeboat.engine.restore import restore
from lifeboat.errors import LifeboatError
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration

FSCK = {"ext4": ["e2fsck", "-f", "-n"], "xfs": ["xfs_repair", "-n"], "btrfs": ["btrfs", "check", "--readonly"]}


def table(path: str) -> tuple[dict[str, str], dict[int, dict[str, str]]]:
    """sfdisk -d of `path`: the header fields and each partition's fields."""
    head, parts = {}, {}
    for line in sh("sfdisk", "-d", path).stdout.splitlines():
        if m := re.match(r"^\S+?(\d+) : (.*)$", line):
            parts[int(m.group(1))] = {k.strip(): v.strip() for k, v in (f.split("=", 1) for f in m.group(2).split(","))}
        elif ": " in line and not line.startswith("device:"):
            key, value = line.split(": ", 1)
            head[key] = value
    return head, parts


def check(disk, built, number: int, fstype: str) -> None:
    proc = sh(*FSCK[fstype], disk.node(number), check=False)
    assert proc.returncode == 0, f"fsck of partition {number} failed: {proc.stdout[-400:]}{proc.stderr[-400:]}"
    with mounted(disk.node(number), fstype, readonly=True) as mnt:
        assert tree_hashes(mnt) == built.hashes[number]


def test_4kn_disk_round_trip(workdir, lifeboat_env):
    with loop_disk(workdir, "src4k", 420 * MiB, 4096) as src, loop_disk(workdir, "dst4k", 420 * MiB, 4096) as dst:
        built = build_disk(src, "gpt", [PartSpec(60, "ext4", name="root"), PartSpec(0, "xfs", name="data")], workdir)
        head, parts = table(src.path)
        assert head["sector-size"] == "4096" and parts[1]["start"] == "256"
        disks = subprocess.run([sys.executable, "-m", "lifeboat", "disks", "--loop"], capture_output=True, text=True,
                               env=dict(os.environ))
        assert any(line.startswith(src.path + " ") and "4096-byte sectors" in line for line in disks.stdout.splitlines())
        repo = Repository.open(workdir / "repo", create=True)
        manifest = capture(src.path, "fourk", repo)
        assert manifest.layout.sector_size == 4096 and manifest.source.sector_size == 4096
        restore(plan_restore(repo, "fourk", dst.path), bootloader=False)
        dst.refresh()
        assert table(dst.path) == (dict(head), parts)  # disk GUID, partition GUIDs, names, sectors
        check(dst, built, 1, "ext4")
        check(dst, built, 2, "xfs")


def test_512_image_onto_4kn_and_back(workdir, lifeboat_env):
    with loop_disk(workdir, "src512", 200 * MiB) as src, loop_disk(workdir, "dst4k", 200 * MiB, 4096) as dst, \
            loop_disk(workdir, "back512", 200 * MiB) as back:
        built = build_disk(src, "gpt", [PartSpec(60, "ext4", name="root", options=("-b", "4096")),
                                            PartSpec(0, "btrfs", name="data")], workdir)
        src_head, src_parts = table(src.path)
        repo = Repository.open(workdir / "repo", create=True)
        capture(src.path, "small", repo)
        plan = plan_restore(repo, "small", dst.path)
        assert any("converted from 512-byte to 4096-byte sectors" in line for line in plan.describe())
        restore(plan, bootloader=False)
        dst.refresh()
        head, parts = table(dst.path)
        assert head["sector-size"] == "4096" and head["label-id"] == src_head["label-id"]
        for n, p in src_parts.items():
            assert int(parts[n]["start"]) * 8 == int(p["start"]), (n, parts[n], p)
            assert parts[n]["uuid"] == p["uuid"] and parts[n]["type"] == p["type"]
            if n == 1:  # ext4 keeps its size; the btrfs one fills what is left
                assert int(parts[n]["size"]) * 8 == int(p["size"])
        check(dst, built, 1, "ext4")
        check(dst, built, 2, "btrfs")
        # and back: the 4Kn disk captured, restored onto a 512-byte one
        capture(dst.path, "big-sectors", repo)
        restore(plan_restore(repo, "big-sectors", back.path), bootloader=False)
        back.refresh()
        back_head, back_parts = table(back.path)
        assert back_head["sector-size"] == "512"
        assert {n: (p["start"], p["uuid"]) for n, p in back_parts.items()} == \
               {n: (p["start"], p["uuid"]) for n, p in src_parts.items()}
        check(back, built, 1, "ext4")
        check(back, built, 2, "btrfs")


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_refused_before_writing(workdir, lifeboat_env):
    """A partition starting at sector 2049 (not on a 4 KiB boundary) and an ext4 with 1 KiB blocks (which only
    a copy onto a new filesystem could convert, and ext4 is not made anew): both refused by the plan for a 4Kn
    target, whose bytes stay as they were."""
    with loop_disk(workdir, "odd", 64 * MiB) as src, loop_disk(workdir, "small-blocks", 64 * MiB) as small, \
            loop_disk(workdir, "dst4k", 64 * MiB, 4096) as dst:
        sh("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", src.path,
           input="label: gpt\n\nstart=2049, size=20000, type=L\n")
        src.refresh()
        sh("mkfs.ext4", "-q", "-F", src.node(1))
        build_disk(small, "gpt", [PartSpec(30, "ext4", name="root", options=("-b", "1024"))], workdir)
        repo = Repository.open(workdir / "repo", create=True)
        capture(src.path, "odd", repo)
        capture(small.path, "small-blocks", repo)
        with open(dst.path, "r+b") as f:
            f.write(b"KEEP ME" * 1000)
        before = _digest(dst.backing)
        with pytest.raises(LifeboatError, match=r"partition 1: its start \(1049088 bytes\) is not a multiple of the "
                                                r"target's 4096-byte sectors.*nothing was written"):
            plan_restore(repo, "odd", dst.path)
        with pytest.raises(LifeboatError, match=r"partition 1 \(ext4\): its ext4 block size 1024 is smaller than the "
                                                r"target's 4096-byte sectors.*nothing was written"):
            plan_restore(repo, "small-blocks", dst.path)
        assert _digest(dst.backing) == before


def test_fat_onto_4kn_is_made_anew_with_4096_byte_sectors(workdir, lifeboat_env):
    """An ESP made on a 512-byte disk records 512-byte sectors in its boot sector, which a 4Kn disk cannot
    address: the plan says it is made anew, and the restored FAT has 4096-byte sectors, the same volume id
    and label, and every file (read back with mtools: this host has no vfat driver)."""
    with loop_disk(workdir, "esp512", 128 * MiB) as src, loop_disk(workdir, "dst4k", 128 * MiB, 4096) as dst:
        built = build_disk(src, "gpt", [PartSpec(48, "vfat", gpt_type="U", name="esp"),
                                        PartSpec(0, "ext4", name="root", options=("-b", "4096"))], workdir)
        volume = sh("blkid", "-p", "-o", "value", "-s", "UUID", src.node(1)).stdout.strip()
        repo = Repository.open(workdir / "repo", create=True)
        capture(src.path, "esp", repo)
        plan = plan_restore(repo, "esp", dst.path)
        said = "\n".join(plan.describe())
        assert "made anew for 4096-byte sectors (its FAT bytes-per-sector 512)" in said, said
        restore(plan, bootloader=False)
        dst.refresh()
        with open(dst.node(1), "rb") as f:
            boot_sector = f.read(512)
        assert int.from_bytes(boot_sector[11:13], "little") == 4096
        assert sh("blkid", "-p", "-o", "value", "-s", "UUID", dst.node(1)).stdout.strip() == volume
        assert sh("blkid", "-p", "-o", "value", "-s", "LABEL", dst.node(1)).stdout.strip() == "FAT1"
        assert sh("fsck.vfat", "-n", dst.node(1), check=False).returncode == 0
        assert fat_hashes(dst.node(1)) == built.hashes[1]
        check(dst, built, 2, "ext4")
