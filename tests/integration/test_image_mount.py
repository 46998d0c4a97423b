"""`lifeboat mount`: an image's filesystems read-only through the FUSE view, without a restore.

Real parts: the FUSE daemon (fusepy over libfuse2), loop devices, the kernel's ext4/xfs/btrfs, ntfs-3g.
The host kernel has no vfat driver: the ESP is skipped with the reason, its raw space still readable.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import subprocess
import sys
import time

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk, mounted, sh, tree_hashes

from lifeboat.cli import main as cli_main
from lifeboat.engine.capture import capture
from lifeboat.imagefs.mount import mount_image, mounted_at, umount_image
from lifeboat.imagefs.view import PREFETCH
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration

SPECS = [
    PartSpec(40, "vfat", gpt_type="U", name="EFI System"),
    PartSpec(160, "ext4", name="root"),
    PartSpec(320, "xfs", name="srv"),
    PartSpec(150, "btrfs", name="home"),
    PartSpec(60, "ntfs", gpt_type="EBD0A0A2-B9E5-4433-87C0-68B6B72699C7", name="Windows"),
    PartSpec(16, "swap", gpt_type="S"),
]
BIG = 100 * MiB  # "reading one 100 MB file fetches only the chunks it needs" (issue #10)


def _file_windows(path) -> tuple[set[int], int]:
    """The 4 MiB windows of its partition that hold a file's data, and its number of extents (filefrag)."""
    windows, extents = set(), 0
    for line in sh("filefrag", "-e", "-b4096", str(path)).stdout.splitlines():
        fields = line.replace(":", " ").replace("..", " ").split()
        if len(fields) >= 6 and fields[0].isdigit():
            first, last = int(fields[3]), int(fields[4])
            windows.update(range(first * 4096 // (4 * MiB), last * 4096 // (4 * MiB) + 1))
            extents += 1
    return windows, extents


def _stats(m) -> dict:
    with open(m.stats_path) as f:
        return json.load(f)


def test_mount_shows_every_filesystem_and_fetches_only_what_is_read(workdir, lifeboat_env):
    with loop_disk(workdir, "source", 800 * MiB) as src:
        built = build_disk(src, "gpt", SPECS, workdir)
        big = random.Random(7).randbytes(BIG)
        with mounted(src.node(2), "ext4") as mnt:
            (mnt / "big.bin").write_bytes(big)
            built.hashes[2] = tree_hashes(mnt)
        src.refresh()
        repo = Repository.open(workdir / "repo", create=True)
        manifest = capture(src.path, "machine", repo)
        total_chunks = sum(len(p.stream.chunks) for p in manifest.partitions if p.stream)

        target = workdir / "view"
        m = mount_image(str(repo.root), "machine", str(target))
        try:
            print(f"mount ready in {m.ready_seconds:.2f} s for {total_chunks} chunks")
            names = {os.path.basename(f.path) for f in m.filesystems}
            assert names == {"p2-ext4", "p3-xfs", "p4-btrfs", "p5-ntfs"}
            assert dict(m.skipped)["p1"].startswith("the running kernel has no vfat driver")
            assert mounted_at(str(target)) == m
            assert _stats(m)["chunks_fetched"] < total_chunks / 2, "mounting must not read the whole image"

            windows, extents = _file_windows(target / "p2-ext4" / "big.bin")
            before = _stats(m)["chunks_fetched"]
            started = time.monotonic()
            digest = hashlib.sha256((target / "p2-ext4" / "big.bin").read_bytes()).hexdigest()
            seconds = time.monotonic() - started
            fetched = _stats(m)["chunks_fetched"] - before
            print(f"read at {BIG / MiB / seconds:.0f} MiB/s through the view")
            print(f"reading one {BIG // MiB} MiB file ({len(windows)} windows, {extents} extents) fetched {fetched} "
                  f"chunks of {total_chunks}")
            assert digest == hashlib.sha256(big).hexdigest()
            # the windows holding the file's extents, at most a few for its inode and the kernel's readahead,
            # and at most PREFETCH read ahead past the end of each extent (the view reads ahead of a reader
            # going in order, and cannot know where the file ends)
            most = len(windows) + 4 + PREFETCH * extents
            assert len(windows) <= fetched <= most, f"{fetched} chunks for {len(windows)} windows, {extents} extents"

            for number, fstype in ((2, "ext4"), (3, "xfs"), (4, "btrfs"), (5, "ntfs")):
                assert tree_hashes(target / f"p{number}-{fstype}") == built.hashes[number], f"partition {number}"
            with open(os.path.join(m.view, "p1"), "rb") as f:  # the unmounted ESP's bytes are there
                assert f.read(512)[510:] == b"\x55\xaa"
            with pytest.raises(OSError):
                (target / "p2-ext4" / "new").write_text("no")
        finally:
            umount_image(str(target))
        assert mounted_at(str(target)) is None
        assert not os.path.ismount(target / "p2-ext4") and not os.path.exists(m.view)
        assert not os.path.exists(f"/proc/{m.pid}") or "Z" in open(f"/proc/{m.pid}/stat").read().split(")")[1][:3]
        assert m.view not in sh("losetup", "-a").stdout  # no loop device left on the view


def test_cli_mount_umount_and_a_missing_image(workdir, lifeboat_env, capsys):
    with loop_disk(workdir, "source", 200 * MiB) as src:
        built = build_disk(src, "gpt", [PartSpec(150, "ext4", name="root")], workdir)
        repo = Repository.open(workdir / "repo", create=True)
        capture(src.path, "one", repo)
    target = workdir / "view"
    assert cli_main(["mount", "nothere", str(target), "--repo", str(repo.root)]) == 1
    assert "no image named 'nothere'" in capsys.readouterr().err
    assert cli_main(["mount", "one", str(target), "--repo", str(repo.root)]) == 0
    try:
        out = capsys.readouterr().out
        assert "p1-ext4" in out and "mounted at" in out
        assert tree_hashes(target / "p1-ext4") == built.hashes[1]
        assert cli_main(["mount", "one", str(target), "--repo", str(repo.root)]) == 1  # already mounted
    finally:
        assert cli_main(["umount", str(target)]) == 0
    assert cli_main(["umount", str(target)]) == 1
    assert "no image is mounted" in capsys.readouterr().err


def _cli(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """The real command in its own process, as a user runs it (the passphrase from a file, never an argument)."""
    proc = subprocess.run([sys.executable, "-m", "lifeboat", *args], stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=600)
    if check:
        assert proc.returncode == 0, f"lifeboat {' '.join(args)}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_mount_and_shrink_restore_from_an_encrypted_repository(workdir, lifeboat_env):
    """An encrypted repository (`init --encrypt`, the passphrase in a 0600 file): `lifeboat mount` shows the
    image (its FUSE daemon gets the unlocked key through a pipe: nothing secret in its argv or environment),
    and a restore onto a smaller disk, whose plan measures the ext4's minimum through that same view, shrinks
    the root with every file intact. A wrong passphrase mounts nothing."""
    phrase = "encrypted mount passphrase 42"
    phrase_file, wrong_file = workdir / "passphrase", workdir / "wrong"
    for path, text in ((phrase_file, phrase), (wrong_file, "not the passphrase")):
        path.write_text(text + "\n")
        path.chmod(0o600)
    repo, view = workdir / "repo", workdir / "view"
    key = ("--repo", str(repo), "--passphrase-file", str(phrase_file))
    _cli("init", "--encrypt", *key)
    with loop_disk(workdir, "source", 300 * MiB) as src:
        built = build_disk(src, "gpt", [PartSpec(16, "swap", gpt_type="S"), PartSpec(0, "ext4", name="root")],
                           workdir)
        uuid = sh("blkid", "-p", "-s", "UUID", "-o", "value", src.node(2)).stdout.strip()
        _cli("capture", src.path, "secret", *key)

    wrong = _cli("mount", "secret", str(view), "--repo", str(repo), "--passphrase-file", str(wrong_file), check=False)
    assert wrong.returncode != 0 and "wrong passphrase" in wrong.stderr, wrong.stderr
    assert mounted_at(str(view)) is None
    out = _cli("mount", "secret", str(view), *key).stdout
    try:
        m = mounted_at(str(view))
        assert m is not None and "p2-ext4" in out, out
        with open(f"/proc/{m.pid}/cmdline", "rb") as f:
            argv = f.read()
        with open(f"/proc/{m.pid}/environ", "rb") as f:
            environ = f.read()
        assert phrase.encode() not in argv + environ and str(phrase_file).encode() not in argv + environ
        assert tree_hashes(view / "p2-ext4") == built.hashes[2]
    finally:
        _cli("umount", str(view))

    with loop_disk(workdir, "smaller", 200 * MiB) as dst:
        out = _cli("restore", "secret", dst.path, *key, "--yes", "--no-bootloader").stdout
        assert re.search(r"shrinks .* -> .*resize2fs|shrunk in place", out), out
        dst.refresh()
        sh("e2fsck", "-f", "-n", dst.node(2))
        assert sh("blkid", "-p", "-s", "UUID", "-o", "value", dst.node(2)).stdout.strip() == uuid
        with mounted(dst.node(2), "ext4", readonly=True) as mnt:
            assert tree_hashes(mnt) == built.hashes[2]
