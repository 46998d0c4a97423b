"""The splice file's arithmetic: bytes below the cut are the partition's, bytes past it the overflow's
(called directly on the operations object over plain files: no FUSE mount needed)."""

from __future__ import annotations

import errno

import pytest
from fuse import FuseOSError

from lifeboat.imagefs.scratch import ScratchFile
from lifeboat.imagefs.splice import SpliceOps


def test_reads_and_writes_go_to_the_right_side_of_the_cut(tmp_path):
    part, over = tmp_path / "part", tmp_path / "overflow"
    part.write_bytes(b"P" * 100)
    state = ScratchFile(str(over)).close()
    ops = SpliceOps(str(part), 100, str(over), 160, str(tmp_path / "ready"), state)
    assert ops.read("/fs", 10, 95, None) == b"PPPPP" + bytes(5)  # the overflow reads as zeros where unwritten
    assert ops.write("/fs", b"abcdefghij", 95, None) == 10
    assert part.read_bytes()[95:] == b"abcde" and ops.overflow.read(0, 5) == b"fghij"
    assert ops.read("/fs", 20, 150, None) == bytes(10)  # ends at the captured size
    assert ops.read("/fs", 10, 95, None) == b"abcdefghij"
    with pytest.raises(FuseOSError) as err:
        ops.write("/fs", b"x" * 20, 150, None)
    assert err.value.errno == errno.ENOSPC
    assert ops.getattr("/fs")["st_size"] == 160
    ops.destroy("/")
