"""One place for the cached-fixture pattern the vm fixtures share: a file under CACHE/fixtures named
`<name>-<key>.<suffix>`, built once under a lock into a temporary directory and moved into place whole
(os.replace), so a reader needs no lock; older builds of the same name are removed.

The key is a hash of whatever decides the fixture's bytes: the builder module's own source (pass its
`__file__`), its inputs' names (a rootfs tarball, a kernel package) and any extra parts. A change to the
builder rebuilds only its own fixture. (bootdisk.py keeps its own copy of this pattern: its file is part of
every bootdisk fixture's key, and changing it would rebuild them all.)"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from bootdisk import CACHE, _locked, _prune


def key(builder_file: str, *parts: object) -> str:
    h = hashlib.sha256(Path(builder_file).read_bytes())
    for part in parts:
        h.update(b"\0" + str(part).encode())
    return h.hexdigest()[:16]


def cached(name: str, key: str, build: Callable[[Path, Path], None], suffix: str = "img") -> Path:
    """CACHE/fixtures/<name>-<key>.<suffix>, made by `build(out, tmp)` if missing: build writes the file
    `out` (inside the scratch directory `tmp`, which it may use too). Copy the result before writing to it."""
    out = CACHE / "fixtures" / f"{name}-{key}.{suffix}"
    if out.exists():  # fixtures appear whole (os.replace): no lock needed to use one
        return out
    with _locked("fixtures"):
        if out.exists():
            return out
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            staged = Path(tmp) / f"fixture.{suffix}"
            build(staged, Path(tmp))
            os.replace(staged, out)
        _prune(out)
    return out
