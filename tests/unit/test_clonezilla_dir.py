"""Clonezilla's directory files parsed without root: the sfdisk dumps and parted listings below are
what ocs-sr 5.3.17 (Debian's clonezilla 5.3.17-2) wrote for the integration fixtures."""

from __future__ import annotations

import subprocess

import pytest

from lifeboat.errors import ImageCorrupt
from lifeboat.foreign.clonezilla import PartSource, image_dirs, read_image
from lifeboat.foreign.sfdump import parse_sfdisk_dump

GPT_SF = """label: gpt
label-id: 039BD725-27EE-C148-9720-9EFE1D8051EC
device: /dev/loop2
unit: sectors
first-lba: 2048
last-lba: 942046
sector-size: 512

/dev/loop2p1 : start=        2048, size=       65536, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, uuid=E919D52F-4629-9C40-ABEA-46D6D064EA7F, name="EFI system"
/dev/loop2p2 : start=       67584, size=      131072, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, uuid=2338B7EB-FCD9-7443-BDBE-ADC53C1BA616, name="root, \\"quoted\\"", attrs="LegacyBIOSBootable"
/dev/loop2p4 : start=      833536, size=      106496, type=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F, uuid=7EAA50C1-5721-2446-9D10-E480927EEECA
"""
MBR_SF = """label: dos
label-id: 0x2BF53FDF
device: /dev/sda
unit: sectors
sector-size: 512

/dev/sda1 : start=        2048, size=      131072, type=83, bootable
/dev/sda2 : start=      133120, size=       32768, type=82
/dev/sda3 : start=      165888, size=      243712, type=5
/dev/sda5 : start=      167936, size=      131072, type=7
"""
PARTED = """Model: ATA QEMU HARDDISK (scsi)
Disk /dev/sda: 409600s
Sector size (logical/physical): 512B/512B
Partition Table: msdos
"""


def test_gpt_dump():
    layout = parse_sfdisk_dump(GPT_SF, 942080, "loop2-pt.sf")
    assert layout.label == "gpt" and layout.disk_id == "039BD725-27EE-C148-9720-9EFE1D8051EC"
    assert (layout.first_lba, layout.last_lba, layout.disk_sectors) == (2048, 942046, 942080)
    p1, p2, p4 = layout.partitions
    assert (p1.number, p1.start, p1.size, p1.name) == (1, 2048, 65536, "EFI system")
    assert p1.kind == "EFI system" and p4.kind == "swap" and p4.name == ""
    assert p2.name == 'root, "quoted"' and p2.attrs == "LegacyBIOSBootable"
    assert p2.uuid == "2338B7EB-FCD9-7443-BDBE-ADC53C1BA616"


def test_mbr_dump():
    layout = parse_sfdisk_dump(MBR_SF, 409600, "sda-pt.sf")
    assert layout.label == "dos" and layout.disk_id == "0x2bf53fdf"
    assert [(p.number, p.type, p.bootable, p.is_extended) for p in layout.partitions] == [
        (1, "83", True, False), (2, "82", False, False), (3, "5", False, True), (5, "7", False, False)]


def test_bad_dump_is_named():
    with pytest.raises(ImageCorrupt, match="sda-pt.sf: partition table type 'sun' is not supported"):
        parse_sfdisk_dump("label: sun\n", 0, "sda-pt.sf")


