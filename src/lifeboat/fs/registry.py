"""What Lifeboat knows about each filesystem type, keyed by blkid's TYPE.

`mode` says how a partition of that type is captured:
  used-blocks  only the blocks the filesystem uses (map from partclone's domain log)
  swap         nothing copied; UUID and label recorded, mkswap on restore
  raw          every non-zero block (unknown or unsupported content)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class CaptureMode(StrEnum):
    """How a partition's content is captured and restored (the words plans and progress show)."""

    USED_BLOCKS = "used-blocks"
    RAW = "raw"
    SWAP = "swap"
    NONE = "none"  # nothing stored (an empty partition, one outside the image)


@dataclass(frozen=True)
class FsKind:
    name: str
    mode: CaptureMode
    partclone: str = ""  # binary that maps used blocks
    grow: str = ""  # how to grow: resize2fs | xfs_growfs | btrfs | ntfsresize | "" (cannot)

    def capture_tools(self) -> list[str]:
        return [self.partclone] if self.partclone else []

    def restore_tools(self, grows: bool) -> list[str]:
        tools: list[str] = []
        if self.mode is CaptureMode.SWAP:
            tools.append("mkswap")
        if grows:
            tools += {
                "resize2fs": ["e2fsck", "resize2fs"],
                "xfs_growfs": ["xfs_growfs", "mount", "umount"],
                "btrfs": ["btrfs", "mount", "umount"],
                "ntfsresize": ["ntfsresize"],
            }.get(self.grow, [])
        return tools


KINDS = {
    k.name: k
    for k in (
        FsKind("ext2", CaptureMode.USED_BLOCKS, "partclone.extfs", "resize2fs"),
        FsKind("ext3", CaptureMode.USED_BLOCKS, "partclone.extfs", "resize2fs"),
        FsKind("ext4", CaptureMode.USED_BLOCKS, "partclone.extfs", "resize2fs"),
        FsKind("xfs", CaptureMode.USED_BLOCKS, "partclone.xfs", "xfs_growfs"),
        FsKind("btrfs", CaptureMode.USED_BLOCKS, "partclone.btrfs", "btrfs"),
        FsKind("vfat", CaptureMode.USED_BLOCKS, "partclone.fat", ""),
        FsKind("ntfs", CaptureMode.USED_BLOCKS, "partclone.ntfs", "ntfsresize"),
        FsKind("exfat", CaptureMode.USED_BLOCKS, "partclone.exfat", ""),
        FsKind("f2fs", CaptureMode.USED_BLOCKS, "partclone.f2fs"),
        FsKind("hfsplus", CaptureMode.USED_BLOCKS, "partclone.hfsplus"),
        FsKind("swap", CaptureMode.SWAP),
    )
}

RAW = FsKind("raw", CaptureMode.RAW)


def kind_for(fstype: str) -> FsKind:
    return KINDS.get(fstype, RAW)
