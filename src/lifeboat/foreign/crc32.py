"""CRC32 (zlib's: the IEEE polynomial, reflected) at PCLMUL speed, from ISA-L (Debian's libisal2).

partclone checksums every used block with a CRC32, and `lifeboat import`, `verify` and `restore` of a
Clonezilla image check every one of them. zlib's crc32 (Debian's 1.2.13, and Python's zlib module over
it) has no carry-less-multiply code: 2.3-2.4 GB/s on this machine, 2.2 s of CPU for the benchmark's
5.3 GB image. ISA-L's crc32_gzip_refl computes the same value with PCLMUL (VPCLMUL where the CPU has
it): 12.9 GB/s measured here on 64 MiB, about 2 us a call. It is loaded through ctypes, which releases
the GIL during the call, as zlib does: the checksum thread keeps running beside the decompressor.

crc32(data, state) is zlib.crc32(data, state) for the buffers partclone's reader hands it (writable
ones: bytearrays and views of them); a read-only buffer (a header's bytes) goes to zlib, as small.
"""

from __future__ import annotations

import ctypes
import zlib

LIBRARY = "libisal.so.2"  # Debian: libisal2 (config/debian-packages.txt, the live ISO's package list)


def _load() -> ctypes._CFuncPtr:
    try:
        lib = ctypes.CDLL(LIBRARY)
    except OSError as exc:
        raise OSError(f"{LIBRARY} cannot be loaded ({exc}); install Debian's libisal2 (scripts/ensure-deps)") from None
    fn = lib.crc32_gzip_refl
    fn.argtypes = [ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint64]
    fn.restype = ctypes.c_uint32
    return fn


_crc32_gzip_refl = _load()


def crc32(data: bytes | bytearray | memoryview, state: int = 0) -> int:
    """zlib.crc32(data, state), computed by ISA-L."""
    view = memoryview(data)
    if view.readonly:
        return zlib.crc32(view, state)
    n = view.nbytes
    if not n:
        return state
    first = ctypes.c_char.from_buffer(view)  # the buffer's address; exported (pinned) while `first` lives
    return _crc32_gzip_refl(state, ctypes.addressof(first), n)
