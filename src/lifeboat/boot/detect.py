"""Finding the installed systems on a disk: GRUB-booted Linux roots and a Windows boot manager."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field

from lifeboat.boot import probe
from lifeboat.boot.model import LinuxSystem, WindowsLoader
from lifeboat.devices import Disk, Partition
from lifeboat.errors import CommandFailed
from lifeboat.mounts import mounted

ESP_MOUNTPOINTS = ("/boot/efi", "/efi", "/boot")
WINDOWS_LOADER = "EFI/Microsoft/Boot/bootmgfw.efi"


def os_release(root: str) -> dict[str, str]:
    text = probe.read_text(os.path.join(root, "etc/os-release")) or probe.read_text(os.path.join(root, "usr/lib/os-release"))
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out[key.strip()] = value.strip().strip('"')
    return out


def looks_like_grub_linux(root: str, fstab: list[probe.FstabEntry]) -> bool:
    """An installed Linux that boots with GRUB: /etc/fstab, and GRUB's traces (/boot/grub, its
    configuration, or a separate /boot that would hold them)."""
    if not os.path.isfile(os.path.join(root, "etc/fstab")):
        return False
    return (
        os.path.isdir(os.path.join(root, "boot/grub"))
        or os.path.isfile(os.path.join(root, "etc/default/grub"))
        or any(e.mountpoint == "/boot" for e in fstab)
    )


def fstab_subvol(options: str) -> str:
    """The btrfs subvolume an fstab entry's options name (subvol=@ or subvol=/@), or ''."""
    for option in options.split(","):
        key, _, value = option.partition("=")
        if key == "subvol":
            return value.lstrip("/")
    return ""


def _subvolume_roots(top: str) -> list[str]:
    """Subvolumes (directories of a btrfs filesystem's top level, as Ubuntu's and Fedora's installers make
    them: @, root...) holding a system whose fstab mounts that same subvolume as /."""
    found = []
    for name in sorted(os.listdir(top)):
        fstab = os.path.join(top, name, "etc/fstab")
        if os.path.isfile(fstab) and any(e.mountpoint == "/" and fstab_subvol(e.options) == name
                                         for e in probe.parse_fstab(probe.read_text(fstab))):
            found.append(name)
    return found


def describe_btrfs(part: Partition | probe.Volume, disk: Disk, volumes: Sequence[probe.Volume] = ()) -> list[LinuxSystem]:
    """A btrfs root: in the default subvolume (what a plain mount shows: openSUSE's snapshot layout, or a
    filesystem without subvolumes), else in named subvolumes of the top level (@ beside @home)."""
    with mounted(part.path, fstype="btrfs", options="ro", prefix="lifeboat-probe-") as mnt:
        system = describe_linux(mnt, part, disk, volumes)
        if system:
            return [system]
    systems = []
    with mounted(part.path, fstype="btrfs", options="ro,subvolid=5", prefix="lifeboat-probe-") as top:
        for name in _subvolume_roots(top):
            system = describe_linux(os.path.join(top, name), part, disk, volumes)
            if system:
                system.root_subvol = name
                systems.append(system)
    return systems


def claims_root(fstab: list[probe.FstabEntry], root: Partition | probe.Volume, disk: Disk,
                volumes: Sequence[probe.Volume] = ()) -> bool:
    """Whether a logical volume is the / its own fstab names: a copy of a root kept in another LV (a backup, a
    snapshot's origin) is not a system. Partitions are taken as they are (their fstab may name the old disk)."""
    if not isinstance(root, probe.Volume):
        return True
    named = [probe.resolve_spec(e.spec, disk, volumes) for e in fstab if e.mountpoint == "/"]
    return not named or root in named or all(n is None for n in named)


