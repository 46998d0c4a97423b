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
