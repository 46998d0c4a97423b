"""Volumes inside partitions, recognised from their own header bytes: LUKS containers, LVM physical
volumes, BitLocker volumes and Linux MD RAID members. Pure: bytes in, a VolumeInfo out; no device-mapper,
no cryptsetup/lvm/mdadm needed (this host and many rescue situations have none of them).

Until they are imaged by their contents, each is copied whole, and `reason` says why, for the plan.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from enum import StrEnum

HEAD_BYTES = 1 << 20  # LUKS2 header + JSON area (16 KiB default, up to 4 MiB allowed), LVM label + metadata
TAIL_BYTES = 128 * 1024  # MD 0.90 and 1.0 superblocks live near the end

LUKS_MAGIC = b"LUKS\xba\xbe"
LVM_LABEL = b"LABELONE"
LVM_TYPE = b"LVM2 001"
LVM_MDA_MAGIC = b" LVM2 x[5A%r0N*>"
BITLOCKER_SIGNATURE = b"-FVE-FS-"
MD_MAGIC = 0xA92B4EFC
VOLUME_FSTYPES = frozenset({"crypto_LUKS", "LVM2_member", "BitLocker", "linux_raid_member"})  # blkid's names


class VolumeKind(StrEnum):
    LUKS = "luks"
    LVM_PV = "lvm-pv"
    BITLOCKER = "bitlocker"
    MD_MEMBER = "md-member"


@dataclass(frozen=True)
class VolumeInfo:
    kind: VolumeKind
    version: str = ""  # "2" for LUKS2, "1.2" for an MD superblock
    uuid: str = ""
    label: str = ""  # LUKS2 label
    cipher: str = ""  # LUKS "aes-xts-plain64"
    group: str = ""  # LVM volume group, MD array name
    level: str = ""  # MD RAID level ("raid1")

    @property
    def fstype(self) -> str:
        """blkid's name for it."""
        return {VolumeKind.LUKS: "crypto_LUKS", VolumeKind.LVM_PV: "LVM2_member",
                VolumeKind.BITLOCKER: "BitLocker", VolumeKind.MD_MEMBER: "linux_raid_member"}[self.kind]

    @property
    def describe(self) -> str:
        if self.kind is VolumeKind.LUKS:
            facts = ", ".join(x for x in (self.cipher, f"UUID {self.uuid}" if self.uuid else "",
                                          f"label {self.label!r}" if self.label else "") if x)
            return f"LUKS{self.version} container ({facts})"
        if self.kind is VolumeKind.LVM_PV:
            return f"LVM physical volume {self.uuid}" + (f" of volume group {self.group}" if self.group else "")
        if self.kind is VolumeKind.BITLOCKER:
            return "BitLocker volume (signature -FVE-FS-)"
        array = self.group or self.uuid
        return f"MD RAID member (metadata {self.version}, {self.level or 'level ?'}) of array {array}"

    @property
    def reason(self) -> str:
        """Why it is copied whole, as the plan and the manifest say it."""
        if self.kind is VolumeKind.LUKS:
            return f"{self.describe}, copied whole: encrypted data does not compress"
        if self.kind is VolumeKind.LVM_PV:
            return f"{self.describe}, copied whole: no volume group on it that Lifeboat images volume by volume"
        if self.kind is VolumeKind.BITLOCKER:
            return (f"{self.describe}: copied whole while locked; Windows may ask for the recovery key after a "
                    "restore onto other hardware")
        return f"{self.describe}: copied whole, superblock included"


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("ascii", "replace").strip()


def parse_luks(head: bytes) -> VolumeInfo | None:
    if len(head) < 592 or not head.startswith(LUKS_MAGIC):
        return None
    version = struct.unpack_from(">H", head, 6)[0]
    uuid = _cstr(head[168:208])
    if version == 1:
        cipher = f"{_cstr(head[8:40])}-{_cstr(head[40:72])}"
        return VolumeInfo(VolumeKind.LUKS, "1", uuid, "", cipher)
    if version != 2:
        return None
    hdr_size = struct.unpack_from(">Q", head, 8)[0]
    label = _cstr(head[24:72])
    return VolumeInfo(VolumeKind.LUKS, "2", uuid, label, _luks2_cipher(head[4096:min(hdr_size, len(head))]))


def _luks2_cipher(area: bytes) -> str:
    """The first segment's encryption from the LUKS2 JSON area ("" when it cannot be read)."""
    try:
        meta = json.loads(area.split(b"\0", 1)[0])
        segments = meta["segments"]
        return str(segments[min(segments, key=int)]["encryption"])
    except (ValueError, KeyError, TypeError):
        return ""


def parse_bitlocker(head: bytes) -> VolumeInfo | None:
    return VolumeInfo(VolumeKind.BITLOCKER) if head[3:11] == BITLOCKER_SIGNATURE else None


