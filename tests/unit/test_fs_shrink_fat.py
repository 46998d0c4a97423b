"""A FAT filesystem re-created smaller with its serial and label, its files copied through mtools
(image files, no root, no kernel driver)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess

import pytest

from lifeboat.fs.shrink import copy_fat, make_like, xfs_mkfs_options

pytestmark = pytest.mark.skipif(not shutil.which("mcopy") or not shutil.which("mkfs.vfat"),
                                reason="mtools and dosfstools are installed by scripts/ensure-deps")


def _sh(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout


def test_fat_copied_onto_a_smaller_new_one(tmp_path):
    source, target = tmp_path / "source.img", tmp_path / "target.img"
    _sh("mkfs.vfat", "-C", "-i", "1234ABCD", "-n", "OLDESP", str(source), str(64 * 1024))
    tree = tmp_path / "tree"
    (tree / "EFI" / "BOOT").mkdir(parents=True)
    (tree / "EFI" / "BOOT" / "BOOTX64.EFI").write_bytes(bytes(range(256)) * 4000)
    (tree / "hello.txt").write_text("hello\n")
    for entry in tree.iterdir():
        _sh("mcopy", "-s", "-i", str(source), str(entry), "::/")
    with open(target, "wb") as f:
        f.truncate(32 * 1024 * 1024)
    make_like("vfat", str(target), "1234-ABCD", "OLDESP", [])
    copy_fat(str(source), str(target), str(tmp_path))
    out = tmp_path / "out"
    out.mkdir()
    _sh("mcopy", "-s", "-n", "-i", str(target), "::/*", str(out))
    assert hashlib.sha256((out / "EFI" / "BOOT" / "BOOTX64.EFI").read_bytes()).hexdigest() == \
        hashlib.sha256((tree / "EFI" / "BOOT" / "BOOTX64.EFI").read_bytes()).hexdigest()
    assert (out / "hello.txt").read_text() == "hello\n"
    info = _sh("blkid", "-p", "-o", "export", str(target))
    assert "UUID=1234-ABCD" in info and "LABEL=OLDESP" in info


def test_xfs_parameters_from_xfs_info():
    info = """meta-data=/dev/loop2             isize=512    agcount=4, agsize=20480 blks
         =                       sectsz=512   attr=2, projid32bit=1
         =                       crc=1        finobt=1, sparse=1, rmapbt=0
         =                       reflink=1    bigtime=1 inobtcount=1 nrext64=0
data     =                       bsize=4096   blocks=81920, imaxpct=25
naming   =version 2              bsize=4096   ascii-ci=0, ftype=1
log      =internal log           bsize=4096   blocks=16384, version=2
"""
    assert xfs_mkfs_options(info) == ["-m", "crc=1,finobt=1,rmapbt=0,reflink=1,bigtime=1,inobtcount=1",
                                      "-i", "size=512,sparse=1", "-b", "size=4096", "-n", "size=4096,ftype=1",
                                      "-s", "size=512"]
