"""Restore onto a disk about 60 % of the source's size, and onto one too small by a known amount.

Real parts: loop disks, resize2fs, btrfs, mkfs.xfs + rsync, mtools, the FUSE splice and image view.
Each filesystem is filled and then thinned, so its data lies all over it and beyond the new end:
ext4, btrfs and ntfs really must be shrunk in place (data moved), xfs re-created and its files copied.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
from pathlib import Path

import pytest
from diskbuilder import MiB, PartSpec, build_disk, fat_hashes, loop_disk, mounted, sh

from lifeboat.engine.capture import capture
from lifeboat.engine.plan import plan_restore
from lifeboat.engine.restore import restore
from lifeboat.engine.shrink_plan import minimum_disk_bytes
from lifeboat.errors import TargetTooSmall
from lifeboat.fs.shrink import ShrinkMethod
from lifeboat.layout.read import read_layout
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration

SPECS = [
    PartSpec(1, "bios-boot", gpt_type="21686148-6449-6E6F-744E-656564454649", name="bios"),
    PartSpec(40, "vfat", gpt_type="U", name="EFI System"),
    PartSpec(300, "ext4", name="root"),
    PartSpec(700, "xfs", name="srv"),
    PartSpec(400, "btrfs", name="home"),
    PartSpec(64, "swap", gpt_type="S"),
    PartSpec(200, "ntfs", gpt_type="EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", name="Windows"),
]
FILLS = {3: (200, 60), 4: (80, 60), 5: (200, 60), 7: (150, 50)}  # partition: (MiB written, MiB kept)
FSCK = {"ext4": ["e2fsck", "-f", "-n"], "xfs": ["xfs_repair", "-n"], "btrfs": ["btrfs", "check", "--readonly"],
        "ntfs": ["ntfsfix", "--no-action"]}


def _fill(mnt: Path, number: int, written: int, kept: int) -> None:
    """Fill with 5 MiB files, then delete files spread over the whole filesystem, and add the things a
    copy must keep: owner, mode, xattr, ACL, hard links, a sparse file."""
    rng = random.Random(number)
    fill = mnt / "fill"
    fill.mkdir()
    names = []
    for i in range(written // 5):
        path = fill / f"f{i:03}"
        path.write_bytes(rng.randbytes(5 * MiB))
        names.append(path)
    sh("sync")
    for path in names[1::2][: (written - kept) // 5]:
        path.unlink()
    if number == 7:  # ntfs-3g maps no owners, modes or ACLs without a user mapping: files only
        return
    special = mnt / "special"
    special.mkdir()
    (special / "owned").write_bytes(b"owned by 1234:5678\n")
    os.chown(special / "owned", 1234, 5678)
    os.chmod(special / "owned", 0o640)
    os.setxattr(special / "owned", "user.lifeboat", b"kept")
    sh("setfacl", "-m", "u:4321:r", str(special / "owned"))
    (special / "linked").write_bytes(b"two names\n")
    os.link(special / "linked", special / "linked-too")
    with open(special / "sparse", "wb") as f:
        f.truncate(64 * MiB)
        f.seek(32 * MiB)
        f.write(b"middle of a sparse file")


def _meta(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath, name)
            rel = str(p.relative_to(root))
            if rel.startswith("lost+found"):
                continue
            st = p.lstat()
            xattrs = {k: os.getxattr(p, k) for k in sorted(os.listxattr(p))}
            out[rel] = (hashlib.sha256(p.read_bytes()).hexdigest(), st.st_uid, st.st_gid, st.st_mode, st.st_nlink,
                        xattrs)
    return out


def _stored(repo_root: Path) -> dict[str, tuple[int, int]]:
    """Every chunk and manifest of the repository with its size and mtime (the restore must change none)."""
    return {str(p.relative_to(repo_root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for top in ("chunks", "images") for p in (repo_root / top).rglob("*") if p.is_file()}


def _ids(node: str) -> tuple[str, str]:
    out = sh("blkid", "-p", "-o", "export", node).stdout
    values = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
    return values.get("UUID", ""), values.get("LABEL", "")


def _source(workdir: Path, src) -> tuple[dict, dict, dict]:
    built = build_disk(src, "gpt", SPECS, workdir)
    metas, ids = {}, {}
    # 4 KiB blocks as on any disk over 512 MiB (mkfs picks 1 KiB for one this small, and resize2fs's
    # minimum for those is about twice the data)
    sh("mkfs.ext4", "-q", "-F", "-b", "4096", "-L", "root3", src.node(3))
    for number, (written, kept) in FILLS.items():
        fstype = built.specs[number].fstype
        with mounted(src.node(number), fstype) as mnt:
            _fill(mnt, number, written, kept)
            sh("sync")
            metas[number] = _meta(mnt)
        src.refresh()
        ids[number] = _ids(src.node(number))
    ids[2] = _ids(src.node(2))
    return built.hashes[2], metas, ids


def test_restore_onto_a_disk_60_percent_of_the_source(workdir, lifeboat_env):
    size = 1710 * MiB
    with loop_disk(workdir, "source", size) as src, loop_disk(workdir, "small", size * 6 // 10) as small, \
            loop_disk(workdir, "tiny", 700 * MiB) as tiny:
        esp, metas, ids = _source(workdir, src)
        repo = Repository.open(workdir / "repo", create=True)
        manifest = capture(src.path, "machine", repo)

        # too small by a known amount: refused before writing, the shortfall named
        short = 10 * MiB
        with open(tiny.backing, "r+b") as f:
            f.truncate(minimum_disk_bytes(repo, manifest) - short)
        sh("losetup", "-c", tiny.path)
        with pytest.raises(TargetTooSmall) as err:
            plan_restore(repo, "machine", tiny.path)
        assert f"({short} bytes) short" in str(err.value)
        assert re.search(r"partition [345] \((ext4|xfs|btrfs)\) holds [0-9.]+ MiB of data and needs at least", str(err.value))
        assert sh("wipefs", tiny.path).stdout.strip() == "" and os.stat(tiny.backing).st_blocks == 0

        plan = plan_restore(repo, "machine", small.path)
        text = "\n".join(plan.describe())
        print(text)
        by_number = {a.number: a for a in plan.actions}
        assert by_number[3].shrink.method is ShrinkMethod.RESIZE and by_number[3].shrink.beyond_bytes > 0
        assert by_number[5].shrink.method is ShrinkMethod.RESIZE and by_number[5].shrink.beyond_bytes > 0
        assert by_number[4].shrink.method is ShrinkMethod.COPY
        assert by_number[7].shrink.method is ShrinkMethod.RESIZE and by_number[7].shrink.beyond_bytes > 0
        assert by_number[1].shrink is None and by_number[2].shrink is None and by_number[6].shrink is None
        assert "shrunk in place" in text and "files copied from the image" in text and "about" in text
        stored = _stored(Path(repo.root))
        result = restore(plan, bootloader=False)
        assert _stored(Path(repo.root)) == stored, "the repository was modified"
        print({s.step: s.detail for s in result.steps if s.step.startswith("shrink")})

        layout = read_layout(small.path)
        assert [p.uuid for p in layout.partitions] == [p.uuid for p in manifest.layout.partitions]
        small.refresh()
        for number, fstype in ((3, "ext4"), (4, "xfs"), (5, "btrfs"), (7, "ntfs")):
            node = small.node(number)
            assert _ids(node) == ids[number], f"partition {number}: UUID and label"
            proc = sh(*FSCK[fstype], node, check=False)
            assert proc.returncode == 0, f"fsck of partition {number}: {proc.stdout[-400:]}{proc.stderr[-400:]}"
            small.refresh()
            with mounted(node, fstype, readonly=True) as mnt:
                assert _meta(mnt) == metas[number], f"partition {number} ({fstype}): files differ"
                if fstype == "ntfs":
                    continue
                assert (mnt / "special" / "sparse").stat().st_blocks * 512 < 8 * MiB, "sparse file kept sparse"
                acl = sh("getfacl", "-n", str(mnt / "special" / "owned")).stdout
                assert "user:4321:r--" in acl
                df = int(sh("df", "-B1", "--output=size", str(mnt)).stdout.split()[-1])
                assert df <= by_number[number].target.size * 512
            small.refresh()
        assert _ids(small.node(2)) == ids[2] and fat_hashes(small.node(2)) == esp
        assert not os.listdir(os.environ.get("LIFEBOAT_SCRATCH", "/var/tmp/lifeboat-shrink")) or all(
            not n.endswith(".overflow") for n in os.listdir(os.environ.get("LIFEBOAT_SCRATCH", "/var/tmp/lifeboat-shrink")))