def parse_lvm(head: bytes) -> VolumeInfo | None:
    """An LVM2 label in one of the first four 512-byte sectors, the PV UUID, and the VG name from the
    metadata text of the first metadata area."""
    for sector in range(4):
        base = sector * 512
        if head[base:base + 8] == LVM_LABEL and head[base + 24:base + 32] == LVM_TYPE:
            break
    else:
        return None
    pv = base + struct.unpack_from("<I", head, base + 20)[0]
    raw_uuid = _cstr(head[pv:pv + 32])
    uuid = "-".join(raw_uuid[a:b] for a, b in ((0, 6), (6, 10), (10, 14), (14, 18), (18, 22), (22, 26), (26, 32)))
    return VolumeInfo(VolumeKind.LVM_PV, "2", uuid, group=_lvm_vg_name(head, pv + 40))


def _lvm_vg_name(head: bytes, pos: int) -> str:
    """Skip the data area list, read the first metadata area's location, then its text's first word."""
    lists = 0
    while pos + 16 <= len(head):
        offset, size = struct.unpack_from("<QQ", head, pos)
        pos += 16
        if offset == 0 and size == 0:
            lists += 1
            if lists == 2:
                return ""
            continue
        if lists == 1:  # the first metadata area
            return _mda_text_name(head, offset)
    return ""


def _mda_text_name(head: bytes, mda: int) -> str:
    if head[mda + 4:mda + 20] != LVM_MDA_MAGIC:
        return ""
    start = struct.unpack_from("<Q", head, mda + 24)[0]
    text_offset, text_size = struct.unpack_from("<QQ", head, mda + 40)
    text = head[start + text_offset:start + text_offset + min(text_size, 4096)]
    first = text.split(b"{", 1)[0].strip()
    return first.decode("ascii", "replace") if first and b"\n" not in first else ""


def parse_md(head: bytes, tail: bytes, size: int) -> VolumeInfo | None:
    """MD superblocks: 1.1 at 0, 1.2 at 4 KiB, 1.0 at 8 KiB before the end (4 KiB aligned), 0.90 in the
    last 64 KiB-aligned 64 KiB. `tail` is the partition's last len(tail) bytes of its `size`."""
    for version, off in (("1.1", 0), ("1.2", 4096)):
        found = _md_v1(head, off, version)
        if found:
            return found
    tail_base = size - len(tail)
    end_v1 = ((size >> 9) - 16) & ~7  # in 512-byte sectors, as the kernel computes it
    found = _md_v1(tail, end_v1 * 512 - tail_base, "1.0")
    if found:
        return found
    return _md_v090(tail, ((size & ~0xFFFF) - 0x10000) - tail_base)


def _md_v1(data: bytes, off: int, version: str) -> VolumeInfo | None:
    if off < 0 or off + 256 > len(data) or struct.unpack_from("<I", data, off)[0] != MD_MAGIC:
        return None
    if struct.unpack_from("<I", data, off + 4)[0] != 1:
        return None
    uuid = data[off + 16:off + 32].hex()
    name = _cstr(data[off + 32:off + 64])
    level = struct.unpack_from("<i", data, off + 72)[0]
    return VolumeInfo(VolumeKind.MD_MEMBER, version, _md_uuid(uuid), group=name, level=_md_level(level))


def _md_v090(data: bytes, off: int) -> VolumeInfo | None:
    if off < 0 or off + 128 > len(data) or struct.unpack_from("<I", data, off)[0] != MD_MAGIC:
        return None
    words = [struct.unpack_from("<I", data, off + o)[0] for o in (20, 52, 56, 60)]
    uuid = "".join(f"{w:08x}" for w in words)
    level = struct.unpack_from("<i", data, off + 28)[0]
    return VolumeInfo(VolumeKind.MD_MEMBER, "0.90", _md_uuid(uuid), level=_md_level(level))


def _md_uuid(hex32: str) -> str:
    return ":".join(hex32[i:i + 8] for i in range(0, 32, 8))  # as mdadm prints it


def _md_level(level: int) -> str:
    names = {-1: "linear", 0: "raid0", 1: "raid1", 4: "raid4", 5: "raid5", 6: "raid6", 10: "raid10"}
    return names.get(level, f"level {level}")


def identify(head: bytes, tail: bytes, size: int) -> VolumeInfo | None:
    """What the partition holds, if it is one of these volumes (`head`: its first bytes, up to HEAD_BYTES;
    `tail`: its last bytes, up to TAIL_BYTES; `size`: its size in bytes)."""
    return parse_luks(head) or parse_bitlocker(head) or parse_lvm(head) or parse_md(head, tail, size)


def probe(node: str, size: int) -> VolumeInfo | None:
    """identify() on a partition's node (reads at most HEAD_BYTES + TAIL_BYTES)."""
    with open(node, "rb") as f:
        head = f.read(min(HEAD_BYTES, size))
        f.seek(max(0, size - TAIL_BYTES))
        tail = f.read(TAIL_BYTES)
    return identify(head, tail, size)
