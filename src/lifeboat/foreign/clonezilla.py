"""A Clonezilla image directory (what `ocs-sr savedisk` writes under /home/partimag) read as plain data.

    disk                      the disk's name ("sda")
    parts                     the partitions saved ("sda1 sda2 sda5")
    clonezilla-img            the log of the save; its first line holds the date
    <disk>-pt.sf              the partition table (sfdisk dump)          → DiskLayout
    <disk>-pt.parted          parted's listing (the disk's size in sectors)
    <disk>-mbr                the first sector (boot code)                → boot region "mbr"
    <disk>-hidden-data-after-mbr   the sectors between the MBR and partition 1 (-j2) → "post-mbr-gap"
    <disk>-gpt-1st/-gpt-2nd   the GPT copies (the table is rebuilt from the dump)
    dev-fs.list, blkid.list   filesystems, UUIDs and labels
    swappt-<part>.info        UUID and LABEL of a swap partition (it is recreated, not stored)
    <part>.<fs>-ptcl-img.<comp>[.aa …]   a partclone image; <part>.dd-ptcl-img… one of every block
    Info-packages.txt         the Clonezilla version

    lvm_vg_dev.list, lvm_logv.list, lvm_<VG>.conf   volume groups on the disk's partitions (foreign.czlvm);
                              each logical volume's image is <VG>-<LV>.<fs>-ptcl-img.<comp>

Unsupported variants are errors naming the file: encrypted images (ecryptfs), partimage and ntfsclone
images of old Clonezilla versions, images of several disks, LVM groups spanning other disks or holding
thin pools, snapshots, RAID or caches.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from lifeboat.errors import ImageCorrupt
from lifeboat.foreign.czlvm import CzLvmFiles, CzVolumeLine, read_lvm_files
from lifeboat.foreign.pieces import PieceSet, compression_of, find_pieces
from lifeboat.foreign.sfdump import parse_sfdisk_dump
from lifeboat.layout.model import DiskLayout
from lifeboat.volumes.lvm_model import VolumeGroup

MARKERS = ("clonezilla-img", "parts", "disk")
_PTCL = re.compile(r"^(?P<fs>[a-z0-9+]+)-ptcl-img\.(?P<comp>[a-z0-9]+)(?:\.[a-z]{2,})?$")  # after "<device>."
_OLD_FORMATS = re.compile(r"^(?P<part>[^.]+)\.(ntfs-img|[a-z0-9]+-img|gz|bz2|lzo|xz|aa|ab)(\..*)?$")
_SAVED_AT = re.compile(r"saved by Clonezilla at (\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)")
_KEYS = re.compile(r'(\w+)="([^"]*)"')


class PartSource(StrEnum):
    PARTCLONE = "partclone"  # used blocks of a filesystem
    DD = "dd"  # every block (partclone.dd)
    SWAP = "swap"  # recreated with its UUID and label
    NOT_SAVED = "not-saved"  # an extended container, or a partition Clonezilla skipped
    LVM_PV = "lvm-pv"  # an LVM physical volume: its logical volumes are saved one by one


@dataclass(frozen=True)
class CzPartition:
    number: int
    device: str  # Clonezilla's name: sda1, nvme0n1p2, loop2p3
    source: PartSource
    fstype: str = ""  # ext4, xfs, vfat, ntfs, swap, …
    uuid: str = ""
    label: str = ""
    pieces: PieceSet | None = None


@dataclass(frozen=True)
class CzVolume:
    """A logical volume as Clonezilla saved it."""

    name: str  # the LV's name in its group
    device: str  # Clonezilla's name: VG-LV
    source: PartSource  # PARTCLONE, DD, SWAP or NOT_SAVED
    fstype: str = ""
    uuid: str = ""
    label: str = ""
    pieces: PieceSet | None = None


@dataclass(frozen=True)
class CzVolumeGroup:
    group: VolumeGroup  # as lvm_<VG>.conf tells it (PVs, extents, segments, UUIDs, tags)
    metadata: str  # the path of lvm_<VG>.conf
    partitions: tuple[int, ...]  # the partition each of group.pvs is, in that order
    volumes: tuple[CzVolume, ...]  # one per visible LV, in the metadata's order


@dataclass(frozen=True)
class CzBootRegion:
    name: str  # mbr | post-mbr-gap
    offset: int
    length: int
    path: str


@dataclass(frozen=True)
class ClonezillaImage:
    path: str
    name: str
    disk: str
    created: str  # ISO 8601, UTC
    version: str  # the clonezilla package that saved it ("5.3.17-2"), "" when unknown
    layout: DiskLayout
    boot_regions: tuple[CzBootRegion, ...]
    partitions: tuple[CzPartition, ...]
    volume_groups: tuple[CzVolumeGroup, ...] = ()

    @property
    def stored_bytes(self) -> int:
        volumes = [v for g in self.volume_groups for v in g.volumes]
        return sum(p.pieces.compressed_size for p in (*self.partitions, *volumes) if p.pieces)


def is_image_dir(path: str | os.PathLike) -> bool:
    return any((Path(path) / m).is_file() for m in MARKERS)


def image_dirs(root: str | os.PathLike) -> list[Path]:
    """The Clonezilla images in `root`: root itself when it is one, else its subdirectories that are."""
    root = Path(root)
    if is_image_dir(root):
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and is_image_dir(p))


def _read(path: Path, what: str = "") -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        raise ImageCorrupt(f"{path}: file is missing{what}") from None
    except OSError as exc:
        raise ImageCorrupt(f"{path}: cannot be read ({exc.strerror})") from None


def _check_supported(d: Path) -> None:
    names = os.listdir(d)
    if "ecryptfs.info" in names or any(n.endswith(".ecryptfs") for n in names):
        raise ImageCorrupt(f"{d}: encrypted Clonezilla images (ecryptfs) are not supported")


def _disk_sectors(d: Path, disk: str, layout_end: int) -> int:
    parted = d / f"{disk}-pt.parted"
    if parted.exists():
        m = re.search(r"^Disk /dev/\S+: (\d+)s$", _read(parted), re.M)
        if m:
            return int(m.group(1))
    return layout_end


def _created(d: Path) -> str:
    text = _read(d / "clonezilla-img") if (d / "clonezilla-img").exists() else ""
    m = _SAVED_AT.search(text)
    if m:
        return f"{m.group(1)}T{m.group(2)}Z"
    return ""


def _version(d: Path) -> str:
    info = d / "Info-packages.txt"
    m = re.search(r"\bclonezilla-(\d[\w.+~-]*)", _read(info)) if info.exists() else None
    return m.group(1) if m else ""


def _blkid(d: Path) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    path = d / "blkid.list"
    if path.exists():
        for line in _read(path).splitlines():
            node, _, rest = line.partition(":")
            out[os.path.basename(node.strip())] = dict(_KEYS.findall(rest))
    return out


def _part_number(disk: str, device: str, where: Path) -> int:
    rest = device[len(disk):] if device.startswith(disk) else ""
    rest = rest[1:] if rest.startswith("p") else rest
    if not rest.isdigit():
        raise ImageCorrupt(f"{where}: partition {device!r} does not belong to disk {disk!r}")
    return int(rest)


def _image_file(d: Path, device: str) -> tuple[str, str, str] | None:
    """(fs, compression, base path without the split suffix) of the partclone image of `device`."""
    for name in sorted(os.listdir(d)):
        m = _PTCL.match(name[len(device) + 1:]) if name.startswith(device + ".") else None
        if m:
            fs, comp = m.group("fs"), m.group("comp")
            return fs, comp, str(d / f"{device}.{fs}-ptcl-img.{comp}")
    return None


def _saved_image(d: Path, device: str, ids: dict[str, str], what: str) -> tuple[PartSource, str, PieceSet]:
    """(source, fstype, pieces) of the partclone image of `device` (a partition or VG-LV)."""
    found = _image_file(d, device)
    if found is None:
        old = [n for n in sorted(os.listdir(d)) if n.startswith(device + ".")]
        if old:
            raise ImageCorrupt(
                f"{d / old[0]}: made by an old Clonezilla (partimage or ntfsclone format); "
                "Lifeboat reads images saved with partclone (Clonezilla 1.2 and later, the default)"
            )
        raise ImageCorrupt(f"{d}: {what} {device} is listed in '{'parts' if what == 'partition' else 'lvm_logv.list'}'"
                           " but its image file is missing")
    fs, comp, base = found
    pieces = find_pieces(base, compression_of(comp, base))
    if fs == "dd":
        return PartSource.DD, ids.get("TYPE", ""), pieces
    fstype = {"fat16": "vfat", "fat32": "vfat", "fat12": "vfat", "fat": "vfat", "ext2": "ext2"}.get(fs, fs)
    return PartSource.PARTCLONE, ids.get("TYPE", fstype) or fstype, pieces


def _saved_partition(d: Path, disk: str, device: str, ids: dict[str, str], lvm: CzLvmFiles | None) -> CzPartition:
    number = _part_number(disk, device, d / "parts")
    if lvm and device in lvm.devices:
        pv = next(pv for pv in lvm.pvs if pv.device == device)
        return CzPartition(number, device, PartSource.LVM_PV, "LVM2_member", pv.uuid)
    source, fstype, pieces = _saved_image(d, device, ids, "partition")
    return CzPartition(number, device, source, fstype, ids.get("UUID", ""), ids.get("LABEL", ""), pieces)


def _volume(d: Path, line: CzVolumeLine | None, name: str, vg: str, ids: dict[str, dict[str, str]]) -> CzVolume:
    device = f"{vg}-{name}"
    if line is None:  # not in lvm_logv.list: Clonezilla did not see it (inactive), nothing saved
        return CzVolume(name, device, PartSource.NOT_SAVED)
    if line.is_swap:
        info = d / f"swappt-{device}.info"
        keys = dict(_KEYS.findall(_read(info))) if info.exists() else {}
        return CzVolume(name, device, PartSource.SWAP, "swap", keys.get("UUID", line.file_uuid),
                        keys.get("LABEL", line.file_label))
    # blkid.list names an active LV by its device-mapper node (dashes in the names doubled) or /dev/VG/LV
    found = ids.get(f"{vg.replace('-', '--')}-{name.replace('-', '--')}", ids.get(name, {}))
    source, fstype, pieces = _saved_image(d, device, found, "logical volume")
    return CzVolume(name, device, source, fstype, found.get("UUID", line.file_uuid),
                    found.get("LABEL", line.file_label), pieces)


def _volume_groups(d: Path, lvm: CzLvmFiles | None, numbers: dict[str, int],
                   ids: dict[str, dict[str, str]]) -> tuple[CzVolumeGroup, ...]:
    if lvm is None:
        return ()
    out = []
    for group, conf in lvm.groups:
        by_uuid = {pv.uuid: pv.device for pv in lvm.pvs if pv.vg == group.name}
        partitions = []
        for pv in group.pvs:
            device = by_uuid[pv.uuid]
            if device not in numbers:
                raise ImageCorrupt(f"{d / 'lvm_vg_dev.list'}: PV {pv.uuid} of {group.name} is {device}, not a "
                                   f"partition of the disk's table (a PV on a whole disk is not supported)")
            partitions.append(numbers[device])
        lines = {v.lv: v for v in lvm.volumes if v.vg == group.name}
        volumes = tuple(_volume(d, lines.get(lv.name), lv.name, group.name, ids) for lv in group.visible_lvs)
        out.append(CzVolumeGroup(group, conf, tuple(partitions), volumes))
    return tuple(out)


def _swap_partition(d: Path, disk: str, device: str) -> CzPartition:
    keys = dict(_KEYS.findall(_read(d / f"swappt-{device}.info")))
    return CzPartition(_part_number(disk, device, d), device, PartSource.SWAP, "swap",
                       keys.get("UUID", ""), keys.get("LABEL", ""))


def _boot_regions(d: Path, disk: str, layout: DiskLayout) -> tuple[CzBootRegion, ...]:
    regions = []
    mbr = d / f"{disk}-mbr"
    if mbr.exists():
        regions.append(CzBootRegion("mbr", 0, min(mbr.stat().st_size, 512), str(mbr)))
    hidden = d / f"{disk}-hidden-data-after-mbr"
    if hidden.exists() and layout.label == "dos":
        gap = layout.first_partition_start * layout.sector_size - 512
        size = min(hidden.stat().st_size, gap)
        if size > 0:
            regions.append(CzBootRegion("post-mbr-gap", 512, size, str(hidden)))
    return tuple(regions)


def read_image(path: str | os.PathLike) -> ClonezillaImage:
    """The Clonezilla image in directory `path`, every file it needs present. Raises ImageCorrupt."""
    d = Path(path)
    if not d.is_dir():
        raise ImageCorrupt(f"{d}: no such Clonezilla image directory")
    _check_supported(d)
    disks = _read(d / "disk", " (a Clonezilla partition image, saveparts, is not a disk image)").split()
    if len(disks) != 1:
        raise ImageCorrupt(f"{d / 'disk'}: images of {len(disks) or 'no'} disks are not supported (one disk only)")
    disk = disks[0]
    devices = _read(d / "parts").split()
    table = d / f"{disk}-pt.sf"
    text = _read(table)
    layout = parse_sfdisk_dump(text, 0, str(table))
    end = max((p.end for p in layout.partitions), default=0) + 1 + (33 if layout.label == "gpt" else 0)
    layout = replace(layout, disk_sectors=_disk_sectors(d, disk, end))
    ids = _blkid(d)
    lvm = read_lvm_files(d)
    parts: dict[int, CzPartition] = {}
    for device in devices:
        part = _saved_partition(d, disk, device, ids.get(device, {}), lvm)
        parts[part.number] = part
    for info in sorted(d.glob("swappt-*.info")):
        device = info.name[len("swappt-"):-len(".info")]
        if lvm and device in lvm.volume_files:
            continue  # a swap logical volume
        part = _swap_partition(d, disk, device)
        parts.setdefault(part.number, part)
    numbers = {p.number for p in layout.partitions}
    for number in sorted(set(parts) - numbers):
        raise ImageCorrupt(f"{d}: partition {parts[number].device} is saved but not in the table {table.name}")
    numbers = {}
    for entry in layout.partitions:
        device = f"{disk}{'p' if disk[-1].isdigit() else ''}{entry.number}"
        numbers[device] = entry.number
        if lvm and device in lvm.devices and entry.number not in parts:
            parts[entry.number] = _saved_partition(d, disk, device, {}, lvm)
        # a swap partition without swappt-*.info (older Clonezilla): made anew, with a new UUID
        source, fstype = (PartSource.SWAP, "swap") if entry.kind == "swap" else (PartSource.NOT_SAVED, "")
        parts.setdefault(entry.number, CzPartition(entry.number, device, source, fstype))
    return ClonezillaImage(
        path=str(d), name=d.name, disk=disk, created=_created(d), version=_version(d), layout=layout,
        boot_regions=_boot_regions(d, disk, layout), partitions=tuple(parts[n] for n in sorted(parts)),
        volume_groups=_volume_groups(d, lvm, numbers, ids),
    )
