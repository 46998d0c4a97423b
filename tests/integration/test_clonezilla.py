"""Images made by the real Clonezilla (ocs-sr savedisk, see clonezilla_fixtures.py) listed, verified,
restored onto a same-size and a larger loop disk, and imported; plus the bad input of issue 12.

Assertions as in the native round trip: table with every identifier, MBR boot code (and the hidden
data after the MBR that Clonezilla saves for MBR disks), fsck, every file's hash, swap UUID.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from clonezilla_fixtures import BuiltFixture, fixture
from diskbuilder import MiB, fat_hashes, loop_disk, mounted, read_boot_regions, sfdisk_dump, sh, tree_hashes

from lifeboat.engine.plan import plan_restore
from lifeboat.engine.restore import restore
from lifeboat.engine.verify import verify
from lifeboat.errors import ImageCorrupt
from lifeboat.foreign.czrepo import ClonezillaRepository
from lifeboat.foreign.importer import import_image
from lifeboat.imagefs.mount import mount_image, umount_image
from lifeboat.layout.read import read_layout
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration
FIXTURES = ("gpt-zst-split", "mbr-gz")
FSCK = {"ext4": ["e2fsck", "-f", "-n"], "xfs": ["xfs_repair", "-n"], "vfat": ["fsck.vfat", "-n"],
        "ntfs": ["ntfsfix", "--no-action"]}


def lifeboat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeboat", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module", params=FIXTURES)
def built(request) -> BuiltFixture:
    return fixture(request.param)


@pytest.fixture(scope="module")
def gpt() -> BuiltFixture:
    return fixture("gpt-zst-split")


def assert_disk(disk, built: BuiltFixture, same_size: bool) -> None:
    table = sfdisk_dump(disk)
    if same_size:
        assert table == built.table
    layout = read_layout(disk.path)
    expected = {line.split(":")[0].strip(): line for line in built.table.splitlines() if line.startswith("DISK")}
    for p in layout.partitions:
        if p.uuid:
            assert f"uuid={p.uuid}" in expected[f"DISKp{p.number}"]
    assert built.table.splitlines()[1].split(":")[1].strip().lower() == layout.disk_id.lower()
    boot = read_boot_regions(disk, built.label, built.first_partition_start)
    assert hashlib.sha256(boot[:440]).hexdigest() == built.boot_code
    if built.label == "dos":  # Clonezilla saved the gap after the MBR (-j2); not for GPT
        assert hashlib.sha256(boot).hexdigest() == built.boot_regions
    for number, expected_files in built.hashes.items():
        fstype = built.fstypes[number]
        disk.refresh()
        proc = sh(*FSCK[fstype], disk.node(number), check=False)
        assert proc.returncode == 0, f"fsck of partition {number} ({fstype}): {proc.stdout[-400:]}{proc.stderr[-300:]}"
        disk.refresh()
        if fstype == "vfat":
            got = fat_hashes(disk.node(number))
        else:
            with mounted(disk.node(number), fstype, readonly=True) as mnt:
                got = tree_hashes(mnt)
        assert got == expected_files, f"partition {number} ({fstype}): files differ"
    for number, fstype in built.fstypes.items():
        if fstype == "swap":
            disk.refresh()
            assert sh("blkid", "-p", "-s", "TYPE", "-o", "value", disk.node(number)).stdout.strip() == "swap"


def test_listed_verified_restored_same_and_larger(built, workdir, lifeboat_env):
    listing = lifeboat("images", "--repo", str(built.root))
    assert listing.returncode == 0, listing.stderr
    assert built.image.name in listing.stdout and "(Clonezilla image)" in listing.stdout
    repo = Repository.open(built.root)
    assert isinstance(repo, ClonezillaRepository)
    report = verify(repo, built.image.name)
    assert report.ok, report.problems
    assert report.bytes > 10 * MiB
    with loop_disk(workdir, "same", built.disk_bytes) as same, loop_disk(workdir, "big", built.disk_bytes * 2) as big:
        restore(plan_restore(repo, built.image.name, same.path), bootloader=False)
        assert_disk(same, built, same_size=True)
        plan = plan_restore(repo, built.image.name, big.path)
        assert any(a.grows for a in plan.actions)
        # the command a technician types: plan, --yes, growing, swap, the bootloader step (a data disk: not
        # needed). This host kernel has no vfat: the step cannot look into the GPT fixture's ESP here.
        esp = ["--no-bootloader"] if built.label == "gpt" else []
        proc = lifeboat("restore", built.image.name, big.path, "--repo", str(built.root), "--yes", *esp)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert ("bootloader: skipped" if esp else "bootloader: not-needed") in proc.stderr + proc.stdout
        assert_disk(big, built, same_size=False)
    assert sh("find", str(built.image), "-newer", str(built.root / f"{built.image.name}.expect.json"),
              "-type", "f").stdout == ""  # the Clonezilla image was only read


def test_import_dedups_and_restores_the_same_disk(gpt, workdir, lifeboat_env):
    target = workdir / "native"
    proc = lifeboat("import", str(gpt.image), "first", "--repo", str(target))
    assert proc.returncode == 0, proc.stderr
    repo = Repository.open(target)
    assert verify(repo, "first").ok
    again = import_image(str(gpt.image), "second", repo)
    assert again.stats.new_chunks == 0 and again.stats.read_bytes > 10 * MiB  # every chunk shared
    listing = lifeboat("images", "--repo", str(target))
    assert "first" in listing.stdout and "(Clonezilla image)" in listing.stdout
    with loop_disk(workdir, "imported", gpt.disk_bytes) as disk:
        restore(plan_restore(repo, "first", disk.path), bootloader=False)
        assert_disk(disk, gpt, same_size=True)


def test_mount_browses_a_split_zstd_clonezilla_image(gpt, workdir, lifeboat_env):
    """`lifeboat mount` of the Clonezilla image itself (zstd, split into pieces: what Rescuezilla cannot
    browse): every file of its ext4 and xfs partitions reads back with its hash, nothing is restored."""
    m = mount_image(str(gpt.root), gpt.image.name, str(workdir / "view"))
    try:
        mounted_fs = {int(f.space[1:]): f for f in m.filesystems}
        browsable = {n for n, fstype in gpt.fstypes.items() if fstype in ("ext4", "xfs")}
        assert browsable and browsable <= set(mounted_fs), (m.filesystems, m.skipped)
        for number in browsable:
            assert mounted_fs[number].fstype == gpt.fstypes[number]
            assert tree_hashes(Path(mounted_fs[number].path)) == gpt.hashes[number], f"partition {number}"
    finally:
        umount_image(str(workdir / "view"))
    assert sh("find", str(gpt.image), "-newer", str(gpt.root / f"{gpt.image.name}.expect.json"),
              "-type", "f").stdout == ""  # the Clonezilla image was only read


# ---------------------------------------------------------------- bad input


@pytest.fixture
def damaged(gpt, tmp_path):
    """A private copy of the GPT image to damage; yields (root, image dir) and checks nothing else moved."""
    root = tmp_path / "partimag"
    root.mkdir()
    image = root / gpt.image.name
    shutil.copytree(gpt.image, image)
    yield root, image


def _fails(args, *patterns: str) -> str:
    proc = lifeboat(*args)
    assert proc.returncode != 0, proc.stdout
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    for pattern in patterns:
        assert pattern in err, err
    return err


def _ext4_pieces(image):
    return sorted(p for p in os.listdir(image) if ".ext4-ptcl-img.zst." in p)


def _ext4_partclone_data(image) -> bytearray:
    """The partclone image of partition 2, its split pieces joined and decompressed; the pieces removed."""
    pieces = _ext4_pieces(image)
    joined = b"".join((image / p).read_bytes() for p in pieces)
    for p in pieces:
        os.unlink(image / p)
    return bytearray(subprocess.run(["zstd", "-dc"], input=joined, capture_output=True, check=True).stdout)


def test_missing_split_piece(damaged):
    root, image = damaged
    piece = _ext4_pieces(image)[1]
    os.unlink(image / piece)
    _fails(["verify", image.name, "--repo", str(root)], f"{image / piece}: split piece is missing")


def test_truncated_piece(damaged):
    root, image = damaged
    piece = _ext4_pieces(image)[0]
    os.truncate(image / piece, 1000)
    _fails(["verify", image.name, "--repo", str(root)], f"{image / piece}: split piece is truncated (1000 bytes")


def test_flipped_byte_inside_the_partclone_image(damaged, tmp_path):
    """One byte of the partclone data changed (decompressed, flipped, compressed again): partclone's own
    checksum catches it, named by partition and offset; restore stops before that window is written."""
    root, image = damaged
    pieces = _ext4_pieces(image)
    data = _ext4_partclone_data(image)
    data[len(data) // 2] ^= 0x01
    packed = subprocess.run(["zstd", "-q", "-c"], input=bytes(data), capture_output=True, check=True).stdout
    subprocess.run(["split", "-a", "2", "-b", "1MB", "-", str(image / pieces[0][:-2])], input=packed, check=True)
    err = _fails(["verify", image.name, "--repo", str(root)], "partition 2 (loop", "checksum mismatch in used blocks",
                 "partition byte")
    assert image.name in err
    repo = Repository.open(root)
    with pytest.raises(ImageCorrupt, match="checksum mismatch"):
        for ref in repo.manifest(image.name).partition(2).stream.chunks:
            repo.get_chunk(ref.digest, ref.length)


def test_missing_parts_file(damaged):
    root, image = damaged
    os.unlink(image / "parts")
    _fails(["verify", image.name, "--repo", str(image)], f"{image / 'parts'}: file is missing")


def test_unknown_compressor(damaged):
    root, image = damaged
    for p in _ext4_pieces(image):
        os.rename(image / p, image / p.replace(".zst.", ".zip."))
    _fails(["verify", image.name, "--repo", str(root)], "compression 'zip' is not one Lifeboat reads")


def test_image_of_an_old_clonezilla(damaged):
    """Clonezilla before partclone (partimage): `<part>.aa` files, no -ptcl-img."""
    root, image = damaged
    for p in _ext4_pieces(image):
        os.rename(image / p, image / p.replace(".ext4-ptcl-img.zst", ""))
    _fails(["verify", image.name, "--repo", str(root)], "made by an old Clonezilla (partimage or ntfsclone format)")


def test_unknown_partclone_image_version(damaged):
    root, image = damaged
    pieces = _ext4_pieces(image)
    raw = _ext4_partclone_data(image)
    raw[30:34] = b"0009"
    (image / pieces[0]).write_bytes(subprocess.run(["zstd", "-q", "-c"], input=bytes(raw), capture_output=True,
                                                   check=True).stdout)
    _fails(["verify", image.name, "--repo", str(root)], "partclone image version '0009' is not one Lifeboat reads",
           "partition 2")
    listing = lifeboat("images", "--repo", str(root))
    assert "UNREADABLE" in listing.stdout and "'0009'" in listing.stdout


def test_capture_refuses_to_write_into_a_clonezilla_directory(damaged):
    root, _ = damaged
    err = _fails(["capture", "/dev/null", "x", "--repo", str(root)])
    assert "not empty and not a Lifeboat repository" in err
