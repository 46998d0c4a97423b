"""Mounts made for a bootloader reinstall, always undone in reverse order."""

from __future__ import annotations

import logging
import os
import tempfile

from lifeboat.errors import CommandFailed
from lifeboat.run import run

log = logging.getLogger("lifeboat.boot")


class Mounts:
    """A stack of mounts. `with Mounts() as m: m.mount(...)`; every mount is undone on exit, even on error."""

    def __init__(self) -> None:
        self._stack: list[str] = []
        self._dirs: list[str] = []

    def __enter__(self) -> "Mounts":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def tempdir(self, prefix: str) -> str:
        base = "/run" if os.path.isdir("/run") and os.access("/run", os.W_OK) else None
        path = tempfile.mkdtemp(prefix=prefix, dir=base)
        self._dirs.append(path)
        return path

    def mount(self, source: str, target: str, *, fstype: str | None = None, options: str | None = None,
              bind: bool = False) -> str:
        os.makedirs(target, exist_ok=True)
        argv = ["mount"]
        if bind:
            argv += ["--rbind"]
        if fstype:
            argv += ["-t", fstype]
        if options:
            argv += ["-o", options]
        run(argv + [source, target])
        self._stack.append(target)
        if bind:
            # Unmounting the tree below must not propagate back to the live system's /dev, /sys.
            run(["mount", "--make-rslave", target], check=False)
        return target

    def close(self) -> None:
        while self._stack:
            target = self._stack.pop()
            try:
                run(["umount", "-R", target])
            except CommandFailed as err:
                log.warning("umount %s failed (%s); detaching lazily", target, err)
                run(["umount", "-R", "-l", target], check=False)
        run(["sync"], check=False)
        while self._dirs:
            path = self._dirs.pop()
            try:
                os.rmdir(path)
            except OSError:
                pass
