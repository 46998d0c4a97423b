"""A pulled plug loses nothing and leaves nothing that looks complete.

How the kills are placed: `lifeboat` runs as a child process; LIFEBOAT_TEST_KILL_AT=POINT[:N] makes it
SIGKILL itself the N-th time it passes a named point (lifeboat.crashpoint), which is exact and needs no
debugger. One capture is instead killed from outside, by this test, as soon as its chunk directory
holds a given number of chunk files (no hook at all). LIFEBOAT_TEST_STOP_AT stops the child (SIGSTOP)
at a point so the test can pull the repository's disk out from under it, then lets it continue.

A loop device whose backing file is truncated and whose capacity is re-read (`losetup -c`) answers
every I/O with an error, as an unplugged USB disk does; a detached loop device would not (losetup -d
of a device in use only marks it for removal on last close).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk, mounted, sh, tree_hashes

from lifeboat.engine.check import check_repository
from lifeboat.engine.prune import prune
from lifeboat.engine.restore_marker import read_marker
from lifeboat.repo.manifest import load_manifest
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration
SPECS = [PartSpec(100, "ext4", name="root", seed=7)]


def lifeboat(*args: str, env: dict | None = None, wait: bool = True):
    argv = [sys.executable, "-m", "lifeboat", *args]
    full_env = {**os.environ, **(env or {})}
    if not wait:
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                stdin=subprocess.DEVNULL, env=full_env)
    return subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=full_env, timeout=300)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    base = Path("/var/tmp/lifeboat-tests") / f"crash-{os.getpid()}"
    base.mkdir(parents=True, exist_ok=True)
    try:
        with loop_disk(base, "source", 128 * MiB) as src:
            built = build_disk(src, "gpt", SPECS, base)
            yield src, built, base
    finally:
        sh("rm", "-rf", str(base))


def chunk_count(repo: Path) -> int:
    return sum(1 for _ in (repo / "chunks").glob("??/*.zst"))


def assert_clean_after_kill(repo_path: Path) -> None:
    repo = Repository.open(repo_path)  # opens
    assert repo.image_names() == []  # no image appears
    report = check_repository(repo, read_data=True)
    assert report.healthy, report.problems


def recapture_reuses_and_prune_cleans(src, repo_path: Path) -> None:
    left = {p.name for p in (repo_path / "chunks").glob("??/*.zst")}
    proc = lifeboat("capture", src.path, "img", "--repo", str(repo_path))
    assert proc.returncode == 0, proc.stderr
    repo = Repository.open(repo_path)
    manifest = load_manifest(repo, "img")
    used = {d + ".zst" for d in manifest.referenced_chunks()}
    assert left & used, "the second capture reused none of the chunks the killed one wrote"
    assert manifest.stats.new_chunks < len(used)
    assert check_repository(repo).healthy
    pruned = prune(repo)
    after = check_repository(repo, read_data=True)
    assert after.healthy and not after.leftovers.any, after.leftovers
    assert pruned.removed_chunks == len(left - used)  # the killed capture's chunks are all the same content


@pytest.mark.parametrize("point", ["capture-chunk:3", "capture-before-manifest", "before-replace-manifest.json"])
def test_capture_killed_at_a_point(source, tmp_path, lifeboat_env, point):
    src = source[0]
    repo_path = tmp_path / "repo"
    proc = lifeboat("capture", src.path, "img", "--repo", str(repo_path), env={"LIFEBOAT_TEST_KILL_AT": point})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert chunk_count(repo_path) >= 3
    if point == "before-replace-manifest.json":  # the whole manifest was written and synced, but never renamed
        assert list((repo_path / "tmp").glob("manifest.json.*.part"))
    assert_clean_after_kill(repo_path)
    lo = check_repository(Repository.open(repo_path)).leftovers
    assert lo.unreferenced_chunks >= 3
    if point == "before-replace-manifest.json":
        assert lo.tmp_files >= 1  # (a kill among the chunks may leave a worker's half-written chunk there too)
    recapture_reuses_and_prune_cleans(src, repo_path)


def test_capture_killed_from_outside_at_a_chunk_count(source, tmp_path, lifeboat_env):
    """No hook: this test watches the chunk directory and sends SIGKILL when 4 chunk files exist."""
    src = source[0]
    repo_path = tmp_path / "repo"
    child = lifeboat("capture", src.path, "img", "--repo", str(repo_path), "--level", "19", wait=False)
    try:
        deadline = time.monotonic() + 120
        while chunk_count(repo_path) < 4 if (repo_path / "chunks").exists() else True:
            assert child.poll() is None, "capture finished before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        child.kill()
    finally:
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert_clean_after_kill(repo_path)
    recapture_reuses_and_prune_cleans(src, repo_path)


@pytest.fixture(scope="module")
def image(source):
    src, built, base = source
    repo_path = base / "repo-restore"
    proc = lifeboat("capture", src.path, "img", "--repo", str(repo_path), env={"LIFEBOAT_LOCK_DIR": str(base / "locks")})
    assert proc.returncode == 0, proc.stderr
    return repo_path, built


def _old_table(disk) -> None:
    sh("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk.path, input="label: gpt\n\nsize=50MiB, type=L\n")


@pytest.mark.parametrize("point", ["restore-chunk:2", "restore-before-table"])
def test_restore_killed_leaves_a_marked_unbootable_target(image, tmp_path, lifeboat_env, point):
    repo_path, built = image
    with loop_disk(tmp_path, "target", 160 * MiB) as target:
        _old_table(target)
        proc = lifeboat("restore", "img", target.path, "--repo", str(repo_path), "--yes", "--no-bootloader",
                        env={"LIFEBOAT_TEST_KILL_AT": point})
        assert proc.returncode == -signal.SIGKILL, proc.stderr
        with open(target.path, "rb") as f:
            sector0 = f.read(512)
        assert sector0[510:512] != b"\x55\xaa"  # no boot signature: no BIOS boots it, no OS sees a table
        assert "PTTYPE" not in sh("blkid", "-p", "-o", "export", target.path, check=False).stdout
        marker = read_marker(target.path)
        assert marker is not None and marker.image == "img" and marker.repo == str(repo_path)
        disks = json.loads(lifeboat("disks", "--loop", "--json").stdout)
        listed = next(d for d in disks if d["path"] == target.path)
        assert "incomplete restore of image 'img'" in listed["incomplete_restore"]
        plan = lifeboat("restore", "img", target.path, "--repo", str(repo_path), "--dry-run")
        assert "incomplete restore of image 'img'" in plan.stdout
        again = lifeboat("restore", "img", target.path, "--repo", str(repo_path), "--yes", "--no-bootloader")
        assert again.returncode == 0, again.stderr
        assert read_marker(target.path) is None
        target.refresh()
        with mounted(target.node(1), "ext4", readonly=True) as mnt:
            assert tree_hashes(mnt) == built.hashes[1]


def _wait_stopped(pid: int, child) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert child.poll() is None, child.stderr.read()
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[1].split()[0] == "T":
                return
        time.sleep(0.02)
    raise AssertionError("the job never reached its stop point")


def _finish(child, started_wait: float) -> tuple[int, str, float]:
    os.kill(child.pid, signal.SIGCONT)
    _, err = child.communicate(timeout=120)
    return child.returncode, err, time.monotonic() - started_wait


def _pull(repo_disk) -> None:
    os.truncate(repo_disk.backing, 0)
    sh("losetup", "-c", repo_disk.path)


def _mount_options(mnt: Path) -> list[str]:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        fields = line.split()
        if fields[1] == str(mnt):
            return fields[3].split(",")
    raise AssertionError(f"{mnt} is not mounted")


@pytest.fixture
def repo_disk(tmp_path):
    with loop_disk(tmp_path, "repodisk", 160 * MiB) as disk:
        sh("mkfs.ext4", "-q", "-F", disk.path)
        mnt = tmp_path / "mnt"
        mnt.mkdir()
        sh("mount", disk.path, str(mnt))
        try:
            yield disk, mnt
        finally:
            for _ in range(10):
                if sh("umount", str(mnt), check=False).returncode == 0:
                    break
                time.sleep(0.3)


def test_repository_disk_vanishes_mid_capture(source, repo_disk, lifeboat_env):
    disk, mnt = repo_disk
    child = lifeboat("capture", source[0].path, "img", "--repo", str(mnt / "repo"), wait=False,
                     env={"LIFEBOAT_TEST_STOP_AT": "capture-chunk:2"})
    _wait_stopped(child.pid, child)
    _pull(disk)
    code, err, seconds = _finish(child, time.monotonic())
    assert code == 1 and "Traceback" not in err, err
    assert disk.path in err and "stopped answering" in err, err
    assert seconds < 30, f"took {seconds:.1f} s to notice"
    print(f"capture noticed the lost repository disk in {seconds:.1f} s: {err.strip()}")


def test_repository_disk_vanishes_mid_restore(image, repo_disk, tmp_path, lifeboat_env):
    disk, mnt = repo_disk
    sh("cp", "-a", str(image[0]), str(mnt / "repo"))
    sh("umount", str(mnt))  # remount: nothing of the repository stays in the page cache
    sh("mount", disk.path, str(mnt))
    with loop_disk(tmp_path, "target", 160 * MiB) as target:
        child = lifeboat("restore", "img", target.path, "--repo", str(mnt / "repo"), "--yes", "--no-bootloader",
                         wait=False, env={"LIFEBOAT_TEST_STOP_AT": "restore-marked"})
        _wait_stopped(child.pid, child)
        _pull(disk)
        code, err, seconds = _finish(child, time.monotonic())
        assert code == 1 and "Traceback" not in err, err
        assert disk.path in err and "stopped answering" in err, err
        assert seconds < 30
        assert read_marker(target.path).image == "img"  # the target still says what happened
        print(f"restore noticed the lost repository disk in {seconds:.1f} s: {err.strip()}")


def test_repository_goes_read_only_mid_capture(source, repo_disk, lifeboat_env):
    disk, mnt = repo_disk
    child = lifeboat("capture", source[0].path, "img", "--repo", str(mnt / "repo"), wait=False,
                     env={"LIFEBOAT_TEST_STOP_AT": "capture-chunk:2"})
    _wait_stopped(child.pid, child)
    # What makes a repository read-only in the field: ext4 meets an error and, mounted errors=remount-ro, turns
    # read-only under the open files. (A plain `remount,ro` is refused while a worker holds a chunk file open,
    # and letting the job run until it is not raced a capture that finished first.)
    sh("mount", "-o", "remount,errors=remount-ro", str(mnt))
    Path(f"/sys/fs/ext4/{Path(disk.path).name}/trigger_fs_error").write_text("lifeboat test: repository fails\n")
    options = _mount_options(mnt)
    if not {"ro", "emergency_ro"} & set(options):  # 6.x kernels say emergency_ro, older ones ro
        child.kill()
        child.communicate(timeout=30)
        raise AssertionError(f"ext4 did not turn read-only on its error: {options}")
    code, err, seconds = _finish(child, time.monotonic())
    assert code == 1 and "Traceback" not in err, err
    assert "read-only" in err and disk.path in err, err
    sh("umount", str(mnt))  # the error left a mark: check the filesystem, as a technician would, then mount it
    sh("e2fsck", "-fy", disk.path, check=False)
    sh("mount", disk.path, str(mnt))
    assert Repository.open(mnt / "repo").image_names() == []
    assert check_repository(Repository.open(mnt / "repo")).healthy


@pytest.mark.parametrize("rescue", [False, True])
def test_source_disk_vanishes_mid_capture(tmp_path, lifeboat_env, rescue):
    """The disk being captured is pulled: a clear error naming it, with or without --rescue (no retrying
    of a disk that is gone), and no image."""
    with loop_disk(tmp_path, "doomed", 256 * MiB) as src:
        build_disk(src, "gpt", [PartSpec(200, "ext4", seed=9)], tmp_path)
        # far more chunks than the capture keeps in flight (2 x cores + 4 workers read ahead), so the
        # disk is pulled while most of it is still unread
        with mounted(src.node(1), "ext4") as where:
            (Path(where) / "ballast.bin").write_bytes(os.urandom(160 * MiB))
        child = lifeboat("capture", src.path, "img", "--repo", str(tmp_path / "repo"), *(["--rescue"] if rescue else []),
                         wait=False, env={"LIFEBOAT_TEST_STOP_AT": "capture-chunk:1"})
        _wait_stopped(child.pid, child)
        _pull(src)
        code, err, seconds = _finish(child, time.monotonic())
        assert code == 1 and "Traceback" not in err, err
        assert f"the source disk {src.node(1)} is gone" in err and "--rescue" not in err.splitlines()[-1], err
        assert seconds < 30
        assert Repository.open(tmp_path / "repo").image_names() == []
