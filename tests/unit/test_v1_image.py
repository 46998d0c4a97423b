"""An image written by Lifeboat's manifest version 1 (tests/fixtures/v1-image) still lists, verifies and plans.

The restore itself, onto a loop device, is in tests/integration/test_v1_image.py.
"""

from __future__ import annotations

import json

from imagekit import FIXTURES, MiB, fake_target, v1_repo

from lifeboat.engine.plan import plan_restore
from lifeboat.engine.verify import verify
from lifeboat.fs.registry import CaptureMode
from lifeboat.repo.manifest import ContentKind, list_images, load_manifest

EXPECTED = json.loads((FIXTURES / "v1-image" / "expected.json").read_text())
IMAGE = EXPECTED["image"]


def test_the_fixture_is_version_1():
    raw = json.loads((FIXTURES / "v1-image" / "repo" / "images" / IMAGE / "manifest.json").read_text())
    assert raw["version"] == 1 and {p["mode"] for p in raw["partitions"]} == {"used-blocks", "swap", "raw"}


def test_lists(tmp_path):
    [listing] = list_images(v1_repo(tmp_path))
    assert listing.name == IMAGE and listing.problem == ""
    summary = listing.summary
    assert (summary.table, summary.source_size) == ("gpt", EXPECTED["disk_bytes"])
    assert [(p.number, p.fstype) for p in summary.partitions] == [(1, "vfat"), (2, "ext4"), (3, "swap"), (4, "raw")]
    assert summary.data_bytes == sum(p.used_bytes for p in summary.partitions) > 0


def test_upgrades_to_the_typed_model(tmp_path):
    manifest = load_manifest(v1_repo(tmp_path), IMAGE)
    kinds = [p.content.kind for p in manifest.partitions]
    assert kinds == [ContentKind.FILESYSTEM, ContentKind.FILESYSTEM, ContentKind.SWAP, ContentKind.RAW]
    assert manifest.partition(3).uuid == EXPECTED["swap_uuid"]
    assert manifest.partition(2).label == "root"
    assert manifest.origin is None and manifest.key_ref == "" and manifest.volume_groups == ()
    assert manifest.to_json()["version"] == 2


def test_verifies(tmp_path):
    repo = v1_repo(tmp_path)
    report = verify(repo, IMAGE)
    assert report.ok, report.problems
    assert report.chunks == len(load_manifest(repo, IMAGE).referenced_chunks())


def test_verify_names_a_damaged_chunk(tmp_path):
    repo = v1_repo(tmp_path)
    ref = load_manifest(repo, IMAGE).partition(2).stream.chunks[0]
    repo.chunk_path(ref.digest).write_bytes(b"\x28\xb5\x2f\xfd garbage")
    [problem] = verify(repo, IMAGE).problems
    assert problem.startswith(f"partition 2 (ext4) at offset {ref.offset}: chunk {ref.digest[:16]} cannot be decompressed")


def test_plans(tmp_path, monkeypatch):
    fake_target(monkeypatch, 2 * EXPECTED["disk_bytes"])
    plan = plan_restore(v1_repo(tmp_path), IMAGE, "/dev/sdt")
    assert [(a.number, a.mode) for a in plan.actions] == [
        (1, CaptureMode.USED_BLOCKS), (2, CaptureMode.USED_BLOCKS), (3, CaptureMode.SWAP), (4, CaptureMode.RAW)]
    assert {a.number for a in plan.actions if a.grows} == {2, 4}  # ext4 grows; the ESP and swap keep their size
    assert plan.target_layout.disk_sectors * 512 == 2 * EXPECTED["disk_bytes"] >= 48 * MiB


def test_the_tui_lists_it_and_skips_an_unreadable_image(tmp_path):
    from lifeboat.tui.engine_backend import EngineBackend

    repo = v1_repo(tmp_path)
    repo.write_manifest("broken", {"schema": "lifeboat-image", "version": 1, "name": "broken"})
    [info] = EngineBackend(log_path="/dev/null").list_images(str(repo.root))
    assert info.name == IMAGE and info.source_size == EXPECTED["disk_bytes"]
    assert info.partitions == ("p1 vfat 4.0 MiB", "p2 ext4 10.0 MiB", "p3 swap 2.0 MiB", "p4 raw 1.0 MiB")
    assert info.created is not None and info.stored_bytes == load_manifest(repo, IMAGE).data_bytes
