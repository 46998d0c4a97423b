"""LVM onto a smaller disk, without lvm2 or root: the extents each volume gives up (free extents first,
data volumes in proportion to their room, swap last, fixed volumes kept), the plan's lines and its
refusal naming the volume and the shortfall, the PV partition's minimum, and vgcfgbackup's text
rewritten for the smaller PV (tests/fixtures/lvm/lbvg.vg, captured from lvm2 2.03.31). And chosen volumes
(`--partitions VG/LV`) planned onto a target group as lvm2 reports it (the fixture's reports stand in for
the target's lvm2, which needs the guest)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from imagekit import MiB, gpt_layout, store_stream

from lifeboat.engine import lvm_plan, partial_lvm, shrink_plan
from lifeboat.engine.partial_lvm import split_selection
from lifeboat.errors import LifeboatError, TargetTooSmall
from lifeboat.fs.shrink import ShrinkMethod
from lifeboat.layout.model import PartitionEntry
from lifeboat.layout.shrink import ShrinkNeed
from lifeboat.repo.manifest import (BlobRef, CaptureStats, Compression, FilesystemContent, ImageManifest,
                                    LogicalVolumeImage, LvmPvContent, PartitionImage, PhysicalVolumeImage,
                                    RawContent, SourceDisk, SwapContent, VolumeGroupImage)
from lifeboat.repo.store import Repository
from lifeboat.volumes.lvm_metadata import _sections, resized_metadata
from lifeboat.volumes.lvm_model import LvRole, parse_reports, shrink_extents

FIX = Path(__file__).resolve().parent.parent / "fixtures" / "lvm"
ROLES = {"root": LvRole.DATA, "data": LvRole.DATA, "swap": LvRole.SWAP, "raw": LvRole.FIXED}


def test_free_extents_go_first_then_data_in_proportion_to_its_room():
    sizes = {"root": 40, "data": 80, "swap": 8, "raw": 10}
    mins = {"root": 10, "data": 70, "swap": 4, "raw": 10}  # room: root 30, data 10
    assert shrink_extents(sizes, mins, ROLES, 5, 5) == (sizes, 0)  # the free extents were enough
    out, missing = shrink_extents(sizes, mins, ROLES, 5, 25)  # 20 from data volumes: 3:1 of 40 room
    assert missing == 0 and out["swap"] == 8 and out["raw"] == 10
    assert (out["root"], out["data"]) == (25, 75) and 40 + 80 - out["root"] - out["data"] >= 20


def test_swap_shrinks_only_when_data_is_at_its_minimum_and_fixed_never():
    sizes = {"root": 40, "data": 80, "swap": 8, "raw": 10}
    mins = {"root": 10, "data": 70, "swap": 4, "raw": 10}
    out, missing = shrink_extents(sizes, mins, ROLES, 0, 42)
    assert (out["root"], out["data"], out["swap"], out["raw"], missing) == (10, 70, 6, 10, 0)
    out, missing = shrink_extents(sizes, mins, ROLES, 0, 50)
    assert (out["root"], out["data"], out["swap"], out["raw"], missing) == (10, 70, 4, 10, 6)


def _manifest(repo: Repository, raw_lv: bool = False) -> ImageManifest:
    layout = gpt_layout({1: ("C12A7328-F81F-11D2-BA4B-00A0C93EC93B", 8), 2: ("E6D6D379-F507-44C2-A23C-238F2A3DF928", 401)}, 412)
    text = (FIX / "lbvg.vg").read_text()
    digest, _ = repo.put_chunk(text.encode(), 3)
    root = FilesystemContent("ext4", "root-fs", "lbroot", store_stream(repo, 5, {0: 65536, 8 * MiB: 4 * MiB}))
    data = FilesystemContent("xfs", "data-fs", "lbdata", store_stream(repo, 6, {0: 8192}))
    fixed = RawContent("", "unknown content", store_stream(repo, 7, {0: 4096})) if raw_lv else SwapContent("swap-fs", "lbswap")
    lvs = (LogicalVolumeImage("root", "root-uuid", 40 * MiB, root, 10),
           LogicalVolumeImage("data", "data-uuid", 320 * MiB, data, 80),
           LogicalVolumeImage("swap", "swap-uuid", 32 * MiB, fixed, 8))
    vg = VolumeGroupImage("lbvg", "vg-uuid", 4 * MiB, BlobRef(digest, len(text)), lvs, 100, 2, (),
                          (PhysicalVolumeImage(2, "pv-uuid", MiB, 100),))
    parts = (PartitionImage(1, 8 * MiB, FilesystemContent("vfat", "ESP", "", store_stream(repo, 1, {0: 4096}))),
             PartitionImage(2, 401 * MiB, LvmPvContent("lbvg", "pv-uuid")))
    return ImageManifest("lvm", "2026-11-27T09:00:00+00:00", "", "0.test", SourceDisk("/dev/vda", 412 * MiB),
                         layout, (), parts, (vg,), Compression(), CaptureStats())


@pytest.fixture
def no_tool_minimum(monkeypatch):
    """resize2fs -P would read the image's FUSE view (root): the estimate from the block map stands in."""
    monkeypatch.setattr(shrink_plan._View, "file", lambda self, space: f"/nonexistent/{space}")
    monkeypatch.setattr(shrink_plan, "measured_minimum", lambda fstype, path: None)


