"""A partition restore (`--partitions`, the target's table kept) onto a disk whose SMART health is failing
asks for the same explicit confirmation as a whole-disk restore. The disks are real loop devices; their
SMART verdict cannot be real (a loop device has none), so it is the parser's reading of a real failing
disk's smartctl output, put in place of read_health."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk

from lifeboat.cli import main as cli_main
from lifeboat.engine import partial
from lifeboat.engine.capture import capture
from lifeboat.health import parse_smartctl
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration
SAMPLE = Path(__file__).parents[1] / "unit" / "smartctl" / "ata-failing.json"


def _digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def test_partition_restore_onto_a_failing_disk_needs_explicit_confirmation(workdir, lifeboat_env, capsys,
                                                                            monkeypatch):
    failing = parse_smartctl(json.loads(SAMPLE.read_text()))
    with loop_disk(workdir, "fsrc", 80 * MiB) as src, loop_disk(workdir, "fdst", 80 * MiB) as dst:
        build_disk(src, "gpt", [PartSpec(40, "ext4", name="data")], workdir / "s")
        repo = Repository.open(workdir / "frepo", create=True)
        capture(src.path, "pc", repo)
        build_disk(dst, "gpt", [PartSpec(40, "ext4", name="other")], workdir / "t")
        monkeypatch.setattr(partial, "read_health", lambda target: failing)
        before = _digest(dst.path)
        argv = ["restore", "pc", dst.path, "--repo", str(repo.root), "--partitions", "1", "--no-bootloader"]
        assert cli_main([*argv, "--dry-run"]) == 0
        assert "SMART: FAILING (1975 reallocated sectors, 8 pending sectors)" in capsys.readouterr().out
        assert cli_main([*argv, "--yes"]) == 2
        assert "pass --allow-failing-target" in capsys.readouterr().err
        assert _digest(dst.path) == before  # nothing was written
        assert cli_main([*argv, "--yes", "--allow-failing-target"]) == 0
        assert _digest(dst.path) != before
