"""A partition table as plain, frozen data: what capture records and what restore recreates.

All positions are in sectors of `sector_size` bytes, exactly as on disk.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

GPT_ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
GPT_BIOS_BOOT = "21686148-6449-6E6F-744E-656564454649"
GPT_MS_RESERVED = "E3C9E316-0B5C-4DB8-817D-F92DF00215AE"
GPT_WINDOWS_RECOVERY = "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC"
GPT_LINUX_SWAP = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
MBR_EXTENDED_TYPES = {"5", "f", "85"}
MBR_ESP = "ef"
MBR_SWAP = "82"

# Partitions whose size is part of their meaning: they keep it when the target disk is larger.
FIXED_SIZE_TYPES = {GPT_ESP, GPT_BIOS_BOOT, GPT_MS_RESERVED, GPT_WINDOWS_RECOVERY, GPT_LINUX_SWAP, MBR_ESP, MBR_SWAP}


GPT_ENTRIES_BYTES = 128 * 128  # the entry array sfdisk writes: 128 entries of 128 bytes


def gpt_entry_sectors(sector_size: int) -> int:
    """Sectors the GPT entry array takes: 32 at 512 bytes, 4 at 4096."""
    return -(-GPT_ENTRIES_BYTES // sector_size)


def gpt_head_sectors(sector_size: int) -> int:
    """Protective MBR + GPT header + entries: the first usable LBA at the least (34 at 512, 6 at 4096)."""
    return 2 + gpt_entry_sectors(sector_size)


@dataclass(frozen=True)
class PartitionEntry:
    number: int
    start: int  # first sector
    size: int  # sectors
    type: str  # GPT type GUID (upper case) or MBR type id in hex without 0x ("83", "ef", "5")
    uuid: str = ""  # GPT unique partition GUID
    name: str = ""  # GPT partition name
    attrs: str = ""  # GPT attribute string as sfdisk writes it
    bootable: bool = False  # MBR active flag
    flags: tuple[str, ...] = ()  # parted's flag names, for display

    @property
    def end(self) -> int:
        """Last sector (inclusive)."""
        return self.start + self.size - 1

    @property
    def is_extended(self) -> bool:
        return self.type.lower() in MBR_EXTENDED_TYPES

    @property
    def is_logical(self) -> bool:
        return self.number > 4 and not self.uuid and not self.name

    @property
    def fixed_size(self) -> bool:
        return self.type.upper() in FIXED_SIZE_TYPES or self.type.lower() in FIXED_SIZE_TYPES

    @property
    def kind(self) -> str:
        t = self.type.upper()
        if t in (GPT_ESP, MBR_ESP.upper()):
            return "EFI system"
        if t == GPT_BIOS_BOOT:
            return "BIOS boot"
        if self.is_extended:
            return "extended"
        if t in (GPT_LINUX_SWAP, MBR_SWAP):
            return "swap"
        return "data"


@dataclass(frozen=True)
class DiskLayout:
    label: str  # "gpt" | "dos"
    disk_id: str  # GPT disk GUID or MBR signature "0x1234abcd"
    sector_size: int
    disk_sectors: int  # size of the disk this layout was read from (or fitted to)
    partitions: tuple[PartitionEntry, ...] = field(default_factory=tuple)
    first_lba: int = 0  # GPT only
    last_lba: int = 0  # GPT only

    @property
    def size_bytes(self) -> int:
        return self.disk_sectors * self.sector_size

    @property
    def min_disk_sectors(self) -> int:
        """Smallest disk that holds every partition (plus the backup GPT)."""
        end = max((p.end for p in self.partitions), default=0) + 1
        return end + (1 + gpt_entry_sectors(self.sector_size) if self.label == "gpt" else 0)

    @property
    def first_partition_start(self) -> int:
        return min((p.start for p in self.partitions), default=(1 << 20) // self.sector_size)

    def partition(self, number: int) -> PartitionEntry:
        for p in self.partitions:
            if p.number == number:
                return p
        raise KeyError(number)

    def data_partitions(self) -> list[PartitionEntry]:
        """Partitions that hold data (every one but an MBR extended container)."""
        return [p for p in self.partitions if not p.is_extended]

    def with_partitions(self, partitions: list[PartitionEntry], disk_sectors: int) -> DiskLayout:
        last = disk_sectors - gpt_head_sectors(self.sector_size) if self.label == "gpt" else 0
        return replace(self, partitions=tuple(partitions), disk_sectors=disk_sectors, last_lba=last)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> DiskLayout:
        parts = tuple(PartitionEntry(**{**p, "flags": tuple(p.get("flags", ()))}) for p in data["partitions"])
        return cls(**{**data, "partitions": parts})
