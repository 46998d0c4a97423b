"""An encrypted scratch file: the data beyond a shrinking partition's new end, held while it is shrunk.

The scratch file lies on some other disk (LIFEBOAT_SCRATCH), so it never holds the disk's content in
clear, whether the image came from an encrypted repository or not:
- one ephemeral random AES-256-GCM key per scratch file, made here, kept only in memory (this process's,
  and the splice daemon's, which gets it through a pipe, never argv, environment or a file);
- the file is a row of slots, one per 64 KiB piece of the logical content: slot i at i * SLOT holds a
  random 12-byte nonce + the piece's ciphertext + the 16-byte tag, the piece's index as associated data
  (a slot moved elsewhere fails). Pieces never written are holes in the file and read as zeros;
- which pieces were written is kept in memory too, so a slot zeroed, cut short or truncated away is an
  error (ScratchCorrupt, naming the file and offset), never zeros or another piece's data.
One piece is cached decrypted (write-back), so the restore's ascending small writes cost one encryption
per piece. Random nonces stay safe for 2^32 encryptions per key: 256 TiB of pieces written once.
"""

from __future__ import annotations

import contextlib
import os
import struct
import threading
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from lifeboat.errors import LifeboatError

PIECE = 64 * 1024
NONCE = 12
TAG = 16
SLOT = NONCE + PIECE + TAG
KEY_BYTES = 32


class ScratchCorrupt(LifeboatError):
    """The scratch file was changed by someone else while it was held."""


@dataclass(frozen=True)
class ScratchState:
    """What opens a scratch file again: its key and which pieces hold data. Never written to disk."""

    key: bytes = field(repr=False)
    written: bytes = field(repr=False)

    def encode(self) -> bytes:
        return self.key + self.written

    @classmethod
    def decode(cls, raw: bytes) -> ScratchState:
        if len(raw) < KEY_BYTES:
            raise LifeboatError("scratch state: the key is incomplete")
        return cls(raw[:KEY_BYTES], raw[KEY_BYTES:])


_held: dict[str, ScratchState] = {}  # closed scratch files of this process, by path, until discarded
_held_lock = threading.Lock()


class ScratchFile:
    """Random read/write access to an encrypted scratch file (thread-safe)."""

    def __init__(self, path: str, state: ScratchState | None = None):
        self.path = path
        fresh = state is None
        self._key = os.urandom(KEY_BYTES) if state is None else state.key
        self._aead = AESGCM(self._key)
        self._written = bytearray() if state is None else bytearray(state.written)
        flags = os.O_RDWR | (os.O_CREAT | os.O_TRUNC if fresh else 0)
        self._fd = os.open(path, flags, 0o600)
        self._lock = threading.Lock()
        self._index, self._buf, self._dirty = -1, bytearray(), False

    def write(self, offset: int, data: bytes | memoryview) -> None:
        view, pos = memoryview(data), 0
        with self._lock:
            while pos < len(view):
                index, within = divmod(offset + pos, PIECE)
                n = min(PIECE - within, len(view) - pos)
                buf = self._piece(index, load=n < PIECE)
                buf[within : within + n] = view[pos : pos + n]
                self._dirty = True
                pos += n

    def read(self, offset: int, length: int) -> bytes:
        out, pos = bytearray(), 0
        with self._lock:
            while pos < length:
                index, within = divmod(offset + pos, PIECE)
                n = min(PIECE - within, length - pos)
                if index != self._index and not self._is_written(index):
                    out += bytes(n)
                else:
                    out += self._piece(index, load=True)[within : within + n]
                pos += n
        return bytes(out)

    def flush(self) -> None:
        with self._lock:
            self._flush()
            os.fsync(self._fd)

    def close(self) -> ScratchState:
        """Flush and close; returns the state that opens it again (also held here until discarded)."""
        self.flush()
        os.close(self._fd)
        state = ScratchState(self._key, bytes(self._written))
        with _held_lock:
            _held[self.path] = state
        return state

    def _piece(self, index: int, load: bool) -> bytearray:
        if index != self._index:
            self._flush()
            self._buf = self._decrypt(index) if load and self._is_written(index) else bytearray(PIECE)
            self._index, self._dirty = index, False
        return self._buf

    def _flush(self) -> None:
        if not self._dirty:
            return
        nonce = os.urandom(NONCE)
        sealed = nonce + self._aead.encrypt(nonce, bytes(self._buf), _aad(self._index))
        done = 0
        while done < SLOT:
            done += os.pwrite(self._fd, sealed[done:], self._index * SLOT + done)
        byte, bit = divmod(self._index, 8)
        if byte >= len(self._written):
            self._written.extend(bytes(byte + 1 - len(self._written)))
        self._written[byte] |= 1 << bit
        self._dirty = False

    def _is_written(self, index: int) -> bool:
        byte, bit = divmod(index, 8)
        return byte < len(self._written) and bool(self._written[byte] >> bit & 1)

    def _decrypt(self, index: int) -> bytearray:
        sealed = os.pread(self._fd, SLOT, index * SLOT)
        where = f"scratch file {self.path}: the piece at offset {index * PIECE} (file offset {index * SLOT})"
        if len(sealed) < SLOT:
            raise ScratchCorrupt(f"{where} is truncated ({len(sealed)} of {SLOT} bytes)")
        try:
            return bytearray(self._aead.decrypt(sealed[:NONCE], sealed[NONCE:], _aad(index)))
        except InvalidTag:
            raise ScratchCorrupt(f"{where} fails authentication: it was changed") from None


def _aad(index: int) -> bytes:
    return b"lifeboat-scratch" + struct.pack("<Q", index)


def held(path: str) -> ScratchState:
    """The state of a scratch file this process wrote and closed."""
    with _held_lock:
        state = _held.get(path)
    if state is None:
        raise LifeboatError(f"scratch file {path}: its key is not held by this process (written elsewhere?)")
    return state


def discard(path: str) -> None:
    """Forget the key and delete the file (either may be gone already)."""
    with _held_lock:
        _held.pop(path, None)
    with contextlib.suppress(OSError):
        os.unlink(path)


def state_pipe(state: ScratchState) -> int:
    """A pipe that delivers `state` to a child: returns its read end (pass it, then close it here). A
    thread writes it, since a large map of written pieces may not fit in the pipe's buffer."""
    read_end, write_end = os.pipe()
    data = state.encode()

    def feed() -> None:
        with os.fdopen(write_end, "wb") as pipe, contextlib.suppress(BrokenPipeError):
            pipe.write(data)

    threading.Thread(target=feed, name="scratch-state", daemon=True).start()
    return read_end


def read_state(fd: int) -> ScratchState:
    """The state from the pipe `fd`, read to its end and closed."""
    with os.fdopen(fd, "rb") as pipe:
        return ScratchState.decode(pipe.read())
