"""`lifeboat restore --dry-run` onto a disk smaller than the image's layout: the plan shrinks what it
can, says how and how long, shrinks swap only when short, and draws the disk today and after."""

from __future__ import annotations

import json

import pytest
from imagekit import ESP, LINUX, MiB, SWAP, fake_target, gpt_layout, store_stream

from lifeboat import cli
from lifeboat.repo.manifest import (
    FilesystemContent,
    ImageManifest,
    PartitionImage,
    SourceDisk,
    SwapContent,
    write_manifest,
)
from lifeboat.repo.store import Repository


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """An image of a 1.6 GiB disk: a 100 MiB ESP, a 1 GiB xfs holding little, 512 MiB of swap."""
    monkeypatch.delenv("LIFEBOAT_REPO", raising=False)
    monkeypatch.setenv("LIFEBOAT_CONFIG", str(tmp_path / "no-config.toml"))
    repo = Repository.open(tmp_path / "repo", create=True)
    layout = gpt_layout({1: (ESP, 100), 2: (LINUX, 1024), 3: (SWAP, 512)}, 1640)
    parts = (PartitionImage(1, 100 * MiB, FilesystemContent("vfat", "ABCD-1234", "ESP", store_stream(repo, 1, {0: 8192}))),
             PartitionImage(2, 1024 * MiB, FilesystemContent("xfs", "u-2", "srv", store_stream(repo, 2, {0: 65536}))),
             PartitionImage(3, 512 * MiB, SwapContent("u-3", "swap")))
    write_manifest(repo, ImageManifest(name="server", created="2026-11-27T07:00:00+00:00", finished="",
                                       lifeboat_version="0.test", source=SourceDisk("/dev/sdz", 1640 * MiB),
                                       layout=layout, partitions=parts))
    return repo


def test_dry_run_onto_a_smaller_disk(repo, capsys, monkeypatch):
    fake_target(monkeypatch, 700 * MiB)
    assert cli.main(["restore", "server", "/dev/sdt", "--repo", str(repo.root), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "sdt after the restore, 700.0 MiB" in out and "2 xfs" in out and "▼" in out
    assert "shrinks 1.0 GiB -> 300.0 MiB: filesystem made anew with its UUID, label and parameters" in out
    assert "Note: swap partition 3 shrinks from 512.0 MiB" in out
    assert "Dry run: nothing was written." in out

    assert cli.main(["restore", "server", "/dev/sdt", "--repo", str(repo.root), "--dry-run", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    by_number = {a["number"]: a for a in plan["actions"]}
    assert by_number[1]["size"] == 100 * 2048 and by_number[1]["shrink"] is None  # the ESP keeps its size
    assert by_number[2]["shrink"]["method"] == "copy" and by_number[2]["size"] == 300 * 2048
    assert 64 * 2048 <= by_number[3]["size"] < 512 * 2048
    assert plan["notes"] and not plan["keep_table"]


def test_a_disk_too_small_is_refused_with_the_shortfall(repo, capsys, monkeypatch):
    fake_target(monkeypatch, 400 * MiB)  # 1 MiB + 100 + 300 + 64 MiB of swap + the backup GPT do not fit
    assert cli.main(["restore", "server", "/dev/sdt", "--repo", str(repo.root), "--dry-run"]) == 1
    err = capsys.readouterr().err
    short = (1 + 100 + 300 + 64 - 400) * MiB + 33 * 512
    assert f"({short} bytes) short; partition 2 (xfs) holds 64.0 KiB of data and needs at least 300.0 MiB" in err
