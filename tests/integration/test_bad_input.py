"""Bad input gets a clear one-line error, a non-zero exit, and loses nothing."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk, mounted, sh

from lifeboat import locks
from lifeboat.engine.capture import capture
from lifeboat.engine.plan import plan_restore
from lifeboat.errors import ImageCorrupt, RepositoryError, TargetTooSmall, UnsafeTarget
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration
SPECS = [PartSpec(60, "ext4", name="root"), PartSpec(20, "vfat", gpt_type="U")]


def lifeboat(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "lifeboat", *args], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


def digest_of(path: str, length: int = 8 * MiB) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(length)).hexdigest()


@pytest.fixture(scope="module")
def imaged(tmp_path_factory):
    """One captured disk shared by the tests here; each test copies the repository it damages."""
    base = tmp_path_factory.mktemp("bad")
    with loop_disk(base, "source", 100 * MiB) as src:
        build_disk(src, "gpt", SPECS, base)
        repo = Repository.open(base / "repo", create=True)
        manifest = capture(src.path, "good", repo)
        yield src, base / "repo", manifest


@pytest.fixture
def repo_copy(imaged, tmp_path):
    src, repo_path, manifest = imaged
    sh("cp", "-a", str(repo_path), str(tmp_path / "repo"))
    return src, tmp_path / "repo", manifest


@pytest.fixture
def target(tmp_path):
    with loop_disk(tmp_path, "target", 100 * MiB) as disk:
        with open(disk.path, "r+b") as f:
            f.write(b"TARGET-UNTOUCHED" * 65536)  # a recognisable first MiB
        yield disk


def chunk_file(repo, digest: str):
    return repo / "chunks" / digest[:2] / f"{digest}.zst"


def ext4_chunk(manifest) -> tuple[int, str]:
    part = next(p for p in manifest.partitions if p.fstype == "ext4")
    ref = part.stream.chunks[len(part.stream.chunks) // 2]
    return ref.window, ref.digest


def test_corrupt_chunk_is_reported_with_partition_and_offset(repo_copy, target):
    _, repo, manifest = repo_copy
    window, digest = ext4_chunk(manifest)
    path = chunk_file(repo, digest)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    proc = lifeboat("verify", "good", "--repo", str(repo))
    assert proc.returncode == 1
    assert f"partition 1 (ext4) at offset {window * 4 * MiB}" in proc.stderr
    before = digest_of(target.path)
    proc = lifeboat("restore", "good", target.path, "--repo", str(repo), "--yes", "--no-bootloader")
    assert proc.returncode == 1
    assert f"partition 1 (ext4) at offset {window * 4 * MiB}" in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("lifeboat: error: ") and "partly restored" in last  # one clear line
    assert "Traceback" not in proc.stderr
    assert before != digest_of(target.path)  # the restore had begun: the message must say where it stopped


@pytest.mark.parametrize("damage", ["truncate", "delete"])
def test_truncated_or_missing_chunk_refused_before_writing(repo_copy, target, damage):
    _, repo, manifest = repo_copy
    window, digest = ext4_chunk(manifest)
    path = chunk_file(repo, digest)
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[:4])
    else:
        path.unlink()
    before = digest_of(target.path)
    proc = lifeboat("restore", "good", target.path, "--repo", str(repo), "--yes", "--no-bootloader")
    assert proc.returncode == 1
    assert f"partition 1 (ext4) at offset {window * 4 * MiB}" in proc.stderr
    assert "nothing was written" in proc.stderr
    assert digest_of(target.path) == before
    assert lifeboat("verify", "good", "--repo", str(repo)).returncode == 1


def test_unknown_manifest_version(repo_copy, target):
    _, repo, _ = repo_copy
    path = repo / "images" / "good" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["version"] = 99
    path.write_text(json.dumps(manifest))  # as a newer Lifeboat would write it, checksum included
    (path.parent / "manifest.sha256").write_text(hashlib.sha256(path.read_bytes()).hexdigest() + "\n")
    before = digest_of(target.path)
    for argv in (["verify", "good"], ["restore", "good", target.path, "--yes"]):
        proc = lifeboat(*argv, "--repo", str(repo))
        assert proc.returncode == 1
        assert "schema version 99 is not supported" in proc.stderr
    assert digest_of(target.path) == before


@pytest.mark.parametrize("name", ["../escape", "a/b", "..", ".hidden"])
def test_image_name_with_path_separators(imaged, tmp_path, name):
    src = imaged[0]
    proc = lifeboat("capture", src.path, name, "--repo", str(tmp_path / "repo"))
    assert proc.returncode == 1
    assert "image name" in proc.stderr
    assert not (tmp_path / "escape").exists()


def test_repository_fills_up_mid_capture(imaged, tmp_path, lifeboat_env):
    src = imaged[0]
    mnt = tmp_path / "small"
    mnt.mkdir()
    sh("mount", "-t", "tmpfs", "-o", "size=6M", "tmpfs", str(mnt))
    try:
        repo = Repository.open(mnt / "repo", create=True)
        with pytest.raises(RepositoryError) as err:
            capture(src.path, "toobig", repo)
        assert "is full" in str(err.value) and "partition 1 (ext4)" in str(err.value)
        assert repo.image_names() == []  # no manifest: nothing that looks like an image
        assert list((mnt / "repo" / "tmp").glob("*.part")) == []  # no partial files left behind
        Repository.open(mnt / "repo")  # and the repository is still usable
    finally:
        sh("umount", str(mnt))


def test_missing_tool_is_named_before_anything_is_written(imaged, tmp_path):
    src = imaged[0]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    # a PATH with everything but partclone
    for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
        for name in os.listdir(d):
            if not name.startswith("partclone") and not (bindir / name).exists():
                (bindir / name).symlink_to(os.path.join(d, name))
    proc = lifeboat("capture", src.path, "x", "--repo", str(tmp_path / "repo"), env={"PATH": str(bindir)})
    assert proc.returncode == 1
    assert "partclone.extfs (Debian package partclone)" in proc.stderr
    assert not (tmp_path / "repo" / "images" / "x").exists()


def test_target_too_small_says_by_how_much(imaged, tmp_path):
    _, repo_path, _ = imaged
    with loop_disk(tmp_path, "tiny", 50 * MiB) as tiny:
        with pytest.raises(TargetTooSmall) as err:
            plan_restore(Repository.open(repo_path), "good", tiny.path)
        assert "short" in str(err.value) and "bytes" in str(err.value)


def test_mounted_target_is_refused(imaged, tmp_path, target):
    _, repo_path, _ = imaged
    build_disk(target, "gpt", [PartSpec(40, "ext4")], tmp_path)
    with mounted(target.node(1), "ext4"):
        with pytest.raises(UnsafeTarget) as err:
            plan_restore(Repository.open(repo_path), "good", target.path)
        assert "mounted" in str(err.value)


def test_capture_source_is_refused_as_target(imaged, lifeboat_env):
    src, repo_path, _ = imaged
    with locks.capturing(src.path):
        with pytest.raises(UnsafeTarget) as err:
            plan_restore(Repository.open(repo_path), "good", src.path)
    assert "capture" in str(err.value)


def test_boot_disk_is_never_a_target():
    from lifeboat.devices import disk_info

    root_dev = os.stat("/").st_dev
    node = f"/sys/dev/block/{os.major(root_dev)}:{os.minor(root_dev)}"
    if not os.path.exists(node):
        pytest.skip("/ is not on a block device here")
    name = os.path.basename(os.path.realpath(node))
    parent = os.path.basename(os.path.dirname(os.path.realpath(node)))
    disk = f"/dev/{name if not os.path.exists(os.path.join(os.path.realpath(node), 'partition')) else parent}"
    info = disk_info(disk)  # reads udev only
    assert info.is_boot_medium and info.unsafe_reason


def test_restore_without_confirmation_and_no_terminal_is_refused(imaged, target):
    _, repo_path, _ = imaged
    before = digest_of(target.path)
    proc = lifeboat("restore", "good", target.path, "--repo", str(repo_path))
    assert proc.returncode == 2
    assert "pass --yes" in proc.stderr
    assert digest_of(target.path) == before
    dry = lifeboat("restore", "good", target.path, "--repo", str(repo_path), "--dry-run")
    assert dry.returncode == 0 and "Dry run: nothing was written." in dry.stdout
    assert digest_of(target.path) == before


def test_source_mounted_read_write_is_refused(imaged, tmp_path):
    src = imaged[0]
    src.refresh()
    with mounted(src.node(1), "ext4"):
        proc = lifeboat("capture", src.path, "live", "--repo", str(tmp_path / "repo"))
    assert proc.returncode == 1
    assert "mounted read-write" in proc.stderr and "nothing was written" in proc.stderr
    assert not (tmp_path / "repo" / "images" / "live").exists()
