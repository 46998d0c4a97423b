"""The smallest size a filesystem can be shrunk to, asked of the filesystem's own tools.

Run against the image's read-only view (imagefs), so the plan knows before anything is written
what resize2fs and ntfsresize will accept: resize2fs -P and ntfsresize --info read the image file.
None when the tool cannot tell (the plan then uses its estimate). Not btrfs: `inspect-internal
min-dev-size` answers where its last allocated chunk ends (341 MiB for 100 MiB used of 400 MiB), not
what a balance and resize reach; its estimate comes from the superblock's bytes_used instead.
"""

from __future__ import annotations

import contextlib
import re

from lifeboat.errors import LifeboatError
from lifeboat.run import run

MiB = 1024 * 1024
MARGIN = 4 * MiB  # partition sizes are whole MiB; the tools' answers are exact to a block


def _ext(path: str) -> int | None:
    out = run(["resize2fs", "-P", path], check=False).stdout
    blocks = re.search(r"minimum size of the filesystem: (\d+)", out)
    head = run(["dumpe2fs", "-h", path], check=False).stdout
    size = re.search(r"^Block size:\s+(\d+)", head, re.M)
    return int(blocks.group(1)) * int(size.group(1)) if blocks and size else None


def _ntfs(path: str) -> int | None:
    out = run(["ntfsresize", "--info", "--force", "--no-progress-bar", path], check=False).stdout
    found = re.search(r"You might resize at (\d+) bytes", out)
    return int(found.group(1)) if found else None


def measured_minimum(fstype: str, path: str) -> int | None:
    """Bytes the filesystem in image file `path` can shrink to, margin included, or None."""
    probe = {"ext2": _ext, "ext3": _ext, "ext4": _ext, "ntfs": _ntfs}.get(fstype)
    if probe is None:
        return None
    with contextlib.suppress(LifeboatError):
        found = probe(path)
        return found + MARGIN if found else None
    return None
