"""LUKS without device-mapper: the passphrase's handling, luksDump's data offset, the manifest's container
round trip, the capture's decision to open or copy whole, and the restore plan: its lines, sizes and growth,
and its refusals (no passphrase, a wrong one) before anything is written. cryptsetup formats a small
container in a file (no root, no mapping: luksFormat and `open --test-passphrase` need none), so the
passphrase is really checked against a real header."""

from __future__ import annotations

import os
import subprocess
from dataclasses import replace

import pytest
from imagekit import MiB, gpt_layout, store_stream

from lifeboat.engine import luks_capture, luks_plan
from lifeboat.errors import LifeboatError
from lifeboat.fs.volumes import VolumeInfo, VolumeKind
from lifeboat.layout.model import PartitionEntry
from lifeboat.repo.manifest import (BlobRef, CaptureStats, Compression, FilesystemContent, ImageManifest,
                                    LuksContent, PartitionImage, SourceDisk, write_manifest)
from lifeboat.repo.store import Repository
from lifeboat.volumes import luks
from lifeboat.volumes.luks import LuksKey, WrongLuksPassphrase

SECRET = "correct horse battery staple"
UUID = "a01ba75c-05e6-4e4a-8c93-86b40d3bcbb8"
LUKS2_DUMP = """LUKS header information
Version:       \t2
UUID:          \ta01ba75c-05e6-4e4a-8c93-86b40d3bcbb8
Label:         \tlbtest

Data segments:
  0: crypt
\toffset: 16777216 [bytes]
\tlength: (whole device)
\tcipher: aes-xts-plain64

Keyslots:
  0: luks2
\tArea offset:32768 [bytes]
"""
LUKS1_DUMP = "LUKS header information for /dev/sdb2\n\nVersion:       \t1\nCipher name:   \taes\nPayload offset:\t4096\n"


def test_the_passphrase_is_never_shown_and_comes_from_a_private_file(tmp_path):
    key = LuksKey(SECRET)
    assert SECRET not in repr(key) and SECRET not in str(key)
    path = tmp_path / "key"
    path.write_text(SECRET + "\nsecond line\n")
    os.chmod(path, 0o644)
    with pytest.raises(LifeboatError, match="can be read by others"):
        luks.read_key_file(path)
    os.chmod(path, 0o600)
    assert luks.read_key_file(path).passphrase == SECRET  # the first line, without its newline
    path.write_text("\n")
    with pytest.raises(LifeboatError, match="is empty"):
        luks.read_key_file(path)


def test_the_data_offset_is_read_from_luksdump():
    assert luks.parse_data_offset(LUKS2_DUMP) == 16 * MiB
    assert luks.parse_data_offset(LUKS1_DUMP) == 4096 * 512
    with pytest.raises(LifeboatError, match="no data segment offset"):
        luks.parse_data_offset("LUKS header information\nVersion: 2\n")


def test_mapper_names_follow_the_partition():
    assert luks.mapper_name("/dev/vdb1") == "lifeboat-luks-vdb1"


