"""Header parsers for volumes inside partitions, on synthetic bytes laid out as the on-disk formats say
(LUKS1/LUKS2 phdr, LVM2 label + pv_header + mda_header + metadata text, BitLocker boot sector,
MD superblocks 1.x and 0.90). A real LUKS2 header from cryptsetup is checked in the integration test."""

from __future__ import annotations

import json
import struct

from lifeboat.fs.volumes import (BITLOCKER_SIGNATURE, LUKS_MAGIC, LVM_MDA_MAGIC, MD_MAGIC, VolumeKind,
                                 identify, parse_luks, parse_lvm, parse_md)

UUID = "0e3a6b44-ff8e-4f55-9f10-2b4c3d5e6f70"


def luks2(label: str = "root", cipher: str = "aes-xts-plain64") -> bytes:
    head = bytearray(16384)
    head[0:6] = LUKS_MAGIC
    struct.pack_into(">HQQ", head, 6, 2, 16384, 1)
    head[24:24 + len(label)] = label.encode()
    head[168:168 + len(UUID)] = UUID.encode()
    area = json.dumps({"segments": {"0": {"type": "crypt", "encryption": cipher}}, "keyslots": {}}).encode()
    head[4096:4096 + len(area)] = area
    return bytes(head)


def test_luks2_and_luks1():
    info = parse_luks(luks2())
    assert (info.kind, info.version, info.uuid, info.label, info.cipher) == (VolumeKind.LUKS, "2", UUID, "root", "aes-xts-plain64")
    assert info.reason.startswith("LUKS2 container (aes-xts-plain64, UUID " + UUID)
    assert info.reason.endswith("copied whole: encrypted data does not compress")
    v1 = bytearray(4096)
    v1[0:6] = LUKS_MAGIC
    struct.pack_into(">H", v1, 6, 1)
    v1[8:11], v1[40:52], v1[168:168 + len(UUID)] = b"aes", b"cbc-essiv:sha256".ljust(12)[:12], UUID.encode()
    info = parse_luks(bytes(v1))
    assert info.version == "1" and info.cipher.startswith("aes-cbc-essiv") and info.uuid == UUID
    assert parse_luks(bytes(4096)) is None


def test_bitlocker_signature():
    sector = bytearray(1 << 20)
    sector[0:3], sector[3:11] = b"\xeb\x58\x90", BITLOCKER_SIGNATURE
    info = identify(bytes(sector), b"", len(sector))
    assert info.kind is VolumeKind.BITLOCKER and "Windows may ask for the recovery key" in info.reason
    sector[3:11] = b"NTFS    "
    assert identify(bytes(sector), b"", len(sector)) is None


def lvm_pv(vg: str = "vg0") -> bytes:
    head = bytearray(1 << 20)
    label = 512
    head[label:label + 8] = b"LABELONE"
    struct.pack_into("<QII", head, label + 8, 1, 0, 32)
    head[label + 24:label + 32] = b"LVM2 001"
    pv = label + 32
    head[pv:pv + 32] = b"AbCdEf" + b"0123456789abcdefghijklmnopqrst"[:26]
    struct.pack_into("<Q", head, pv + 32, 64 << 20)
    struct.pack_into("<QQQQ", head, pv + 40, 1 << 20, 0, 0, 0)  # one data area, then the end of the list
    struct.pack_into("<QQQQ", head, pv + 72, 4096, (1 << 20) - 4096, 0, 0)  # one metadata area at 4 KiB
    mda = 4096
    head[mda + 4:mda + 20] = LVM_MDA_MAGIC
    text = f"{vg} {{\nid = \"x\"\nseqno = 1\n}}\n".encode()
    struct.pack_into("<IQQ", head, mda + 20, 1, mda, (1 << 20) - 4096)
    struct.pack_into("<QQII", head, mda + 40, 512, len(text), 0, 0)
    head[mda + 512:mda + 512 + len(text)] = text
    return bytes(head)


def test_lvm_label_and_vg_name():
    info = parse_lvm(lvm_pv("vgdata"))
    assert info.kind is VolumeKind.LVM_PV and info.group == "vgdata"
    assert info.uuid == "AbCdEf-0123-4567-89ab-cdef-ghij-klmnop"
    assert "of volume group vgdata" in info.reason
    assert parse_lvm(bytes(4096)) is None


def md_v1(version_offset: int, name: str = "host:0") -> bytearray:
    sb = bytearray(4096)
    struct.pack_into("<III", sb, 0, MD_MAGIC, 1, 0)
    sb[16:32] = bytes(range(16))
    sb[32:32 + len(name)] = name.encode()
    struct.pack_into("<i", sb, 72, 1)
    return sb


def test_md_superblocks_1_2_1_0_and_0_90():
    size = 64 << 20
    head = bytearray(1 << 20)
    head[4096:8192] = md_v1(4096)
    info = parse_md(bytes(head), b"", size)
    assert (info.version, info.group, info.level) == ("1.2", "host:0", "raid1")
    assert info.uuid == "00010203:04050607:08090a0b:0c0d0e0f"
    assert "MD RAID member (metadata 1.2, raid1) of array host:0: copied whole, superblock included" == info.reason
    tail = bytearray(128 * 1024)
    end = (((size >> 9) - 16) & ~7) * 512 - (size - len(tail))
    tail[end:end + 4096] = md_v1(0, "nas:data")
    assert parse_md(bytes(1 << 20), bytes(tail), size).version == "1.0"
    tail = bytearray(128 * 1024)
    off = (size & ~0xFFFF) - 0x10000 - (size - len(tail))
    struct.pack_into("<IIII", tail, off, MD_MAGIC, 0, 90, 0)
    struct.pack_into("<IIi", tail, off + 20, 0x11111111, 0, 5)
    info = parse_md(bytes(1 << 20), bytes(tail), size)
    assert info.version == "0.90" and info.level == "raid5" and info.uuid.startswith("11111111:")
