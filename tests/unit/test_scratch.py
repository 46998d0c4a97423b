"""The shrink scratch file (imagefs/scratch.py): what it holds on disk is never the plaintext, and a
changed, cut short or truncated scratch file is an error naming the file and offset, never wrong data."""

from __future__ import annotations

import os

import pytest

from lifeboat.imagefs import scratch
from lifeboat.imagefs.scratch import PIECE, SLOT, ScratchCorrupt, ScratchFile, read_state, state_pipe

MARKER = b"LIFEBOAT-SECRET-MARKER-7f3a9c"


def _filled(path: str) -> tuple[bytes, int]:
    """A scratch file written the way a restore writes it: ascending runs, unaligned, with gaps."""
    f = ScratchFile(path)
    content = bytearray(5 * PIECE)
    for i, at in enumerate(range(100, 5 * PIECE - 4096, 3000)):
        run = (MARKER * 200)[: 1000 + i % 7]
        f.write(at, run)
        content[at : at + len(run)] = run
    f.close()
    return bytes(content), 5 * PIECE


def test_the_file_never_holds_the_plaintext_and_reads_back_whole(tmp_path):
    path = str(tmp_path / "img-p3.overflow")
    content, size = _filled(path)
    raw = open(path, "rb").read()
    assert MARKER not in raw and MARKER[:8] not in raw
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    again = ScratchFile(path, scratch.held(path))  # as the splice daemon opens it
    assert again.read(0, size) == content
    assert again.read(size, 10) == bytes(10)  # never written: zeros
    again.write(PIECE - 3, b"across")  # a write across a piece boundary, read back from disk
    again.close()
    assert ScratchFile(path, scratch.held(path)).read(PIECE - 3, 6) == b"across"
    scratch.discard(path)
    assert not os.path.exists(path)
    with pytest.raises(Exception, match="not held"):
        scratch.held(path)


@pytest.mark.parametrize("damage", ["flip", "zero", "truncate", "swap"])
def test_a_changed_scratch_file_is_an_error_naming_file_and_offset(tmp_path, damage):
    path = str(tmp_path / "img-p5.overflow")
    _filled(path)
    with open(path, "r+b") as f:
        if damage == "flip":
            f.seek(2 * SLOT + 5000)
            byte = f.read(1)
            f.seek(2 * SLOT + 5000)
            f.write(bytes([byte[0] ^ 0x01]))
        elif damage == "zero":  # a hole punched where data was must not read as zeros
            f.seek(2 * SLOT)
            f.write(bytes(SLOT))
        elif damage == "truncate":
            f.truncate(2 * SLOT + 100)
        else:  # piece 3's slot copied over piece 2's
            f.seek(3 * SLOT)
            other = f.read(SLOT)
            f.seek(2 * SLOT)
            f.write(other)
    f2 = ScratchFile(path, scratch.held(path))
    assert f2.read(0, 2 * PIECE)  # the pieces before are intact
    with pytest.raises(ScratchCorrupt) as err:
        f2.read(2 * PIECE + 10, 100)
    assert path in str(err.value) and f"offset {2 * PIECE}" in str(err.value)
    assert ("truncated" if damage == "truncate" else "fails authentication") in str(err.value)
    scratch.discard(path)


def test_the_key_reaches_a_child_through_a_pipe_whatever_its_size(tmp_path):
    path = str(tmp_path / "big.overflow")
    f = ScratchFile(path)
    f.write(600_000 * PIECE, b"far")  # a written-pieces map larger than a pipe's 64 KiB buffer
    state = f.close()
    assert len(state.encode()) > 65536
    assert read_state(state_pipe(state)) == state
    assert state.key.hex() not in repr(state)
    assert ScratchFile(path, state).read(600_000 * PIECE, 3) == b"far"
    scratch.discard(path)
