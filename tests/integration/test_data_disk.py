"""A data disk (one ext4 partition, no operating system) restored WITH the bootloader step: nothing failed, so
the restore exits 0 and the bootloader step says "not-needed", with a note, in the CLI's words and its JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk, mounted, tree_hashes

from lifeboat.engine.capture import capture
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration


def lifeboat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeboat", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env=dict(os.environ))


def test_restore_of_a_data_disk_needs_no_bootloader(workdir, lifeboat_env):
    with loop_disk(workdir, "data", 80 * MiB) as src, loop_disk(workdir, "target", 80 * MiB) as target:
        built = build_disk(src, "gpt", [PartSpec(0, "ext4", name="data")], workdir)
        repo = Repository.open(workdir / "repo", create=True)
        capture(src.path, "data", repo)
        proc = lifeboat("restore", "data", target.path, "--repo", str(repo.root), "--yes", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        start = lines.index("{")
        result = json.loads("\n".join(lines[start:lines.index("}", start) + 1]))
        steps = {s["step"]: (s["outcome"], s["detail"]) for s in result["steps"]}
        outcome, note = steps["bootloader: detect"]
        assert outcome == "not-needed" and "a data disk needs no bootloader" in note
        assert not [s for s, (o, _) in steps.items() if o == "failed"]
        assert "bootloader: not-needed" in proc.stderr  # the progress line of the step itself
        assert "bootloader not-needed" in proc.stdout.splitlines()[-1]  # the closing line says it too
        target.refresh()
        with mounted(target.node(1), "ext4", readonly=True) as mnt:
            assert tree_hashes(mnt) == built.hashes[1]


def test_bootfix_reads_the_disk_through_devices_and_refuses_a_mounted_one(workdir, lifeboat_env):
    """bootfix's real path on the host: the table from lifeboat.layout, the filesystems from devices' blkid
    helper, a read-only look into the ext4 partition; and devices' one in-use check refusing a mounted disk."""
    with loop_disk(workdir, "data", 80 * MiB) as disk:
        build_disk(disk, "gpt", [PartSpec(0, "ext4", name="data")], workdir)
        proc = lifeboat("bootfix", disk.path, "--yes", "--json")
        assert proc.returncode == 1, proc.stdout + proc.stderr
        lines = proc.stdout.splitlines()
        start = lines.index("{")
        steps = json.loads("\n".join(lines[start:lines.index("}", start) + 1]))["steps"]
        assert [(s["step"], s["outcome"]) for s in steps] == [("detect", "failed")]
        assert "no GRUB-booted Linux root and no Windows boot manager" in steps[0]["detail"]
        with mounted(disk.node(1), "ext4", readonly=True) as mnt:
            proc = lifeboat("bootfix", disk.path, "--yes")
            assert proc.returncode == 1
            assert f"refusing to write to {disk.path}: mounted at {mnt}" in proc.stderr, proc.stderr
