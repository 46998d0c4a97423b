"""Looking at a disk the way a bootloader reinstall needs to: its table, its partitions' filesystems, the boot
code in place, and the fstab of an installed system. Reading only; nothing here writes."""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field

from lifeboat.run import run, which

ESP_GUID = "c12a7328-f81f-11d2-ba4b-00a0c93ec93b"
BIOS_BOOT_GUID = "21686148-6449-6e6f-744e-656564454649"  # "Hah!IdontNeedEFI"
MBR_ESP_TYPES = {"ef"}
LINUX_FS = {"ext2", "ext3", "ext4", "xfs", "btrfs"}
SECTOR = 512


@dataclass(frozen=True)
class Part:
    number: int
    node: str
    start: int  # sectors
    size: int  # sectors
    type: str  # GPT type GUID (lower case) or MBR type id ("83", "ef")
    fstype: str | None = None
    uuid: str | None = None
    partuuid: str | None = None
    label: str | None = None
    partlabel: str | None = None

    @property
    def is_esp(self) -> bool:
        return self.type in (ESP_GUID, *MBR_ESP_TYPES) or (
            self.fstype == "vfat" and self.partlabel is not None and self.partlabel.lower() in ("esp", "efi")
        )

    @property
    def is_bios_boot(self) -> bool:
        return self.type == BIOS_BOOT_GUID


@dataclass(frozen=True)
class DiskInfo:
    path: str
    label: str  # "gpt" or "dos"
    parts: tuple[Part, ...] = field(default_factory=tuple)

    @property
    def esps(self) -> list[Part]:
        return [p for p in self.parts if p.is_esp]

    @property
    def bios_boot(self) -> Part | None:
        return next((p for p in self.parts if p.is_bios_boot), None)

    def part(self, number: int) -> Part | None:
        return next((p for p in self.parts if p.number == number), None)

    @property
    def mbr_gap_sectors(self) -> int:
        """Sectors between the MBR and the first partition (where GRUB's core.img lives on MBR disks)."""
        if not self.parts:
            return 0
        return min(p.start for p in self.parts) - 1


def parse_sfdisk_json(text: str) -> tuple[str, list[dict]]:
    table = json.loads(text)["partitiontable"]
    return table["label"], table.get("partitions", [])


def _part_number(disk: str, node: str) -> int:
    m = re.search(r"(\d+)$", node[len(disk):] if node.startswith(disk) else node)
    if not m:
        raise ValueError(f"cannot tell the partition number of {node}")
    return int(m.group(1))


def parse_blkid_export(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        if "=" in line:
            key, _, value = line.partition("=")
            out[key.strip()] = value.strip()
    return out


def ensure_partition_nodes(disk: str, numbers: list[int], nodes: list[str]) -> None:
    """On kernels that parse no tables (or after udev dropped them), add partition nodes with partx."""
    if all(os.path.exists(n) for n in nodes):
        return
    for tool_argv in (["udevadm", "settle", "--timeout=10"], ["partx", "-u", disk], ["partx", "-a", disk]):
        if which(tool_argv[0]):
            run(tool_argv, check=False)
    for _ in range(20):
        if all(os.path.exists(n) for n in nodes):
            return
        time.sleep(0.25)


def read_disk(disk: str) -> DiskInfo:
    label, rows = parse_sfdisk_json(run(["sfdisk", "--json", disk]).stdout)
    nodes = [r["node"] for r in rows]
    ensure_partition_nodes(disk, [_part_number(disk, n) for n in nodes], nodes)
    parts = []
    for r in rows:
        node = r["node"]
        probe = parse_blkid_export(run(["blkid", "-p", "-o", "export", node], check=False).stdout)
        parts.append(Part(
            number=_part_number(disk, node), node=node, start=int(r["start"]), size=int(r["size"]),
            type=str(r.get("type", "")).lower(),
            fstype=probe.get("TYPE"), uuid=probe.get("UUID"),
            partuuid=(r.get("uuid") or probe.get("PART_ENTRY_UUID") or "").lower() or None,
            label=probe.get("LABEL"), partlabel=r.get("name") or probe.get("PART_ENTRY_NAME"),
        ))
    return DiskInfo(path=disk, label=label, parts=tuple(parts))


# ---- fstab ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FstabEntry:
    spec: str
    mountpoint: str
    fstype: str
    options: str = "defaults"


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


def resolve_spec(spec: str, disk: DiskInfo) -> Part | None:
    """The partition of `disk` an fstab spec names (UUID=, PARTUUID=, LABEL=, PARTLABEL=, by-* links)."""
    spec = spec.strip('"')
    by = {"/dev/disk/by-uuid/": "UUID=", "/dev/disk/by-partuuid/": "PARTUUID=",
          "/dev/disk/by-label/": "LABEL=", "/dev/disk/by-partlabel/": "PARTLABEL="}
    for prefix, key in by.items():
        if spec.startswith(prefix):
            spec = key + spec[len(prefix):]
    key, _, value = spec.partition("=")
    if not value:
        # A kernel device name from the old machine: trust only the partition number.
        m = re.search(r"(\d+)$", spec)
        return disk.part(int(m.group(1))) if m else None
    value_l = value.lower()
    for p in disk.parts:
        if key == "UUID" and p.uuid and p.uuid.lower() == value_l:
            return p
        if key == "PARTUUID" and p.partuuid and p.partuuid.lower() == value_l:
            return p
        if key == "LABEL" and p.label == value:
            return p
        if key == "PARTLABEL" and p.partlabel == value:
            return p
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


def bios_core_present(disk: DiskInfo) -> tuple[bool, str]:
    """Is something (GRUB's core.img) where boot.img will look for it?"""
    bb = disk.bios_boot
    if disk.label == "gpt":
        if bb is None:
            return False, "no BIOS boot partition on this GPT disk"
        first = read_sectors(disk.path, bb.start)
        return any(first), f"BIOS boot partition {bb.node} {'holds' if any(first) else 'is empty: no'} core.img"
    gap = read_sectors(disk.path, 1, min(disk.mbr_gap_sectors, 64))
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