def test_the_pv_partition_needs_its_volumes_minimums(tmp_path, no_tool_minimum):
    repo = Repository.open(tmp_path / "repo", create=True)
    manifest = _manifest(repo)
    needs = shrink_plan.shrink_needs(repo, manifest)
    pv = needs[2]
    # root ext4: 4 MiB + 64 KiB used * 1.1 + 16 MiB -> 6 extents; data xfs: its 300 MiB floor -> 75; swap: 8
    assert pv.shrinkable and pv.min_bytes == MiB + (6 + 75 + 8) * 4 * MiB
    assert "LVM volume group lbvg" in pv.title and "data xfs at least 300.0 MiB" in pv.title


def test_plan_shrinks_the_data_volumes_and_says_how(tmp_path, no_tool_minimum):
    repo = Repository.open(tmp_path / "repo", create=True)
    manifest = _manifest(repo)
    vg = manifest.volume_groups[0]
    floors = shrink_plan.lv_floors(repo, manifest, vg)
    group = lvm_plan.plan_group(vg, {2: PartitionEntry(2, 18432, 361 * 2048, "")}, 512, floors)  # 90 extents
    assert group.shrinks and (group.extents, group.new_extents) == (100, 90)
    sizes = {v.name: v.new_size // MiB for v in group.volumes}
    # 10 extents short: the 2 free ones, then 8 of the data volumes' 9 extents of room (root 4, data 5)
    assert sizes == {"root": 24, "data": 300, "swap": 32}
    steps = {v.name: shrink_plan.shrink_step(repo, lv, v.new_size)
             for lv, v in zip(vg.lvs, group.volumes) if v.new_size < v.size}
    group = lvm_plan.with_shrink_steps(group, steps)
    text = "\n".join(group.lines())
    assert "LVM volume group lbvg (400.0 MiB, shrinks to 360.0 MiB)" in text, text
    assert "shrinks 40.0 MiB -> 24.0 MiB: restored at full size, then shrunk in place" in text, text
    assert "shrinks 320.0 MiB -> 300.0 MiB: filesystem made anew with its UUID, label" in text, text
    assert steps["data"].method is ShrinkMethod.COPY and steps["root"].method is ShrinkMethod.RESIZE
    lvs = {lv["name"]: lv for lv in group.to_json()["lvs"]}
    assert lvs["data"]["shrink"]["method"] == "copy" and lvs["root"]["shrink"]["target_bytes"] == 24 * MiB
    assert "resize2fs" in lvm_plan.restore_tools((group,)) and "mkfs.xfs" in lvm_plan.restore_tools((group,))


def test_plan_refuses_naming_the_volume_and_the_shortfall(tmp_path, no_tool_minimum):
    repo = Repository.open(tmp_path / "repo", create=True)
    manifest = _manifest(repo, raw_lv=True)  # a raw volume keeps its 32 MiB
    vg = manifest.volume_groups[0]
    floors = shrink_plan.lv_floors(repo, manifest, vg)
    with pytest.raises(TargetTooSmall, match=r"16.0 MiB \(16777216 bytes\) too large.*lbvg/data \(xfs\).*at least 300.0 MiB"
                                             r".*swap [a-z ]+ 32.0 MiB\); nothing was written"):
        lvm_plan.plan_group(vg, {2: PartitionEntry(2, 18432, 341 * 2048, "")}, 512, floors)  # 85 extents


def _segments(text: str) -> dict[str, list[tuple[int, int]]]:
    out: dict[str, list[tuple[int, int]]] = {}
    lines = _sections(text)
    for i, (path, line) in enumerate(lines):
        if len(path) == 4 and line.strip().startswith('"pv0",'):
            out.setdefault(path[2], []).append(int(line.split(",")[1]))
        if len(path) == 4 and line.strip().startswith("extent_count"):
            out.setdefault(path[2] + "#", []).append(int(line.split("=")[1].split("#")[0]))
    return out


def test_metadata_rewritten_for_the_smaller_pv_keeps_names_and_uuids():
    text = (FIX / "lbvg.vg").read_text()
    assert _segments(text)["root"] == [0, 78]  # two segments, the second after data and swap
    new = resized_metadata(text, 409600, 98, {"root": 30, "data": 60, "swap": 8})
    seg = _segments(new)
    assert seg["root"] == [0] and seg["data"] == [30] and seg["swap"] == [90]
    assert seg["root#"] == [30] and seg["data#"] == [60] and seg["swap#"] == [8]
    assert "pe_count = 98\n" in new and "dev_size = 409600\n" in new and "pe_start = 2048" in new
    for keep in ('id = "mTVJ0O-mD9a-qqZz-OD2j-06O8-Auzx-BUSYKR"', 'id = "CmrUXx-7p5a-QUJ6-Fbi3-8XNK-gM4b-rvOKNc"',
                 'id = "ypyAoF-G1Tv-7v2R-82D6-9ljc-Ip76-i6Gjri"', 'tags = ["role-root"]', 'tags = ["site-a"]'):
        assert keep in new
    assert new.count("segment_count = 1") == 3 and "segment2" not in new
    assert new.count("{") == new.count("}")


def test_metadata_rewrite_refuses_what_cannot_be_laid_out():
    text = (FIX / "lbvg.vg").read_text()
    with pytest.raises(LifeboatError, match="need 99 extents, the PV holds 98"):
        resized_metadata(text, 409600, 98, {"root": 31, "data": 60, "swap": 8})
    with pytest.raises(LifeboatError, match="data has a stripe_count '2'"):
        resized_metadata(text.replace("stripe_count = 1\t# linear\n\n\t\t\t\tstripes = [\n\t\t\t\t\t\"pv0\", 40",
                                      "stripe_count = 2\n\n\t\t\t\tstripes = [\n\t\t\t\t\t\"pv0\", 40"), 409600, 98,
                         {"root": 30, "data": 60, "swap": 8})
    with pytest.raises(LifeboatError, match="no new size for logical volume.*swap"):
        resized_metadata(text, 409600, 98, {"root": 30, "data": 60})


def test_partitions_selection_takes_logical_volumes_apart():
    assert split_selection("2,lbvg/root, 3") == ("2,3", (("lbvg", "root"),))
    assert split_selection("lbvg/root") == ("", (("lbvg", "root"),))
    with pytest.raises(LifeboatError, match="'lbvg/' is not VG/LV"):
        split_selection("lbvg/")


def _target_groups(monkeypatch) -> None:
    """The target's group as lvm2 reports it (the fixture: root 176 MiB, data 120 MiB, swap 32 MiB)."""
    groups = parse_reports(*((FIX / n).read_text() for n in ("vgs.json", "pvs.json", "lvs.json")))
    monkeypatch.setattr(partial_lvm.lvm, "read_groups", lambda nodes: groups)


def test_a_chosen_volume_grows_into_a_larger_target_volume(tmp_path, monkeypatch, no_tool_minimum):
    _target_groups(monkeypatch)
    repo = Repository.open(tmp_path / "repo", create=True)
    volumes, tools = partial_lvm.plan_volumes(repo, _manifest(repo), "/dev/vdz", ["/dev/vda2"], (("lbvg", "root"),))
    (root,) = volumes
    assert root.devices == ("/dev/vda2",) and (root.action.size, root.action.new_size) == (40 * MiB, 176 * MiB)
    assert root.action.grow == "resize2fs" and root.action.shrink is None and "resize2fs" in tools
    assert "logical volume lbvg/root on /dev/vda2: 176.0 MiB  ext4" in root.line() and "grows from 40.0 MiB" in root.line()


def test_a_chosen_volume_too_small_for_its_data_is_refused(tmp_path, monkeypatch, no_tool_minimum):
    _target_groups(monkeypatch)
    repo = Repository.open(tmp_path / "repo", create=True)
    with pytest.raises(TargetTooSmall, match=r"lbvg/data is 120.0 MiB.*needs at least 300.0 MiB: 180.0 MiB "
                                             r"\(188743680 bytes\) short; nothing was written"):
        partial_lvm.plan_volumes(repo, _manifest(repo), "/dev/vdz", ["/dev/vda2"], (("lbvg", "data"),))
    with pytest.raises(LifeboatError, match="image 'lvm' has no logical volume lbvg/home"):
        partial_lvm.plan_volumes(repo, _manifest(repo), "/dev/vdz", ["/dev/vda2"], (("lbvg", "home"),))
    manifest = _manifest(repo)
    other = replace(manifest, volume_groups=(replace(manifest.volume_groups[0], name="othervg"),))
    with pytest.raises(LifeboatError, match="/dev/vdz: it holds no volume group othervg"):
        partial_lvm.plan_volumes(repo, other, "/dev/vdz", ["/dev/vda2"], (("othervg", "root"),))
