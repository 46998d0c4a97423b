"""`lifeboat restore NAME DISK --partitions 1,2 --map 2=3`: chosen partitions onto a disk whose table is
kept; every byte outside the target partitions (table, boot code, the kept partition) stays as it was."""

from __future__ import annotations

import hashlib
import random

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk, mounted, sh, tree_hashes

from lifeboat.cli import main as cli_main
from lifeboat.engine.capture import capture
from lifeboat.engine.partial import parse_selection, plan_partitions
from lifeboat.errors import LifeboatError, TargetTooSmall
from lifeboat.layout.read import read_layout
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration


def _outside(path: str, ranges: list[tuple[int, int]], size: int) -> str:
    """sha256 of the disk's bytes outside `ranges` (byte offset, length)."""
    h, pos = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for start, length in sorted(ranges) + [(size, 0)]:
            f.seek(pos)
            left = start - pos
            while left > 0:
                block = f.read(min(left, 4 * MiB))
                h.update(block)
                left -= len(block)
            pos = start + length
    return h.hexdigest()


def test_chosen_partitions_onto_a_kept_table(workdir, lifeboat_env, capsys):
    with loop_disk(workdir, "source", 400 * MiB) as src, loop_disk(workdir, "target", 600 * MiB) as dst:
        built = build_disk(src, "gpt", [PartSpec(120, "ext4", name="system"), PartSpec(200, "ext4", name="old")],
                           workdir)
        with mounted(src.node(2), "ext4") as mnt:  # data spread past where the smaller target ends
            for i in range(30):
                (mnt / f"f{i}").write_bytes(random.Random(i).randbytes(4 * MiB))
            for i in range(1, 30, 2):
                (mnt / f"f{i}").unlink()
            sh("sync")
            expected2 = tree_hashes(mnt)
        src.refresh()
        repo = Repository.open(workdir / "repo", create=True)
        capture(src.path, "pc", repo)

        # the target: its own table; partition 2 is the data partition to keep, 3 is smaller than the image's 2
        target_parts = [PartSpec(200, "ext4", name="C"), PartSpec(150, "btrfs", name="D"), PartSpec(170, "ext4", name="E")]
        build_disk(dst, "gpt", target_parts, workdir / "t")
        layout = read_layout(dst.path)
        with open(dst.path, "r+b") as f:  # boot code that must survive
            f.write(random.Random(5).randbytes(440))
        size = dst.size()
        spans = [(layout.partition(n).start * 512, layout.partition(n).size * 512) for n in (1, 3)]
        before = _outside(dst.path, spans, size)

        with pytest.raises(LifeboatError, match="has no partition 7"):
            plan_partitions(repo, "pc", dst.path, parse_selection("1", ["1=7"]))
        with pytest.raises(LifeboatError, match="no partition 9"):
            plan_partitions(repo, "pc", dst.path, parse_selection("9"))
        with pytest.raises(LifeboatError, match="not a partition number"):
            parse_selection("1,x")

        rc = cli_main(["restore", "pc", dst.path, "--repo", str(repo.root), "--partitions", "1,2", "--map", "2=3",
                       "--yes", "--no-bootloader"])
        out, err = capsys.readouterr()
        print(out, err)
        assert rc == 0, err
        after = out.split("after the restore")[1].splitlines()[1]  # the bar: the kept partition drawn too
        assert "1 ext4 200.0 MiB▲" in after and "2 btrfs 150.0 MiB" in after and "3 ext4 170.0 MiB▼" in after
        assert "Only partition(s) 1, 3 of" in out and "2 -> 3" in out and "shrinks 200.0 MiB -> 170.0 MiB" in out

        assert read_layout(dst.path) == layout  # the table as it was
        assert _outside(dst.path, spans, size) == before  # boot code, partition 2, the gaps: byte for byte
        dst.refresh()
        assert sh("e2fsck", "-f", "-n", dst.node(1), check=False).returncode == 0
        assert sh("e2fsck", "-f", "-n", dst.node(3), check=False).returncode == 0
        with mounted(dst.node(1), "ext4", readonly=True) as mnt:
            assert tree_hashes(mnt) == built.hashes[1]
            assert int(sh("df", "-B1", "--output=size", str(mnt)).stdout.split()[-1]) > 150 * MiB  # grown
        dst.refresh()
        with mounted(dst.node(3), "ext4", readonly=True) as mnt:
            assert tree_hashes(mnt) == expected2
        src_uuid = sh("blkid", "-p", "-s", "UUID", "-o", "value", src.node(2)).stdout
        assert sh("blkid", "-p", "-s", "UUID", "-o", "value", dst.node(3)).stdout == src_uuid

        # a target partition too small for the data: refused before writing, the shortfall named
        sh("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", "-N", "3", dst.path, input=",20MiB\n")
        dst.refresh()
        whole = _outside(dst.path, [], size)
        with pytest.raises(TargetTooSmall, match=r"target partition 3 is 20.0 MiB, but partition 2 \(ext4\) of the "
                                                 r"image needs at least .* short; nothing was written"):
            plan_partitions(repo, "pc", dst.path, parse_selection("2", ["2=3"]))
        assert _outside(dst.path, [], size) == whole
