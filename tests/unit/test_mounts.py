"""The one mount-table reader and the one mount helper."""

from __future__ import annotations

import os

import pytest

from lifeboat import mounts
from lifeboat.errors import CommandFailed

MOUNTINFO = r"""22 1 8:2 / / rw,relatime shared:1 - ext4 /dev/sda2 rw
30 22 0:25 / /run rw,nosuid shared:5 - tmpfs tmpfs rw,size=800k
41 22 7:3 / /mnt/my\040disk\011tab\134x ro,relatime - ext4 /dev/loop3 ro
42 22 8:17 / /media/usb rw master:7 propagate_from:1 - vfat /dev/sdb1 rw,fmask=0022
"""


def test_mountinfo_parsed_with_the_kernels_escapes_undone():
    table = mounts.parse_mountinfo(MOUNTINFO)
    assert [m.point for m in table] == ["/", "/run", "/mnt/my disk\ttab\\x", "/media/usb"]
    assert [m.source for m in table] == ["/dev/sda2", "tmpfs", "/dev/loop3", "/dev/sdb1"]
    assert [m.fstype for m in table] == ["ext4", "tmpfs", "ext4", "vfat"]  # optional fields skipped
    assert table[0].devnum == os.makedev(8, 2) and table[1].devnum == 0
    assert [m.writable for m in table] == [True, True, False, True]


def test_mounted_always_unmounts_and_removes_its_directory(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(mounts, "run", lambda argv, **kw: ran.append(argv))
    with pytest.raises(RuntimeError):
        with mounts.mounted("/dev/loop3p1", fstype="ext4", options="ro", base=str(tmp_path)) as point:
            assert os.path.isdir(point)
            raise RuntimeError("boom")
    assert ran == [["mount", "-t", "ext4", "-o", "ro", "/dev/loop3p1", point], ["umount", point]]
    assert not os.path.exists(point)


def test_a_busy_mount_is_detached_lazily(tmp_path, monkeypatch):
    ran = []

    def run(argv, check=True, **kw):
        ran.append(argv)
        if argv[0] == "umount" and check:
            raise CommandFailed(argv, 32, "target is busy")

    monkeypatch.setattr(mounts, "run", run)
    with mounts.MountStack() as stack:
        stack.mount("/dev", str(tmp_path / "dev"), bind=True)
    assert ran[-3:] == [["umount", "-R", str(tmp_path / "dev")], ["umount", "-R", "-l", str(tmp_path / "dev")], ["sync"]]
    assert ran[1] == ["mount", "--make-rslave", str(tmp_path / "dev")]