class _Part:
    """What inspect_containers reads of engine.capture.SourcePartition."""

    def __init__(self, number: int, size: int, volume: VolumeInfo | None):
        self.entry, self.node, self.volume = PartitionEntry(number, 2048, size // 512, ""), f"/dev/sdz{number}", volume
        self.reason, self.luks, self.size = "", None, size


def test_without_a_passphrase_a_container_is_copied_whole_and_the_reason_says_how_to_image_it():
    info = VolumeInfo(VolumeKind.LUKS, "2", UUID, "lbtest", "aes-xts-plain64")
    part, other = _Part(2, 512 * MiB, info), _Part(1, 8 * MiB, None)
    luks_capture.inspect_containers([other, part], None, lambda event: None, lambda inner: None)
    assert part.luks is None and other.reason == ""
    assert part.reason.startswith(f"LUKS2 container (aes-xts-plain64, UUID {UUID}, label 'lbtest'), copied whole "
                                  "(512.0 MiB): encrypted data does not compress")
    assert "--luks-passphrase-file" in part.reason


def test_without_device_mapper_a_container_is_copied_whole_even_with_a_passphrase(monkeypatch):
    monkeypatch.setattr(luks, "device_mapper", lambda: False)
    part = _Part(2, 512 * MiB, VolumeInfo(VolumeKind.LUKS, "2", UUID, "", "aes-xts-plain64"))
    luks_capture.inspect_containers([part], LuksKey(SECRET), lambda event: None, lambda inner: None)
    assert part.luks is None and "no device-mapper" in part.reason


@pytest.fixture(scope="module")
def header(tmp_path_factory) -> bytes:
    """A real LUKS2 header backup, of a container formatted in a file with SECRET (a cheap key derivation)."""
    where = tmp_path_factory.mktemp("luks")
    container = where / "container"
    container.write_bytes(b"")
    os.truncate(container, 20 * MiB)
    subprocess.run(["cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2",
                    "--pbkdf-force-iterations", "1000", "--uuid", UUID, "--label", "lbtest", "--key-file=-",
                    str(container)], input=SECRET.encode(), check=True, capture_output=True)
    assert luks.data_offset(str(container)) == 16 * MiB
    return luks.header_backup(str(container))


def _manifest(repo: Repository, header: bytes) -> ImageManifest:
    layout = gpt_layout({1: ("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", 8), 2: ("CA7D7CCB-63ED-4C53-861C-1742536059CC", 64)},
                        80)
    digest, _ = repo.put_chunk(header, 3)
    inner = FilesystemContent("ext4", "inner-uuid", "lbinner", store_stream(repo, 2, {0: 65536, 5 * MiB: 8192}))
    container = LuksContent(2, UUID, "lbtest", "aes-xts-plain64", BlobRef(digest, len(header)), inner, 16 * MiB,
                            luks_capture.SENSITIVE)
    esp = FilesystemContent("vfat", "1234-ABCD", "ESP", store_stream(repo, 1, {0: 4096}))
    return ImageManifest(
        name="luks", created="2026-11-27T07:00:00+00:00", finished="2026-11-27T07:01:00+00:00",
        lifeboat_version="0.test", source=SourceDisk("/dev/sdz", 80 * MiB), layout=layout,
        partitions=(PartitionImage(1, 8 * MiB, esp), PartitionImage(2, 64 * MiB, container)),
        compression=Compression("zstd", 3), stats=CaptureStats(1, 2, 3))


def _round_trip(tmp_path, header: bytes, build) -> tuple[ImageManifest, ImageManifest, PartitionImage]:
    """The manifest `build` makes, read back from its JSON (equal), and its partition 2 (the container)."""
    manifest = build(Repository.open(tmp_path / "repo", create=True), header)
    again = ImageManifest.from_json(manifest.to_json(), manifest.name)
    assert again == manifest
    part = again.partition(2)
    assert part.fstype == "crypto_LUKS" and part.content.header.digest in again.referenced_chunks()
    return manifest, again, part


def test_the_manifest_keeps_the_container_its_header_and_its_contents(tmp_path, header):
    manifest, again, part = _round_trip(tmp_path, header, _manifest)
    assert part.used_bytes == 65536 + 8192  # the contents' data
    assert "decrypts" in part.content.sensitive and SECRET not in str(manifest.to_json())


def test_plan_container_grows_the_contents_with_the_partition():
    content = LuksContent(2, UUID, "lbtest", "aes-xts-plain64", BlobRef("0" * 64, 1),
                          FilesystemContent("ext4", "u", "", _stream()), 16 * MiB)
    action = luks_plan.plan_container(2, content, 64 * MiB, PartitionEntry(3, 2048, 128 * 2048, ""), 512)
    assert (action.target_partition, action.size, action.new_size) == (3, 48 * MiB, 112 * MiB)
    assert action.grows and action.grow == "resize2fs" and action.write_bytes == 4096
    lines = action.lines()
    assert lines[0].strip().startswith(f"LUKS2 container (aes-xts-plain64, UUID {UUID}, label 'lbtest'): re-created")
    assert "112.0 MiB" in lines[1] and "grows from 48.0 MiB (resize2fs)" in lines[1]
    assert luks_plan.restore_tools((action,)) == ["cryptsetup", "udevadm", "e2fsck", "resize2fs"]
    with pytest.raises(LifeboatError, match="smaller than its 64.0 MiB: shrinking a LUKS container is not supported"):
        luks_plan.plan_container(2, content, 64 * MiB, PartitionEntry(3, 2048, 32 * 2048, ""), 512)


def _stream():
    from lifeboat.repo.manifest import BlockMapRef, ChunkRef, DataStream

    return DataStream(BlockMapRef("1" * 64, 10, 1), (ChunkRef(0, "2" * 64, 4096),), 4096)


def _planned(tmp_path, monkeypatch, header: bytes, key: LuksKey | None, dm: bool = True):
    from imagekit import fake_target

    from lifeboat.engine import plan

    repo = Repository.open(tmp_path / "repo", create=True)
    write_manifest(repo, _manifest(repo, header))
    fake_target(monkeypatch, 160 * MiB)
    monkeypatch.setattr(plan, "logical_sector_size", lambda target: 512)
    monkeypatch.setattr(plan, "read_health", lambda target: None)
    monkeypatch.setattr(plan, "_marker_text", lambda target: "")
    monkeypatch.setattr(plan, "luks_device_mapper", lambda: dm)
    return plan.plan_restore(repo, "luks", "/dev/sdt", luks_key=key)


def test_the_plan_shows_the_container_under_its_partition_and_grows_it(tmp_path, monkeypatch, header):
    plan = _planned(tmp_path, monkeypatch, header, LuksKey(SECRET))
    lines = plan.describe()
    row = next(i for i, line in enumerate(lines) if line.lstrip().startswith("2 "))
    assert "crypto_LUKS" in lines[row] and "LUKS container, same UUID" in lines[row] and "grows from 64.0 MiB" in lines[row]
    assert "re-created from its header backup (same UUID, cipher and key slots" in lines[row + 1]
    assert "ext4" in lines[row + 2] and "grows from 48.0 MiB (resize2fs)" in lines[row + 2]
    (container,) = plan.to_json()["luks_containers"]
    assert container["uuid"] == UUID and container["new_size"] > 2 * container["size"] and container["grows"]
    assert plan.total_bytes == 4096 + 65536 + 8192  # the ESP's and the contents' stored bytes, once
    assert SECRET not in repr(plan) and SECRET not in str(plan.to_json())


def test_the_plan_refuses_a_missing_or_wrong_passphrase_naming_the_partition(tmp_path, monkeypatch, header):
    with pytest.raises(LifeboatError, match="partition 2 of image 'luks' holds the contents of a LUKS2 container.*"
                                            "--luks-passphrase-file.*nothing was written"):
        _planned(tmp_path, monkeypatch, header, None)
    with pytest.raises(WrongLuksPassphrase, match="wrong passphrase for the LUKS container of partition 2 in image "
                                                  "'luks'.*nothing was written"):
        _planned(tmp_path / "b", monkeypatch, header, LuksKey("not it"))
    with pytest.raises(LifeboatError, match="no device-mapper"):
        _planned(tmp_path / "c", monkeypatch, header, LuksKey(SECRET), dm=False)


def test_an_unattended_job_takes_the_passphrase_from_the_file_beside_it(tmp_path):
    from lifeboat import unattended

    assert unattended._luks_key(tmp_path) is None
    path = tmp_path / unattended.LUKS_PASSPHRASE_FILE
    path.write_text(SECRET + "\n")
    os.chmod(path, 0o600)
    assert unattended._luks_key(tmp_path) == LuksKey(SECRET)
    os.chmod(path, 0o640)
    with pytest.raises(LifeboatError, match="lifeboat-luks-passphrase can be read by others"):
        unattended._luks_key(tmp_path)


def test_opened_contents_go_into_an_unencrypted_repository_only_when_allowed():
    from types import SimpleNamespace

    from lifeboat.engine.luks_capture import check_plaintext_allowed
    from lifeboat.errors import LifeboatError

    opened = SimpleNamespace(luks=object(), entry=SimpleNamespace(number=3))
    plain = SimpleNamespace(luks=None, entry=SimpleNamespace(number=1))
    unencrypted = SimpleNamespace(encrypted=False, root="/mnt/stick/images")
    with pytest.raises(LifeboatError, match=r"contents \(partition 3\) would be stored decrypted in /mnt/stick/images.*"
                                            r"--allow-plaintext.*nothing was written"):
        check_plaintext_allowed([plain, opened], unencrypted, allowed=False)
    check_plaintext_allowed([plain, opened], unencrypted, allowed=True)
    check_plaintext_allowed([plain, opened], SimpleNamespace(encrypted=True, root="/r"), allowed=False)
    check_plaintext_allowed([plain], unencrypted, allowed=False)  # nothing opened: nothing decrypted


# ---------------------------------------------------------------- LVM inside LUKS (the Debian installer's
# "guided encrypted LVM": partition 2 a LUKS2 container whose contents are the PV of debian-vg/{root,swap_1})


def _lvm_in_luks_manifest(repo: Repository, header: bytes) -> ImageManifest:
    from lifeboat.repo.manifest import LogicalVolumeImage, LvmPvContent, PhysicalVolumeImage, SwapContent, VolumeGroupImage

    base = _manifest(repo, header)
    luks_part = base.partition(2)
    container = LuksContent(2, UUID, "lbtest", "aes-xts-plain64", luks_part.content.header,
                            LvmPvContent("debian-vg", "pv-uuid"), 16 * MiB, luks_capture.SENSITIVE)
    root = FilesystemContent("ext4", "root-fs", "", store_stream(repo, 5, {0: 65536, 5 * MiB: 4096}))
    lvs = (LogicalVolumeImage("root", "root-uuid", 28 * MiB, root, 7),
           LogicalVolumeImage("swap_1", "swap-uuid", 8 * MiB, SwapContent("swap-fs"), 2))
    digest, _ = repo.put_chunk(b"debian-vg {\n}\n", 3)
    # the PV is the container's contents: 64 MiB less the 16 MiB header, 1 MiB before its first extent: 11 extents
    vg = VolumeGroupImage("debian-vg", "vg-uuid", 4 * MiB, BlobRef(digest, 14), lvs, 11, 2, (),
                          (PhysicalVolumeImage(2, "pv-uuid", MiB, 11),))
    return replace(base, name="lvmluks", partitions=(base.partition(1), PartitionImage(2, 64 * MiB, container)),
                   volume_groups=(vg,))


def test_lvm_inside_luks_is_a_pv_partition_whose_container_is_kept(tmp_path, header):
    _, again, part = _round_trip(tmp_path, header, _lvm_in_luks_manifest)
    assert part.content.inner.kind == "lvm-pv" and part.content.inner.vg_name == "debian-vg"
    assert again.volume_groups[0].pvs[0].partition == 2
    summary = again.summary().to_json()
    (group,) = summary["volume_groups"]
    assert group["partitions"] == [2] and [lv["name"] for lv in group["lvs"]] == ["root", "swap_1"]
    assert [p["fstype"] for p in summary["partitions"]] == ["vfat", "crypto_LUKS"]
    assert summary["partitions"][1]["note"] == (f"LUKS2 container (UUID {UUID}) opened with its passphrase: holds an "
                                                "LVM physical volume of volume group debian-vg")
    assert luks_plan.pv_offsets(again) == {2: 16 * MiB}


def test_a_pv_inside_luks_gets_the_container_less_its_header(tmp_path, header):
    from lifeboat.engine import lvm_plan

    repo = Repository.open(tmp_path / "repo", create=True)
    manifest = _lvm_in_luks_manifest(repo, header)
    vg, content = manifest.volume_groups[0], manifest.partition(2).content
    target = PartitionEntry(2, 18432, 128 * 2048, "")  # 128 MiB: 112 MiB of PV, 27 extents
    group = lvm_plan.plan_group(vg, {2: target}, 512, None, luks_plan.pv_offsets(manifest))
    assert (group.extents, group.new_extents) == (11, 27)
    sizes = {v.name: (v.size // MiB, v.new_size // MiB) for v in group.volumes}
    assert sizes == {"root": (28, 92), "swap_1": (8, 8)}  # all 16 new extents to the data volume
    action = luks_plan.plan_container(2, content, 64 * MiB, target, 512)
    assert (action.volume_group, action.pv_uuid, action.size, action.new_size) == ("debian-vg", "pv-uuid", 48 * MiB,
                                                                                   112 * MiB)
    assert action.grow == "" and action.write_bytes == 0  # the group's volumes carry the data
    assert "LVM physical volume of debian-vg, same UUID pv-uuid" in action.lines()[1]
    smaller = luks_plan.plan_container(2, content, 64 * MiB, PartitionEntry(2, 18432, 48 * 2048, ""), 512)
    assert smaller.new_size == 32 * MiB and "shrinks from 48.0 MiB" in smaller.lines()[1]  # the group decides


def test_the_plan_nests_the_volume_group_under_its_luks_partition(tmp_path, monkeypatch, header):
    from imagekit import fake_target

    from lifeboat.engine import plan as plan_module

    repo = Repository.open(tmp_path / "repo", create=True)
    write_manifest(repo, _lvm_in_luks_manifest(repo, header))
    fake_target(monkeypatch, 160 * MiB)
    for name, value in (("logical_sector_size", lambda target: 512), ("read_health", lambda target: None),
                        ("_marker_text", lambda target: ""), ("luks_device_mapper", lambda: True),
                        ("device_mapper", lambda: True), ("groups_elsewhere", lambda exclude: {})):
        monkeypatch.setattr(plan_module, name, value)
    with pytest.raises(LifeboatError, match="partition 2 of image 'lvmluks' holds the contents of a LUKS2"):
        plan_module.plan_restore(repo, "lvmluks", "/dev/sdt")
    plan = plan_module.plan_restore(repo, "lvmluks", "/dev/sdt", luks_key=LuksKey(SECRET))
    lines = plan.describe()
    row = next(i for i, line in enumerate(lines) if line.lstrip().startswith("2 "))
    assert "LUKS container, same UUID" in lines[row] and "LUKS container holding an LVM physical volume" in lines[row]
    assert "re-created from its header backup" in lines[row + 1]
    assert "LVM physical volume of debian-vg" in lines[row + 2] and "its volume group below" in lines[row + 2]
    assert lines[row + 3].startswith("        LVM volume group debian-vg (44.0 MiB, grows to ")  # nested deeper
    nested = [line.split()[:2] for line in lines[row + 4:row + 6]]
    assert nested[0][0] == "root" and nested[1] == ["swap_1", "8.0"], lines
    data = plan.to_json()
    (container,) = data["luks_containers"]
    assert container["volume_group"] == "debian-vg" and container["pv_uuid"] == "pv-uuid"
    (group,) = data["volume_groups"]
    assert group["partitions"] == [2]
    sizes = {lv["name"]: (lv["size"], lv["new_size"]) for lv in group["lvs"]}
    assert sizes["swap_1"] == (8 * MiB, 8 * MiB) and sizes["root"][1] > 2 * sizes["root"][0]
    # the PV fills the container less its header: every extent the group gains goes to root
    assert group["new_extents"] == (container["new_size"] - MiB) // (4 * MiB)
    assert plan.total_bytes == 4096 + 65536 + 4096  # the ESP and root, once
    assert SECRET not in repr(plan) and SECRET not in str(data)


def test_a_container_whose_group_is_not_imaged_is_copied_whole_again():
    from types import SimpleNamespace

    info = VolumeInfo(VolumeKind.LUKS, "2", UUID, "", "aes-xts-plain64")
    pv_info = VolumeInfo(VolumeKind.LVM_PV, "", "pv", "", "")
    grouped, ungrouped = _Part(2, 64 * MiB, info), _Part(3, 64 * MiB, info)
    for part in (grouped, ungrouped):
        part.luks = SimpleNamespace(inner=SimpleNamespace(volume=pv_info, pv=None, reason=""))
        part.kind = luks_capture.LUKS_OPENED
    grouped.luks.inner.pv = object()
    ungrouped.luks.inner.reason = "LVM2 PV, copied whole: volume group tvg: pool is a thin pool, which Lifeboat ..."
    assert luks_capture.inner_volumes([grouped, ungrouped]) == [grouped.luks.inner, ungrouped.luks.inner]
    luks_capture.copy_ungrouped_whole([grouped, ungrouped])
    assert grouped.luks is not None and grouped.reason == ""
    assert ungrouped.luks is None and ungrouped.kind.mode == "raw"
    assert ungrouped.reason.startswith("LUKS2 container (aes-xts-plain64, UUID") and \
        ungrouped.reason.endswith("copied whole (64.0 MiB): volume group tvg: pool is a thin pool, which Lifeboat ...")
