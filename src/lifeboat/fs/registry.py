"""What Lifeboat knows about each filesystem type, keyed by blkid's TYPE.

`mode` says how a partition of that type is captured:
  used-blocks  only the blocks the filesystem uses (map from partclone's domain log)
  swap         nothing copied; UUID and label recorded, mkswap on restore
  raw          every non-zero block (unknown or unsupported content)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FsKind:
    name: str
    mode: str  # used-blocks | swap | raw
    partclone: str = ""  # binary that maps used blocks
    grow: str = ""  # how to grow: resize2fs | xfs_growfs | btrfs | ntfsresize | "" (cannot)
    check: tuple[str, ...] = ()  # read-only consistency check, device appended

    def capture_tools(self) -> list[str]:
        return [self.partclone] if self.partclone else []

    def restore_tools(self, grows: bool) -> list[str]:
        tools: list[str] = []
        if self.mode == "swap":
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
        FsKind("ext2", "used-blocks", "partclone.extfs", "resize2fs", ("e2fsck", "-f", "-n")),
        FsKind("ext3", "used-blocks", "partclone.extfs", "resize2fs", ("e2fsck", "-f", "-n")),
        FsKind("ext4", "used-blocks", "partclone.extfs", "resize2fs", ("e2fsck", "-f", "-n")),
        FsKind("xfs", "used-blocks", "partclone.xfs", "xfs_growfs", ("xfs_repair", "-n")),
        FsKind("btrfs", "used-blocks", "partclone.btrfs", "btrfs", ("btrfs", "check", "--readonly")),
        FsKind("vfat", "used-blocks", "partclone.fat", "", ("fsck.vfat", "-n")),
        FsKind("ntfs", "used-blocks", "partclone.ntfs", "ntfsresize", ("ntfsfix", "--no-action")),
        FsKind("exfat", "used-blocks", "partclone.exfat", "", ("fsck.exfat", "-n")),
        FsKind("f2fs", "used-blocks", "partclone.f2fs"),
        FsKind("hfsplus", "used-blocks", "partclone.hfsplus"),
        FsKind("swap", "swap"),
    )
}

RAW = FsKind("raw", "raw")


def kind_for(fstype: str) -> FsKind:
    return KINDS.get(fstype, RAW)