def _image(tmp_path, partclone_image: bytes):
    d = tmp_path / "2026-01-01-img"
    d.mkdir()
    (d / "disk").write_text("sda\n")
    (d / "parts").write_text("sda1 sda5\n")
    (d / "clonezilla-img").write_text("This image was saved by Clonezilla at 2026-01-01 10:11:12 UTC.\n")
    (d / "Info-packages.txt").write_text("Image was saved by these Clonezilla-related packages:\n "
                                         "drbl-5.2.7-1 clonezilla-5.3.17-2 partclone-0.3.23+repack-1\n")
    (d / "sda-pt.sf").write_text(MBR_SF)
    (d / "sda-pt.parted").write_text(PARTED)
    (d / "sda-mbr").write_bytes(b"\xeb" * 512)
    (d / "sda-hidden-data-after-mbr").write_bytes(b"\x11" * (2047 * 512))
    (d / "swappt-sda2.info").write_text('UUID="1111-2222"\nLABEL="swp"\n')
    (d / "blkid.list").write_text('/dev/sda1: LABEL="root" UUID="abcd" TYPE="ext4"\n')
    packed = subprocess.run(["gzip", "-c"], input=partclone_image, capture_output=True, check=True).stdout
    (d / "sda1.ext4-ptcl-img.gz.aa").write_bytes(packed)
    (d / "sda5.dd-ptcl-img.gz.aa").write_bytes(packed)
    return d


def test_image_directory(tmp_path):
    d = _image(tmp_path, b"x" * 100)
    assert image_dirs(tmp_path) == [d] and image_dirs(d) == [d]
    image = read_image(d)
    assert (image.disk, image.created, image.version) == ("sda", "2026-01-01T10:11:12Z", "5.3.17-2")
    assert image.layout.disk_sectors == 409600
    assert [(r.name, r.offset, r.length) for r in image.boot_regions] == [("mbr", 0, 512),
                                                                         ("post-mbr-gap", 512, 2047 * 512)]
    parts = {p.number: p for p in image.partitions}
    assert (parts[1].source, parts[1].fstype, parts[1].uuid, parts[1].label) == (PartSource.PARTCLONE, "ext4",
                                                                                "abcd", "root")
    assert (parts[2].source, parts[2].uuid, parts[2].label) == (PartSource.SWAP, "1111-2222", "swp")
    assert parts[3].source is PartSource.NOT_SAVED and parts[5].source is PartSource.DD
    (d / "swappt-sda2.info").unlink()
    assert {p.number: p for p in read_image(d).partitions}[2].source is PartSource.SWAP  # made anew


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "parts").unlink(), "parts: file is missing"),
    (lambda d: (d / "sda-pt.sf").unlink(), "sda-pt.sf: file is missing"),
    (lambda d: (d / "disk").unlink(), "disk: file is missing (a Clonezilla partition image"),
    (lambda d: (d / "lvm_vg.list").write_text(""), "lvm_vg.list: LVM files without lvm_vg_dev.list"),
    (lambda d: (d / "sda5.dd-ptcl-img.gz.aa").rename(d / "sda5.dd-ptcl-img.gz.ab"), "gz.aa: split piece is missing"),
    (lambda d: (d / "sda1.ext4-ptcl-img.gz.aa").rename(d / "sda1.ext4-ptcl-img.rar.aa"), "compression 'rar'"),
    (lambda d: (d / "parts").write_text("sda1 sdb7\n"), "partition 'sdb7' does not belong to disk 'sda'"),
])
def test_bad_directories_are_named(tmp_path, damage, message):
    d = _image(tmp_path, b"x" * 100)
    damage(d)
    with pytest.raises(ImageCorrupt, match=message.replace("(", r"\(").replace(".", r"\.")):
        read_image(d)


def test_the_tui_finds_clonezilla_images_where_technicians_keep_them(tmp_path):
    from lifeboat.tui.repo_locations import image_count, repo_dirs

    for where in ("partimag", "home/partimag"):
        (tmp_path / where / "2026-01-01-img").mkdir(parents=True)
        (tmp_path / where / "2026-01-01-img" / "clonezilla-img").write_text("saved\n")
    (tmp_path / "home" / "partimag" / "notes").mkdir()
    (tmp_path / "lifeboat").mkdir()
    (tmp_path / "lifeboat" / "lifeboat-repo.json").write_text("{}")
    found = list(repo_dirs(str(tmp_path)))
    assert found == [str(tmp_path / "lifeboat"), str(tmp_path / "partimag"), str(tmp_path / "home/partimag")]
    assert image_count(str(tmp_path / "home/partimag")) == 1
