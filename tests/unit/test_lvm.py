"""LVM without lvm2: the reports and vgcfgbackup text captured once from lvm2 2.03.31 in the live ISO
(tests/fixtures/lvm: a group lbvg with root ext4, data, swap on /dev/vda2; a group thinvg with a thin
pool, a thin volume, an origin and its snapshot), the grow arithmetic, the plan's sizes and name check,
and the manifest's volume groups round trip."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from imagekit import MiB, gpt_layout, store_stream

from lifeboat.engine import lvm_plan
from lifeboat.errors import LifeboatError
from lifeboat.layout.model import PartitionEntry
from lifeboat.repo.manifest import (BlobRef, CaptureStats, Compression, FilesystemContent, ImageManifest,
                                    LogicalVolumeImage, LvmPvContent, LvSegmentImage, PartitionImage,
                                    PhysicalVolumeImage, SourceDisk, SwapContent, VolumeGroupImage)
from lifeboat.repo.store import Repository
from lifeboat.volumes.lvm_model import LvRole, grow_extents, metadata_facts, parse_reports, pv_extents, renamed_metadata

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "lvm"


def _read(name: str) -> str:
    return (FIX / name).read_text()


def test_reports_parse_into_a_typed_group():
    (vg,) = parse_reports(_read("vgs.json"), _read("pvs.json"), _read("lvs.json"))
    assert (vg.name, vg.uuid, vg.extent_size, vg.extents, vg.free, vg.tags) == (
        "lbvg", "mTVJ0O-mD9a-qqZz-OD2j-06O8-Auzx-BUSYKR", 4 * MiB, 123, 41, ("site-a",))
    (pv,) = vg.pvs
    assert (pv.node, pv.uuid, pv.pe_start, pv.extents, pv.allocated) == (
        "/dev/vda2", "CmrUXx-7p5a-QUJ6-Fbi3-8XNK-gM4b-rvOKNc", MiB, 123, 82)
    lvs = {lv.name: lv for lv in vg.lvs}
    assert set(lvs) == {"root", "data", "swap"}
    root = lvs["root"]
    assert root.uuid == "ypyAoF-G1Tv-7v2R-82D6-9ljc-Ip76-i6Gjri" and root.size == 176 * MiB and root.tags == ("role-root",)
    assert [(s.start_extent, s.extents, s.devices) for s in root.segments] == [(0, 40, "/dev/vda2(0)"),
                                                                               (40, 4, "/dev/vda2(78)")]
    assert root.extents == 44 and root.active and root.unsupported() == ""
    assert vg.unsupported(frozenset({"/dev/vda2"})) == ""


def test_a_group_on_another_disk_too_or_with_missing_pvs_is_copied_whole():
    (vg,) = parse_reports(_read("vgs.json"), _read("pvs.json"), _read("lvs.json"))
    assert "spans other disks too (/dev/vda2)" in vg.unsupported(frozenset({"/dev/vdb2"}))
    missing = _read("vgs.json").replace('"pv_count":"1"', '"pv_count":"2"')
    (vg,) = parse_reports(missing, _read("pvs.json"), _read("lvs.json"))
    assert "has 2 physical volumes, 1 of them found" in vg.unsupported(frozenset({"/dev/vda2"}))


def test_thin_pools_and_snapshots_are_named_as_the_reason():
    (vg,) = parse_reports(_read("thin-vgs.json"), _read("thin-pvs.json"), _read("thin-lvs.json"))
    reasons = {lv.name: lv.unsupported() for lv in vg.lvs}
    assert reasons["pool"] == "pool is a thin pool"
    assert reasons["thin1"] == "thin1 is a thin volume"
    assert reasons["snap"] == "snap is a snapshot"
    assert reasons["plain"] == "plain is the origin of a snapshot"
    assert {lv.name for lv in vg.visible_lvs} == {"plain", "pool", "snap", "thin1"}
    reason = vg.unsupported(frozenset({"/dev/vdb1"}))
    assert reason.startswith("volume group thinvg: ") and "does not image volume by volume yet" in reason


def test_a_broken_report_is_an_error_naming_the_command():
    with pytest.raises(LifeboatError, match="pvs: unexpected report"):
        parse_reports(_read("vgs.json"), "{not json", _read("lvs.json"))
    with pytest.raises(LifeboatError, match="vgs: vg_extent_size 'x' is not a number"):
        parse_reports(_read("vgs.json").replace('"4194304"', '"x"'), _read("pvs.json"), _read("lvs.json"))


def test_vgcfgbackup_text_facts_and_rename():
    text = _read("lbvg.vg")
    assert metadata_facts(text) == ("lbvg", "mTVJ0O-mD9a-qqZz-OD2j-06O8-Auzx-BUSYKR")
    renamed = renamed_metadata(text, "lbvg", "lbvg_copy")
    assert metadata_facts(renamed) == ("lbvg_copy", "mTVJ0O-mD9a-qqZz-OD2j-06O8-Auzx-BUSYKR")
    assert renamed.count("\n") == text.count("\n")
    with pytest.raises(LifeboatError, match="names 'lbvg', not 'other'"):
        renamed_metadata(text, "other", "x")


def test_grow_shares_new_extents_among_data_volumes_in_proportion():
    sizes = {"root": 44, "data": 76, "swap": 8, "raw": 10}
    roles = {"root": LvRole.DATA, "data": LvRole.DATA, "swap": LvRole.SWAP, "raw": LvRole.FIXED}
    grown = grow_extents(sizes, roles, 120)
    assert grown["swap"] == 8 and grown["raw"] == 10
    assert grown["root"] - 44 == 44 and grown["data"] - 76 == 76  # 44:76 of 120
    grown = grow_extents(sizes, roles, 7)  # 2.56 + 4.43: the remainder goes to the largest
    assert grown == {"root": 46, "data": 81, "swap": 8, "raw": 10} and sum(grown.values()) == sum(sizes.values()) + 7
    assert grow_extents(sizes, roles, 0) == sizes and grow_extents({"swap": 8}, {"swap": LvRole.SWAP}, 50) == {"swap": 8}


def test_pv_extents_after_its_metadata_area():
    assert pv_extents(495 * MiB, MiB, 4 * MiB) == 123  # the fixture's PV: 494 MiB after pe_start
    assert pv_extents(MiB // 2, MiB, 4 * MiB) == 0


def _lvm_manifest(repo: Repository) -> ImageManifest:
    layout = gpt_layout({1: ("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", 8), 2: ("E6D6D379-F507-44C2-A23C-238F2A3DF928", 61)}, 72)
    root = FilesystemContent("ext4", "root-fs", "lbroot", store_stream(repo, 5, {0: 65536, 5 * MiB: 4096}))
    data = FilesystemContent("xfs", "data-fs", "lbdata", store_stream(repo, 6, {0: 8192}))
    lvs = (LogicalVolumeImage("root", "root-uuid", 20 * MiB, root, 5, ("role-root",),
                              (LvSegmentImage(0, 5, "linear", 1, "/dev/vda2(0)"),)),
           LogicalVolumeImage("data", "data-uuid", 32 * MiB, data, 8),
           LogicalVolumeImage("swap", "swap-uuid", 4 * MiB, SwapContent("swap-fs", "lbswap"), 1))
    digest, _ = repo.put_chunk(_read("lbvg.vg").encode(), 3)
    vg = VolumeGroupImage("lbvg", "vg-uuid", 4 * MiB, BlobRef(digest, len(_read("lbvg.vg"))), lvs, 15, 1, ("site-a",),
                          (PhysicalVolumeImage(2, "pv-uuid", MiB, 15),))
    fs = store_stream(repo, 1, {0: 4096})
    parts = (PartitionImage(1, 8 * MiB, FilesystemContent("vfat", "ESP", "", fs)),
             PartitionImage(2, 61 * MiB, LvmPvContent("lbvg", "pv-uuid")))
    return ImageManifest("lvm", "2026-11-27T09:00:00+00:00", "", "0.test", SourceDisk("/dev/vda", 72 * MiB),
                         layout, (), parts, (vg,), Compression(), CaptureStats())


def test_manifest_round_trip_keeps_groups_pvs_segments_and_tags(tmp_path):
    repo = Repository.open(tmp_path / "repo", create=True)
    manifest = _lvm_manifest(repo)
    again = ImageManifest.from_json(json.loads(json.dumps(manifest.to_json())), "lvm")
    assert again == manifest
    assert again.volume_groups[0].lvs[0].segments[0].devices == "/dev/vda2(0)"
    summary = again.summary().to_json()
    (group,) = summary["volume_groups"]
    assert group["partitions"] == [2] and [lv["name"] for lv in group["lvs"]] == ["root", "data", "swap"]
    assert [lv["fstype"] for lv in group["lvs"]] == ["ext4", "xfs", "swap"]
    bad = manifest.to_json()
    bad["volume_groups"][0]["pvs"][0]["partition"] = 7
    with pytest.raises(Exception, match="partition 7 is not in the image"):
        ImageManifest.from_json(bad, "lvm")


def test_plan_grows_data_volumes_and_keeps_swap(tmp_path):
    repo = Repository.open(tmp_path / "repo", create=True)
    vg = _lvm_manifest(repo).volume_groups[0]
    group = lvm_plan.plan_group(vg, {2: PartitionEntry(2, 18432, 121 * 2048, "")}, 512)
    assert group.extents == 15 and group.new_extents == 30  # 120 MiB of extents instead of 60
    sizes = {v.name: (v.size // MiB, v.new_size // MiB, v.role, v.grow) for v in group.volumes}
    # 15 new extents, 5:8 between root and data (5 + 9, the remainder to data): 10 and 18 extents
    assert sizes == {"root": (20, 40, LvRole.DATA, "resize2fs"), "data": (32, 72, LvRole.DATA, "xfs_growfs"),
                     "swap": (4, 4, LvRole.SWAP, "")}
    text = "\n".join(group.lines())
    assert "LVM volume group lbvg (60.0 MiB, grows to 120.0 MiB), UUID vg-uuid" in text
    assert "root" in text and "grows from 20.0 MiB (resize2fs)" in text and "keeps its size" in text
    assert group.to_json()["lvs"][1]["new_size"] == 72 * MiB
    with pytest.raises(LifeboatError, match="fewer than its 15: its volumes. minimum sizes are not known"):
        lvm_plan.plan_group(vg, {2: PartitionEntry(2, 18432, 30 * 2048, "")}, 512)


def test_a_group_name_taken_on_another_disk_is_refused():
    group = lvm_plan.GroupAction("lbvg", "u", (2,), 4 * MiB, 10, 10)
    with pytest.raises(LifeboatError, match="already exists on /dev/sdb3, another disk.*nothing was written"):
        lvm_plan.check_names((group,), "/dev/sdt", {"lbvg": ["/dev/sdb3"]})
    lvm_plan.check_names((group,), "/dev/sdt", {"othervg": ["/dev/sdb3"]})


def test_rename_takes_a_free_valid_name_of_a_group_in_the_image():
    group = lvm_plan.GroupAction("lbvg", "u", (2,), 4 * MiB, 10, 10)
    (renamed,) = lvm_plan.renamed_groups((group,), {"lbvg": "lbvg_copy"})
    assert renamed.new_name == "lbvg_copy" and "restored as lbvg_copy" in renamed.lines()[0]
    lvm_plan.check_names((renamed,), "/dev/sdt", {"lbvg": ["/dev/sdb3"]})  # the old name may stay taken
    with pytest.raises(LifeboatError, match="lbvg_copy already exists on /dev/sdc1; choose another name"):
        lvm_plan.check_names((renamed,), "/dev/sdt", {"lbvg_copy": ["/dev/sdc1"]})
    with pytest.raises(LifeboatError, match="the image has no volume group vg0 \\(it has lbvg\\)"):
        lvm_plan.renamed_groups((group,), {"vg0": "x"})
    with pytest.raises(LifeboatError, match="'a/b' is not a volume group name"):
        lvm_plan.renamed_groups((group,), {"lbvg": "a/b"})


def test_an_all_zero_raw_partition_keeps_an_empty_block_map(tmp_path):
    repo = Repository.open(tmp_path / "repo", create=True)
    manifest = _lvm_manifest(repo)
    data = manifest.to_json()
    stream = data["partitions"][0]["content"]["stream"]
    stream.update(map={"chunk": stream["map"]["chunk"], "length": 0, "runs": 0}, chunks=[], used_bytes=0)
    assert ImageManifest.from_json(data, "lvm").partitions[0].used_bytes == 0


def test_verify_reads_the_group_metadata_and_every_volume(tmp_path):
    from lifeboat.engine.verify import verify
    from lifeboat.repo.manifest import write_manifest

    repo = Repository.open(tmp_path / "repo", create=True)
    manifest = _lvm_manifest(repo)
    write_manifest(repo, manifest)
    report = verify(repo, "lvm")
    assert report.problems == [] and report.chunks == 2 + 3 + 2 + 1  # partition 1, root, data, the metadata
    lv_chunk = manifest.volume_groups[0].lvs[0].stream.chunks[1].digest
    path = next(p for p in (tmp_path / "repo").rglob(lv_chunk + "*"))
    path.write_bytes(b"damaged")
    problems = verify(repo, "lvm").problems
    assert len(problems) == 1 and problems[0].startswith("logical volume lbvg/root (ext4) at offset 4194304"), problems


def _planned(tmp_path, monkeypatch, elsewhere: dict, dm: bool = True, **kw):
    from imagekit import fake_target

    from lifeboat.engine import plan
    from lifeboat.repo.manifest import write_manifest

    repo = Repository.open(tmp_path / "repo", create=True)
    write_manifest(repo, _lvm_manifest(repo))
    fake_target(monkeypatch, 144 * MiB)
    monkeypatch.setattr(plan, "logical_sector_size", lambda target: 512)
    monkeypatch.setattr(plan, "read_health", lambda target: None)
    monkeypatch.setattr(plan, "_marker_text", lambda target: "")
    monkeypatch.setattr(plan, "device_mapper", lambda: dm)
    monkeypatch.setattr(plan, "groups_elsewhere", lambda exclude: elsewhere)
    return plan.plan_restore(repo, "lvm", "/dev/sdt", **kw)


def test_the_plan_shows_the_volumes_under_their_pv_and_carries_them_in_json(tmp_path, monkeypatch):
    plan = _planned(tmp_path, monkeypatch, {})
    text = "\n".join(plan.describe())
    pv_line = next(line for line in text.splitlines() if line.lstrip().startswith("2 "))
    assert "LVM physical volume, same UUID" in pv_line and "grows from 61.0 MiB" in pv_line
    lines = text.splitlines()
    below = [line.split()[0:2] for line in lines[lines.index(pv_line) + 1:lines.index(pv_line) + 5]]
    assert below == [["LVM", "volume"], ["root", "44.0"], ["data", "80.0"], ["swap", "4.0"]], below
    (group,) = plan.to_json()["volume_groups"]
    sizes = {lv["name"]: (lv["size"], lv["new_size"]) for lv in group["lvs"]}
    assert sizes["swap"] == (4 * MiB, 4 * MiB)
    assert sizes["root"][1] > 2 * sizes["root"][0] and sizes["data"][1] > 2 * sizes["data"][0]
    assert plan.total_bytes == 4096 + (65536 + 4096) + 8192  # the ESP's and both data volumes' stored bytes


def test_the_plan_refuses_a_taken_name_or_a_kernel_without_device_mapper(tmp_path, monkeypatch):
    with pytest.raises(LifeboatError, match="named lbvg already exists on /dev/sdb2.*--rename-vg lbvg=NEW"):
        _planned(tmp_path, monkeypatch, {"lbvg": ["/dev/sdb2"]})
    plan = _planned(tmp_path, monkeypatch, {"lbvg": ["/dev/sdb2"]}, vg_renames={"lbvg": "lbvg_old"})
    assert plan.volume_groups[0].new_name == "lbvg_old"
    with pytest.raises(LifeboatError, match="no device-mapper"):
        _planned(tmp_path, monkeypatch, {}, dm=False)
