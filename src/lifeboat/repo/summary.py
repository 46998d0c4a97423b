"""What front ends show about an image without reading its data: `lifeboat images`, the TUI's list."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PartitionSummary:
    number: int
    fstype: str  # the filesystem, or how it was captured when there is none
    size: int
    used_bytes: int
    note: str = ""  # why it was copied whole ("LUKS2 container ..., copied whole: ...")


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

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "created": self.created,
            "source_model": self.source_model,
            "source_serial": self.source_serial,
            "source_size": self.source_size,
            "table": self.table,
            "partitions": [
                {"number": p.number, "fstype": p.fstype, "size": p.size, "used_bytes": p.used_bytes, "note": p.note}
                for p in self.partitions
            ],
            "data_bytes": self.data_bytes,
            "lifeboat_version": self.lifeboat_version,
            "origin": self.origin,
        }
