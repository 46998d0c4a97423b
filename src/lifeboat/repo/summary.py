"""What front ends show about an image without reading its data: `lifeboat images`, the TUI's list."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartitionSummary:
    number: int
    fstype: str  # the filesystem, or how it was captured when there is none
    size: int
    used_bytes: int
    note: str = ""  # why it was copied whole ("LUKS2 container ..., copied whole: ..."), or what a LUKS one held
    unreadable_bytes: int = 0  # a rescue capture's bytes that could not be read (stored as zeros)


@dataclass(frozen=True)
class VolumeSummary:
    """A logical volume of a volume group."""

    name: str
    fstype: str  # the filesystem, "swap", or how it was captured
    size: int
    used_bytes: int
    uuid: str = ""
    unreadable_bytes: int = 0  # a rescue capture's bytes that could not be read (stored as zeros)


@dataclass(frozen=True)
class VolumeGroupSummary:
    name: str
    uuid: str
    partitions: tuple[int, ...]  # its physical volumes
    size: int  # bytes in extents
    free: int  # bytes in free extents
    lvs: tuple[VolumeSummary, ...] = ()

    def to_json(self) -> dict:
        return {"name": self.name, "uuid": self.uuid, "partitions": list(self.partitions), "size": self.size,
                "free": self.free,
                "lvs": [{"name": v.name, "uuid": v.uuid, "fstype": v.fstype, "size": v.size, "used_bytes": v.used_bytes,
                         "unreadable_bytes": v.unreadable_bytes}
                        for v in self.lvs]}


@dataclass(frozen=True)
class ImageSummary:
    name: str
    created: str
    source_model: str
    source_serial: str
    source_size: int
    table: str
    partitions: tuple[PartitionSummary, ...]
    data_bytes: int  # bytes the image restores
    lifeboat_version: str = ""
    origin: str = ""  # the tool an imported image came from
    volume_groups: tuple[VolumeGroupSummary, ...] = ()

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "created": self.created,
            "source_model": self.source_model,
            "source_serial": self.source_serial,
            "source_size": self.source_size,
            "table": self.table,
            "partitions": [
                {"number": p.number, "fstype": p.fstype, "size": p.size, "used_bytes": p.used_bytes, "note": p.note,
                 "unreadable_bytes": p.unreadable_bytes}
                for p in self.partitions
            ],
            "data_bytes": self.data_bytes,
            "lifeboat_version": self.lifeboat_version,
            "origin": self.origin,
            "volume_groups": [g.to_json() for g in self.volume_groups],
        }
