"""An image in manifest version 1 (tests/fixtures/v1-image, captured by Lifeboat at 6b3e1b1) restores
onto a loop device: every copied partition byte for byte, swap with its UUID, files readable, and onto a
larger disk with its ext4 grown."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from diskbuilder import MiB, loop_disk, sh

pytestmark = pytest.mark.integration
FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "v1-image"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


def lifeboat(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeboat", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)


def digest(node: str) -> str:
    with open(node, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def restore_onto(repo: Path, disk) -> None:
    proc = lifeboat("restore", EXPECTED["image"], disk.path, "--repo", str(repo), "--yes", "--no-bootloader")
    assert proc.returncode == 0, proc.stderr
    disk.refresh()


def test_v1_image_restores(workdir, lifeboat_env):
    repo = workdir / "repo"
    shutil.copytree(FIXTURE / "repo", repo)
    proc = lifeboat("verify", EXPECTED["image"], "--repo", str(repo))
    assert proc.returncode == 0 and "is intact" in proc.stdout, proc.stderr
    with loop_disk(workdir, "same", EXPECTED["disk_bytes"]) as same, loop_disk(workdir, "larger", 48 * MiB) as big:
        restore_onto(repo, same)
        assert {n: digest(same.node(int(n))) for n in EXPECTED["partition_sha256"]} == EXPECTED["partition_sha256"]
        uuid = sh("blkid", "-p", "-s", "UUID", "-o", "value", same.node(3)).stdout.strip()
        assert uuid == EXPECTED["swap_uuid"]

        restore_onto(repo, big)
        ext4 = big.node(2)
        assert sh("e2fsck", "-f", "-n", ext4, check=False).returncode == 0
        blocks = dict(line.split(":", 1) for line in sh("dumpe2fs", "-h", ext4).stdout.splitlines() if ":" in line)
        assert int(blocks["Block count"]) * int(blocks["Block size"]) > 10 * MiB * 1.5  # grown from 10 MiB
        for name, sha in EXPECTED["files"].items():
            content = subprocess.run(["debugfs", "-R", f"cat /{name}", ext4], capture_output=True).stdout
            assert hashlib.sha256(content).hexdigest() == sha, name
        hello = subprocess.run(["mtype", "-i", big.node(1), "::/HELLO.TXT"], capture_output=True).stdout
        assert hashlib.sha256(hello).hexdigest() == EXPECTED["files"]["hello.txt"]
        with open(big.node(4), "rb") as f:
            assert f.read(32).decode() == EXPECTED["raw_marker"]
