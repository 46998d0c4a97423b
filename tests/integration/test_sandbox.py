"""`make run` on a fresh machine: the sandbox's demo laptop must show its real filesystem types at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from lifeboat import devices
from lifeboat.run import run
from lifeboat.sandbox import demo_disks

pytestmark = pytest.mark.integration
LAPTOP = [(1, "vfat", "EFI"), (2, "ext4", "root"), (3, "swap", "swap")]


def _laptop(directory: Path, disks: dict[str, str]) -> devices.Disk:
    [laptop] = [d for d in devices.list_disks(sandbox=str(directory)) if d.path == disks["demo-laptop"]]
    return laptop


def test_a_fresh_sandbox_shows_the_laptops_filesystems(workdir, lifeboat_env):
    with demo_disks(workdir / "sandbox") as disks:
        laptop = _laptop(workdir / "sandbox", disks)
        assert [(p.number, p.fstype, p.label) for p in laptop.partitions] == LAPTOP
        # udev itself has them (the sandbox re-probes its partitions), not only our blkid fallback
        for number, fstype, _ in LAPTOP:
            props = run(["udevadm", "info", "--query=property", f"{disks['demo-laptop']}p{number}"]).stdout
            assert f"ID_FS_TYPE={fstype}" in props.splitlines(), props


def test_without_udevs_filesystem_properties_discovery_asks_blkid(workdir, lifeboat_env, monkeypatch):
    """What a udevd that missed the mkfs leaves: partitions without ID_FS_*. Real loop disk, real blkid; only
    udev's answer is hidden (a just-started udevd's race cannot be staged without restarting the host's udevd)."""
    real_prop = devices._prop
    monkeypatch.setattr(devices, "_prop", lambda dev, *names: "" if names[0].startswith("ID_FS_") else real_prop(dev, *names))
    with demo_disks(workdir / "sandbox") as disks:
        laptop = _laptop(workdir / "sandbox", disks)
        assert [(p.number, p.fstype, p.label) for p in laptop.partitions] == LAPTOP
        assert laptop.partitions[1].uuid  # the ext4 UUID, from blkid too