def describe_linux(root_dir: str, root: Partition | probe.Volume, disk: Disk,
                   volumes: Sequence[probe.Volume] = ()) -> LinuxSystem | None:
    fstab = probe.parse_fstab(probe.read_text(os.path.join(root_dir, "etc/fstab")))
    if not looks_like_grub_linux(root_dir, fstab) or not claims_root(fstab, root, disk, volumes):
        return None
    rel = os_release(root_dir)
    system = LinuxSystem(root=root, name=rel.get("PRETTY_NAME") or "Linux (no os-release)",
                         efi_id=(rel.get("ID") or "debian").lower(), fstab=fstab,
                         crypttab=probe.parse_crypttab(probe.read_text(os.path.join(root_dir, "etc/crypttab"))))
    for entry in fstab:
        if entry.mountpoint == "/boot":
            system.boot = probe.resolve_spec(entry.spec, disk, volumes)
            system.boot_subvol = fstab_subvol(entry.options) if entry.fstype == "btrfs" else ""
    # The ESP: the one the restored fstab names, else the disk's first ESP.
    for entry in fstab:
        if entry.fstype in ("vfat", "msdos", "fat") and entry.mountpoint in ESP_MOUNTPOINTS:
            part = probe.resolve_spec(entry.spec, disk, volumes)
            if isinstance(part, Partition) and part.is_esp:
                system.esp, system.esp_mountpoint = part, entry.mountpoint
    if system.esp is None and disk.esps:
        system.esp = disk.esps[0]
    system.efi = system.esp is not None
    boot_dir = os.path.join(root_dir, "boot/grub")
    if disk.table == "gpt":
        system.bios = disk.bios_boot is not None
        if not system.bios:
            system.why_not_bios = "GPT disk without a BIOS boot partition: it boots under UEFI only"
    else:
        # An MBR disk: BIOS-bootable through the gap, unless it holds only an ESP-booted system.
        system.bios = os.path.isdir(os.path.join(boot_dir, "i386-pc")) or not system.efi or (
            probe.mbr_boot_code_state(probe.read_sectors(disk.path, 0)) == "grub")
        if not system.bios:
            system.why_not_bios = "MBR disk set up for UEFI only (no i386-pc GRUB, no GRUB boot code)"
        gap = probe.mbr_gap_sectors(disk)
        if gap < 63:
            system.bios = False
            system.why_not_bios = f"the gap before the first partition is {gap} sectors: no room for core.img"
    return system


@dataclass
class Findings:
    """What looking into a disk's partitions found, and which partitions could not be looked into."""

    linux: list[LinuxSystem] = field(default_factory=list)
    windows: list[WindowsLoader] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # "/dev/sda2 (ext4): why"


def find_systems(disk: Disk, log, volumes: Sequence[probe.Volume] = ()) -> Findings:
    """Mount every candidate partition, then every active logical volume of the disk's volume groups
    (`volumes`, boot.lvm_roots), read-only, one at a time, and look."""
    found = Findings()
    candidates: list[Partition | probe.Volume] = [*disk.partitions, *volumes]
    for part in candidates:
        esp = isinstance(part, Partition) and part.is_esp and part.fstype == "vfat"
        if part.fstype not in probe.LINUX_FS and not esp:
            continue
        try:
            if part.fstype == "btrfs":
                found.linux += describe_btrfs(part, disk, volumes)
                continue
            with mounted(part.path, fstype=part.fstype, options="ro", prefix="lifeboat-probe-") as mnt:
                if esp:
                    if probe.find_ci(mnt, WINDOWS_LOADER):
                        found.windows.append(WindowsLoader(esp=part))
                else:
                    system = describe_linux(mnt, part, disk, volumes)
                    if system:
                        found.linux.append(system)
        except CommandFailed as err:
            what = "the ESP " + part.path if esp else f"{part.path} ({part.fstype})"
            log(f"cannot look into {what}: {err}", "warning")
            found.unreadable.append(f"{what}: {err}")
    return found


def shared_boots(systems: Sequence[LinuxSystem]) -> dict[str, str]:
    """Root (LinuxSystem.where) -> why it must not be fixed, for every root whose separate /boot is also another
    root's: GRUB's files and configuration in that /boot can belong to only one of them."""
    by_boot: dict[str, list[LinuxSystem]] = {}
    for system in systems:
        if system.boot is not None:
            by_boot.setdefault(system.boot.path, []).append(system)
    refused = {}
    for boot, claims in by_boot.items():
        if len(claims) < 2:
            continue
        names = " and ".join(f"{s.name} on {s.where}" for s in claims)
        for system in claims:
            refused[system.where] = (f"{boot} is the /boot of {names}: Lifeboat cannot tell which system's GRUB it "
                                     "must hold; nothing written for either (fix one system's /etc/fstab first)")
    return refused
