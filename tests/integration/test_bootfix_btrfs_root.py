"""bootfix finds a root that lives in a btrfs subvolume (issue 9): `@` beside `@home` with `subvol=@` in its
fstab (Ubuntu's and Debian's installers), and a default subvolume set (openSUSE's way), and mounts the
system's / from the right subvolume. Real btrfs on a loop disk; grub-install itself is proven by the vm
layer (this host cannot mount the ESP)."""

from __future__ import annotations

import os

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk, mounted, sh

from lifeboat import locks
from lifeboat.boot import detect
from lifeboat.boot.fix import target_disk
from lifeboat.mounts import mounted as lifeboat_mounted

pytestmark = pytest.mark.integration


def _system(root, uuid: str, subvol: str, name: str) -> None:
    (root / "etc").mkdir(parents=True)
    (root / "boot/grub").mkdir(parents=True)
    options = f"defaults,subvol={subvol}" if subvol else "defaults"
    (root / "etc/fstab").write_text(f"UUID={uuid} / btrfs {options} 0 0\nUUID={uuid} /home btrfs subvol=@home 0 0\n")
    (root / "etc/os-release").write_text(f'PRETTY_NAME="{name}"\nID=debian\n')


def _found(disk):
    """What bootfix finds, the way it looks: holding the disk, its partitions registered from the table."""
    with locks.holding_disk(disk.path):
        return detect.find_systems(target_disk(disk.path), lambda *a: None)


def test_root_in_a_named_subvolume_and_in_the_default_one(workdir):
    with loop_disk(workdir, "disk", 300 * MiB) as disk:
        build_disk(disk, "gpt", [PartSpec(32, "raw", gpt_type="U"), PartSpec(0, "btrfs", name="root")], workdir)
        node = disk.node(2)
        uuid = sh("blkid", "-p", "-s", "UUID", "-o", "value", node).stdout.strip()
        with mounted(node, "btrfs") as top:
            for sub in ("@", "@home", "@snapshots"):
                sh("btrfs", "-q", "subvolume", "create", str(top / sub))
            _system(top / "@", uuid, "@", "Debian in @")
            (top / "@home" / "user").mkdir()

        found = _found(disk)
        assert [(s.name, s.root.path, s.root_subvol) for s in found.linux] == [("Debian in @", node, "@")]
        system = found.linux[0]
        assert system.where == f"{node} (btrfs subvolume @)"
        with locks.holding_disk(disk.path), lifeboat_mounted(target_disk(disk.path).partitions[1].path,
                                                             fstype="btrfs", options=system.root_options) as root:
            assert os.path.isfile(os.path.join(root, "etc/os-release")) and not os.path.exists(os.path.join(root, "@"))

        # the same filesystem with @ as its default subvolume: a plain mount shows the system
        with mounted(node, "btrfs") as top:
            subvol_id = sh("btrfs", "inspect-internal", "rootid", str(top / "@")).stdout.strip()
            sh("btrfs", "subvolume", "set-default", subvol_id, str(top))
        found = _found(disk)
        assert [(s.name, s.root_subvol, s.root_options) for s in found.linux] == [("Debian in @", "", None)]


def test_a_top_level_directory_that_is_not_its_fstab_root_is_no_system(workdir):
    """A copy of a system in a snapshot subvolume (its fstab names @, not the snapshot) is not a second root."""
    with loop_disk(workdir, "disk", 300 * MiB) as disk:
        build_disk(disk, "gpt", [PartSpec(0, "btrfs", name="root")], workdir)
        node = disk.node(1)
        uuid = sh("blkid", "-p", "-s", "UUID", "-o", "value", node).stdout.strip()
        with mounted(node, "btrfs") as top:
            sh("btrfs", "-q", "subvolume", "create", str(top / "@"))
            _system(top / "@", uuid, "@", "Debian")
            sh("btrfs", "-q", "subvolume", "snapshot", str(top / "@"), str(top / "@-before-upgrade"))
        assert [s.root_subvol for s in _found(disk).linux] == ["@"]
