"""The only place that starts processes.

Every external tool is declared once in TOOLS (command → Debian package) so that a plan can name
everything missing before anything is written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence

from lifeboat.errors import CommandFailed, CommandTimedOut, ToolMissing

log = logging.getLogger("lifeboat.run")

# command -> Debian package that provides it
TOOLS: dict[str, str] = {
    "sfdisk": "fdisk",
    "sgdisk": "gdisk",
    "partx": "util-linux",
    "blkid": "util-linux",
    "wipefs": "util-linux",
    "blockdev": "util-linux",
    "losetup": "util-linux",
    "udevadm": "udev",
    "mkswap": "util-linux",
    "partclone.ext4": "partclone",
    "partclone.extfs": "partclone",
    "partclone.xfs": "partclone",
    "partclone.btrfs": "partclone",
    "partclone.fat": "partclone",
    "partclone.vfat": "partclone",
    "partclone.ntfs": "partclone",
    "partclone.exfat": "partclone",
    "partclone.f2fs": "partclone",
    "partclone.hfsplus": "partclone",
    "e2fsck": "e2fsprogs",
    "resize2fs": "e2fsprogs",
    "tune2fs": "e2fsprogs",
    "xfs_repair": "xfsprogs",
    "xfs_growfs": "xfsprogs",
    "xfs_admin": "xfsprogs",
    "btrfs": "btrfs-progs",
    "btrfstune": "btrfs-progs",
    "fsck.vfat": "dosfstools",
    "fatlabel": "dosfstools",
    "ntfsresize": "ntfs-3g",
    "ntfsfix": "ntfs-3g",
    "ntfslabel": "ntfs-3g",
    "fsck.exfat": "exfatprogs",
    "grub-install": "grub2-common",
    "efibootmgr": "efibootmgr",
    "mount": "mount",
    "umount": "mount",
    "fusermount": "fuse3",
    "ntfs-3g": "ntfs-3g",
    "rsync": "rsync",
    "mkfs.xfs": "xfsprogs",
    "mkfs.ext4": "e2fsprogs",
    "mkfs.vfat": "dosfstools",
    "mkfs.exfat": "exfatprogs",
    "tune.exfat": "exfatprogs",
    "mcopy": "mtools",
    "mdir": "mtools",
    "xfs_info": "xfsprogs",
    "dumpe2fs": "e2fsprogs",
    "debugfs": "e2fsprogs",
    "xfs_db": "xfsprogs",
    "ntfscluster": "ntfs-3g",
    "smartctl": "smartmontools",
    "mount.cifs": "cifs-utils",
    "mount.nfs": "nfs-common",
    "lvm": "lvm2",
    "cryptsetup": "cryptsetup-bin",
}

# A small, predictable environment for every child: C locale so we can parse output.
_CHILD_ENV_OVERRIDES = {"LC_ALL": "C", "LANG": "C"}


def which(tool: str) -> str | None:
    return shutil.which(tool)


def require(*tools: str) -> None:
    """Raise ToolMissing for the first tool that is not installed."""
    for tool in tools:
        if which(tool) is None:
            raise ToolMissing(tool, TOOLS.get(tool))


def missing_tools(tools: Sequence[str]) -> list[str]:
    return [t for t in dict.fromkeys(tools) if which(t) is None]


def _resolve(argv: list[str]) -> list[str]:
    """argv with its program as an absolute path; ToolMissing (naming the package) if it is not installed."""
    if os.path.isabs(argv[0]):
        return argv
    found = which(argv[0])
    if found is None:
        raise ToolMissing(argv[0], TOOLS.get(argv[0]))
    return [found, *argv[1:]]


def _env(extra: dict[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env.update(_CHILD_ENV_OVERRIDES)
    if extra:
        env.update(extra)
    return env


def run(
    argv: Sequence[str],
    *,
    input: bytes | str | None = None,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion and capture its output as text. Raises CommandFailed, or
    CommandTimedOut when `timeout` seconds pass first (the child is killed)."""
    argv = _resolve([str(a) for a in argv])
    log.debug("+ %s", " ".join(argv))
    data = input.decode() if isinstance(input, bytes) else input
    try:
        proc = subprocess.run(
            argv,
            input=data,
            stdin=None if data is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=_env(env),
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise CommandTimedOut(argv, timeout or 0) from None
    if check and proc.returncode != 0:
        raise CommandFailed(argv, proc.returncode, (proc.stderr or proc.stdout)[-2000:])
    return proc


def interactive(argv: Sequence[str], *, env: dict[str, str] | None = None) -> int:
    """Run a program on this terminal (a shell, stty, the TUI from the live console): stdin, stdout and stderr
    are inherited and its environment is left as it is (no C locale). Returns its exit status."""
    argv = _resolve([str(a) for a in argv])
    log.debug("+ %s (interactive)", " ".join(argv))
    return subprocess.call(argv, env=env)


@contextlib.contextmanager
def spawn(argv: Sequence[str], **popen_kwargs) -> Iterator[subprocess.Popen]:
    """Start a long-running process; it is always reaped (killed if still running) on exit."""
    argv = _resolve([str(a) for a in argv])
    log.debug("+ %s &", " ".join(argv))
    popen_kwargs.setdefault("stdin", subprocess.DEVNULL)
    popen_kwargs.setdefault("env", _env(None))
    proc = subprocess.Popen(argv, **popen_kwargs)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def start_detached(argv: Sequence[str], log_path: str, pass_fds: Sequence[int] = ()) -> int:
    """Start a daemon that outlives this process (its own session, output appended to `log_path`;
    `pass_fds` stay open in it, e.g. a pipe carrying a key). Returns its pid; the caller records it and
    stops it by that pid."""
    argv = _resolve([str(a) for a in argv])
    log.debug("+ %s &> %s", " ".join(argv), log_path)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=_env(None),
                                start_new_session=True, pass_fds=tuple(pass_fds))
    return proc.pid
