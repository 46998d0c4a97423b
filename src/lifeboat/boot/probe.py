"""Looking at a disk the way a bootloader reinstall needs to: the boot code in place, files on an ESP, and the
fstab of an installed system. The disk itself (table, partitions, filesystems) is a devices.Disk built from
the layout the restore wrote or lifeboat.layout read; nothing here reads a table or writes."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from lifeboat.devices import Disk, Partition

LINUX_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs"}
LVM_PV = "LVM2_member"  # blkid's name of an LVM physical volume
SECTOR = 512


def mbr_gap_sectors(disk: Disk) -> int:
    """Sectors between the MBR and the first partition (where GRUB's core.img lives on MBR disks)."""
    if not disk.partitions:
        return 0
    return min(p.start for p in disk.partitions) // SECTOR - 1


@dataclass(frozen=True)
class Volume:
    """An active LVM logical volume on the disk being fixed, seen as a block device a root or /boot can be on;
    or an opened LUKS container holding a filesystem itself (vg "", lv its mapper name)."""

    vg: str
    lv: str
    path: str  # /dev/mapper/VG-LV (lvm2's node, dashes doubled), or /dev/mapper/NAME of a LUKS container
    pvs: tuple[str, ...]  # its group's physical volumes (partition or opened-container nodes of this disk)
    fstype: str = ""
    uuid: str = ""
    label: str = ""


# ---- fstab ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FstabEntry:
    spec: str
    mountpoint: str
    fstype: str
    options: str = "defaults"


def read_text(path: str) -> str:
    """A file of an installed system, "" when it is missing or unreadable (a system may lack any of them)."""
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def parse_fstab(text: str) -> list[FstabEntry]:
    entries = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 3:
            continue
        spec = fields[0].replace("\\040", " ")
        entries.append(FstabEntry(spec, fields[1].replace("\\040", " "), fields[2],
                                  fields[3] if len(fields) > 3 else "defaults"))
    return entries


@dataclass(frozen=True)
class CrypttabEntry:
    name: str  # the device-mapper name the system opens it under (/dev/mapper/NAME)
    source: str  # UUID=..., PARTUUID=..., /dev/disk/by-uuid/..., /dev/sda3
    options: str = ""


def parse_crypttab(text: str) -> list[CrypttabEntry]:
    """crypttab(5) lines: NAME SOURCE [KEY [OPTIONS]]."""
    entries = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2:
            entries.append(CrypttabEntry(fields[0], fields[1], fields[3] if len(fields) > 3 else ""))
    return entries


def split_mapper(name: str) -> tuple[str, str] | None:
    """(VG, LV) of a device-mapper name as lvm2 makes it ("debian--vg-root": dashes inside a name doubled),
    or None when the name is not VG-LV."""
    i = 0
    while i < len(name):
        if name[i] == "-":
            if name[i + 1:i + 2] == "-":
                i += 2
                continue
            vg, lv = name[:i], name[i + 1:]
            return (vg.replace("--", "-"), lv.replace("--", "-")) if vg and lv else None
        i += 1
    return None


def lvm_names(spec: str) -> tuple[str, str] | None:
    """(VG, LV) an fstab spec names through /dev/mapper/VG-LV or /dev/VG/LV, else None."""
    if spec.startswith("/dev/mapper/"):
        return split_mapper(spec[len("/dev/mapper/"):])
    parts = spec.split("/")
    if len(parts) == 4 and parts[:2] == ["", "dev"] and parts[2] and parts[3] and parts[2] not in _DEV_DIRS:
        return parts[2], parts[3]
    return None


_DEV_DIRS = {"disk", "mapper", "md", "block", "char", "bus", "input", "pts", "shm", "cdrom", "net", "snd", "dri"}


def resolve_spec(spec: str, disk: Disk, volumes: Sequence[Volume] = ()) -> Partition | Volume | None:
    """The partition of `disk`, or the logical volume among `volumes` (its volume groups' active LVs), an fstab
    spec names: UUID=, PARTUUID=, LABEL=, PARTLABEL=, by-* links, /dev/mapper/VG-LV, /dev/VG/LV."""
    spec = spec.strip('"')
    for v in volumes:
        if v.path == spec:  # /dev/mapper/NAME of an opened LUKS container (or of an LV, spelt as lvm2 does)
            return v
    named = lvm_names(spec)
    if named is not None or spec.startswith("/dev/mapper/"):  # another mapper name (LUKS...): not resolvable here
        return next((v for v in volumes if (v.vg, v.lv) == named), None)
    by = {"/dev/disk/by-uuid/": "UUID=", "/dev/disk/by-partuuid/": "PARTUUID=",
          "/dev/disk/by-label/": "LABEL=", "/dev/disk/by-partlabel/": "PARTLABEL="}
    for prefix, key in by.items():
        if spec.startswith(prefix):
            spec = key + spec[len(prefix):]
    key, _, value = spec.partition("=")
    if not value:
        # A kernel device name from the old machine: trust only the partition number.
        m = re.search(r"(\d+)$", spec)
        return disk.partition(int(m.group(1))) if m else None
    value_l = value.lower()
    for p in disk.partitions:
        if key == "UUID" and p.uuid and p.uuid.lower() == value_l:
            return p
        if key == "PARTUUID" and p.partuuid and p.partuuid.lower() == value_l:
            return p
        if key == "LABEL" and p.label == value:
            return p
        if key == "PARTLABEL" and p.partlabel == value:
            return p
    for v in volumes:
        if (key == "UUID" and v.uuid and v.uuid.lower() == value_l) or (key == "LABEL" and v.label and v.label == value):
            return v
    return None


# ---- boot code ------------------------------------------------------------------------------------
def read_sectors(disk: str, lba: int, count: int = 1) -> bytes:
    with open(disk, "rb") as f:
        f.seek(lba * SECTOR)
        return f.read(count * SECTOR)


def mbr_boot_code_state(mbr: bytes) -> str:
    """'grub' (GRUB's boot.img), 'other' (some boot code), or 'empty' (all zero / no 55AA)."""
    code = mbr[:440]
    if len(mbr) < 512 or mbr[510:512] != b"\x55\xaa" or not any(code):
        return "empty"
    return "grub" if b"GRUB" in code else "other"


def bios_core_present(disk: Disk) -> tuple[bool, str]:
    """Is something (GRUB's core.img) where boot.img will look for it?"""
    bb = disk.bios_boot
    if disk.table == "gpt":
        if bb is None:
            return False, "no BIOS boot partition on this GPT disk"
        first = read_sectors(disk.path, bb.start // SECTOR)
        return any(first), f"BIOS boot partition {bb.path} {'holds' if any(first) else 'is empty: no'} core.img"
    gap = read_sectors(disk.path, 1, min(mbr_gap_sectors(disk), 64))
    return any(gap), f"MBR gap {'holds' if any(gap) else 'is empty: no'} core.img"


def is_pe_file(path: str) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(2) == b"MZ" and os.path.getsize(path) > 4096
    except OSError:
        return False


def find_ci(base: str, relpath: str) -> str | None:
    """Find a path under `base`, matching each component case-insensitively (FAT is case-insensitive,
    but we may look at it through a mount or a copy that is not)."""
    cur = base
    for comp in [c for c in relpath.replace("\\", "/").split("/") if c]:
        try:
            names = os.listdir(cur)
        except OSError:
            return None
        match = next((n for n in names if n.lower() == comp.lower()), None)
        if match is None:
            return None
        cur = os.path.join(cur, match)
    return cur
