"""Rescue capture of a disk with unreadable sectors.

The damaged disk: a real GPT disk image (ext4 with known files, a raw partition) served read-only through
a small FUSE filesystem (faultyfs.py) that answers EIO for reads touching chosen byte ranges, and a loop
device over that file. Lifeboat's reads meet real kernel I/O errors; nothing in Lifeboat is mocked.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk, mounted, sh, tree_hashes

from lifeboat.repo.manifest import load_manifest
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration
HERE = Path(__file__).parent
SPECS = [PartSpec(100, "ext4", name="root", seed=11), PartSpec(40, "raw", name="raw")]


def lifeboat(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeboat", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})}, timeout=600)


def _start_sectors(node: str) -> int:
    return int(Path(f"/sys/class/block/{os.path.basename(node)}/start").read_text())


def _blocks(node: str, what: str) -> list[int]:
    return [int(b) for b in sh("debugfs", "-R", f"blocks {what}", node).stdout.split()]


def _block_size(node: str) -> int:
    return int(re.search(r"^Block size:\s+(\d+)", sh("debugfs", "-R", "stats", node).stdout, re.M).group(1))


class Damage:
    """Where the test breaks the disk, in bytes from the start of partition 1 (ext4)."""

    def __init__(self, node: str, tree: Path):
        self.bs = _block_size(node)
        files = sorted((p for p in tree.rglob("*.bin") if p.stat().st_size > 80 * self.bs), key=lambda p: p.name)
        self.x, self.y = "/" + str(files[0].relative_to(tree)), "/" + str(files[1].relative_to(tree))
        xb, yb, jb = _blocks(node, self.x), _blocks(node, self.y), _blocks(node, "<8>")
        i = next(i for i in range(20, len(xb) - 1) if xb[i + 1] == xb[i] + 1)
        # x: 3 sectors across two of its blocks, not 4 KiB aligned; y: one sector; the journal: one sector
        self.ranges = [(xb[i] * self.bs + 512, 1536), (yb[len(yb) // 2] * self.bs + 1024, 512),
                       (jb[len(jb) // 2] * self.bs, 512)]
        self.ranges.sort()
        self.file_ranges = {self.x: [(i * self.bs + 512, 1536)], self.y: [((len(yb) // 2) * self.bs + 1024, 512)]}


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    """(loop device over FUSE, built disk, damage, ranges file, partition starts in bytes)."""
    base = Path("/var/tmp/lifeboat-tests") / f"rescue-{os.getpid()}"
    base.mkdir(parents=True, exist_ok=True)
    mnt = base / "fuse"
    mnt.mkdir()
    ranges_file = base / "bad.json"
    with loop_disk(base, "source", 160 * MiB) as plain:
        built = build_disk(plain, "gpt", SPECS, base)
        damage = Damage(plain.node(1), base / "tree1")
        starts = {n: _start_sectors(plain.node(n)) * 512 for n in (1, 2)}
        ranges_file.write_text(json.dumps([[starts[1] + s, n] for s, n in damage.ranges]))
        server = subprocess.Popen([sys.executable, str(HERE / "faultyfs.py"), str(plain.backing), str(mnt),
                                   str(ranges_file)], stderr=subprocess.PIPE, text=True)
        loop = ""
        try:
            for _ in range(100):
                if (mnt / "disk.img").exists():
                    break
                assert server.poll() is None, server.stderr.read()
                time.sleep(0.1)
            loop = sh("losetup", "--find", "--show", "--read-only", str(mnt / "disk.img")).stdout.strip()
            sh("partx", "-a", loop, check=False)
            sh("udevadm", "settle", "--timeout=20", check=False)
            yield loop, built, damage, ranges_file, starts, base
        finally:
            if loop:
                sh("losetup", "-d", loop, check=False)
            sh("umount", str(mnt), check=False)
            server.terminate()
            server.wait(timeout=30)
    sh("rm", "-rf", str(base))


def test_read_error_without_rescue_names_partition_offset_and_suggests_rescue(faulty, tmp_path, lifeboat_env):
    loop, _, damage, *_ = faulty
    proc = lifeboat("capture", loop, "plain", "--repo", str(tmp_path / "repo"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    first = damage.ranges[0][0]
    assert f"partition 1 (ext4) ({loop}p1): read error at byte {first} of the partition: Input/output error" \
        in proc.stderr, proc.stderr
    assert "--rescue" in proc.stderr
    assert Repository.open(tmp_path / "repo").image_names() == []


def _patched(original: bytes, ranges: list[tuple[int, int]]) -> bytes:
    data = bytearray(original)
    for s, n in ranges:
        data[s:s + n] = bytes(n)
    return bytes(data)


def test_rescue_records_exact_ranges_and_files_and_restores_the_rest(faulty, tmp_path, lifeboat_env):
    loop, built, damage, _, _, base = faulty
    repo = tmp_path / "repo"
    started = time.monotonic()
    proc = lifeboat("capture", loop, "rescued", "--repo", str(repo), "--rescue")
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr
    manifest = load_manifest(Repository.open(repo), "rescued")
    stream = manifest.partitions[0].stream
    assert [(r.offset, r.length) for r in stream.unreadable] == damage.ranges  # to the sector
    assert sorted(stream.unreadable_files) == sorted([damage.x, damage.y])
    assert "filesystem metadata (1 blocks)" in stream.unreadable_note  # the journal's sector
    assert not manifest.partitions[1].stream.unreadable
    assert "INCOMPLETE" in proc.stdout and damage.x in proc.stdout
    errors = re.search(r"capture partition 1 \(ext4\): 100%.* \| (\d+) read errors?$", proc.stderr, re.M)
    assert errors and int(errors[1]) >= len(damage.ranges), proc.stderr  # the progress line counts them
    print(f"rescue capture with {len(damage.ranges)} bad ranges: {seconds:.1f} s; {proc.stdout.strip()}")

    images = lifeboat("images", "--repo", str(repo))
    assert "INCOMPLETE: partition 1 (ext4): 2560 bytes unreadable in 3 ranges" in images.stdout, images.stdout
    verify = lifeboat("verify", "rescued", "--repo", str(repo))
    assert verify.returncode == 0 and "intact but incomplete" in verify.stdout and damage.y in verify.stdout

    with loop_disk(tmp_path, "target", 160 * MiB) as target:
        plan = lifeboat("restore", "rescued", target.path, "--repo", str(repo), "--dry-run")
        assert "INCOMPLETE IMAGE" in plan.stdout and damage.x in plan.stdout
        done = lifeboat("restore", "rescued", target.path, "--repo", str(repo), "--yes", "--no-bootloader")
        assert done.returncode == 0, done.stderr
        target.refresh()
        with mounted(target.node(1), "ext4", readonly=True) as mnt:
            restored = tree_hashes(mnt)
            for name in (damage.x, damage.y):
                original = (base / "tree1" / name[1:]).read_bytes()
                assert (mnt / name[1:]).read_bytes() == _patched(original, damage.file_ranges[name])
        expected = dict(built.hashes[1])
        for name in (damage.x, damage.y):
            assert restored.pop(name[1:]) != expected.pop(name[1:])
        assert restored == expected  # every other file, by hash


def test_a_dead_region_ends_within_the_time_bound(faulty, tmp_path, lifeboat_env):
    loop, _, damage, ranges_file, starts, _ = faulty
    region = (8 * MiB, 24 * MiB)  # in the raw partition: every byte of it is read
    ranges_file.write_text(json.dumps([[starts[1] + s, n] for s, n in damage.ranges]
                                      + [[starts[2] + region[0], region[1]]]))
    try:
        started = time.monotonic()
        proc = lifeboat("capture", loop, "dead", "--repo", str(tmp_path / "repo"), "--rescue",
                        "--rescue-timeout", "10")
        seconds = time.monotonic() - started
    finally:
        ranges_file.write_text(json.dumps([[starts[1] + s, n] for s, n in damage.ranges]))
    assert proc.returncode == 0, proc.stderr
    raw = load_manifest(Repository.open(tmp_path / "repo"), "dead").partitions[1]
    lost = [(r.offset, r.length) for r in raw.stream.unreadable]
    covered = sum(n for _, n in lost)
    assert all(any(s <= region[0] + k < s + n for s, n in lost) for k in range(0, region[1], 512))
    assert covered <= region[1] + 2 * MiB, lost  # at most the 1 MiB pieces at its edges were left untried
    print(f"24 MiB dead region with --rescue-timeout 10: {seconds:.1f} s, {covered} bytes recorded unreadable")
    assert seconds < 10 + 60  # the bound plus the reading of everything readable
