"""Grow a restored filesystem to fill its (larger) partition, and recreate swap."""

from __future__ import annotations

from lifeboat.errors import CommandFailed
from lifeboat.mounts import mounted
from lifeboat.run import run


def _mounted(node: str, fstype: str):
    return mounted(node, fstype=fstype, options="nouuid" if fstype == "xfs" else "defaults", prefix="lifeboat-grow-")


def grow_filesystem(tool: str, fstype: str, node: str) -> str:
    """Grow the filesystem on `node` to its partition's size. Returns a short description."""
    if tool == "resize2fs":
        proc = run(["e2fsck", "-f", "-p", node], check=False)
        if proc.returncode not in (0, 1):  # 1: errors corrected
            raise CommandFailed(["e2fsck", "-f", "-p", node], proc.returncode, proc.stderr or proc.stdout)
        run(["resize2fs", node])
    elif tool == "xfs_growfs":
        with _mounted(node, "xfs") as mnt:
            run(["xfs_growfs", mnt])
    elif tool == "btrfs":
        with _mounted(node, "btrfs") as mnt:
            run(["btrfs", "filesystem", "resize", "max", mnt])
    elif tool == "ntfsresize":
        run(["ntfsresize", "--force", "--no-progress-bar", node], input="y\n")
    else:
        return "keeps its size"
    return f"grown with {tool}"


def make_swap(node: str, uuid: str, label: str) -> None:
    argv = ["mkswap"]
    if uuid:
        argv += ["-U", uuid]
    if label:
        argv += ["-L", label]
    run(argv + [node])
