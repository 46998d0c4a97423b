"""`lifeboat mount` / `lifeboat umount`: an image's filesystems, read-only, without restoring anything.

    lifeboat mount NAME DIR --repo R
      1. a FUSE daemon (lifeboat.imagefs.daemon) shows each address space of the image as a file in a
         private view directory (RUN_DIR/mounts/<key>/view), fetching chunks only when they are read;
      2. each file is attached to a read-only loop device and its filesystem mounted read-only at
         DIR/<space>-<fstype>/ (journals are not replayed: the view cannot be written);
      3. a state file (RUN_DIR/mounts/<key>/state.json) records the daemon's pid, the loops and mounts.
    lifeboat umount DIR undoes that in reverse order: filesystems, loops, the FUSE mount, the daemon.

A filesystem the running kernel cannot mount (this host has no vfat driver) is skipped and said so;
its raw address space stays readable in the view.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from lifeboat import mounts
from lifeboat.errors import CommandFailed, LifeboatError
from lifeboat.imagefs.secrets import DaemonSecrets, write_pipe
from lifeboat.imagefs.view import AddressSpace, address_spaces
from lifeboat.repo.credentials import Credentials
from lifeboat.repo.manifest import load_manifest
from lifeboat.repo.store import Repository
from lifeboat.run import run, start_detached

RUN_DIR = os.environ.get("LIFEBOAT_RUN_DIR", "/run/lifeboat")
READY_TIMEOUT = 30.0


@dataclass(frozen=True)
class MountedFs:
    space: str  # "p2"
    fstype: str
    loop: str
    path: str  # DIR/p2-ext4


@dataclass(frozen=True)
class MountedImage:
    image: str
    repo: str
    dir: str
    view: str  # the FUSE directory holding one file per address space and stats.json
    pid: int
    filesystems: tuple[MountedFs, ...] = ()
    skipped: tuple[tuple[str, str], ...] = field(default=())  # (space, why it was not mounted)
    ready_seconds: float = 0.0

    @property
    def stats_path(self) -> str:
        return os.path.join(self.view, "stats.json")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> MountedImage:
        return cls(**{**data, "filesystems": tuple(MountedFs(**f) for f in data["filesystems"]),
                      "skipped": tuple(tuple(s) for s in data["skipped"])})


def _state_dir(directory: str) -> Path:
    key = hashlib.sha256(os.path.realpath(directory).encode()).hexdigest()[:16]
    return Path(RUN_DIR) / "mounts" / key


def kernel_has(fstype: str) -> bool:
    with open("/proc/filesystems") as f:
        return any(line.split()[-1] == fstype for line in f if line.strip())


@dataclass(frozen=True)
class ReadOnlyMount:
    """How a filesystem in the view is mounted read-only: nothing may be replayed into it."""

    fstype: str
    options: str


def read_only_mount(fstype: str) -> ReadOnlyMount | str:
    """The read-only mount for a filesystem type, or why it cannot be mounted here."""
    if fstype in ("ext2", "ext3", "ext4"):
        return ReadOnlyMount("ext4", "ro,noload")
    if fstype == "xfs":
        return ReadOnlyMount("xfs", "ro,norecovery,nouuid")
    if fstype == "btrfs":
        return ReadOnlyMount("btrfs", "ro,rescue=nologreplay")
    if fstype == "ntfs":
        return ReadOnlyMount("ntfs-3g", "ro")
    if fstype in ("vfat", "exfat", "f2fs", "hfsplus"):
        if not kernel_has(fstype):
            return f"the running kernel has no {fstype} driver (the live system has one)"
        return ReadOnlyMount(fstype, "ro")
    return f"{fstype or 'unknown content'} is not a filesystem Lifeboat mounts"


def wait_ready(ready: Path, pid: int, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not ready.exists():
        if not _alive(pid):
            tail = log.read_text(errors="replace").strip().splitlines()[-3:] if log.exists() else []
            raise LifeboatError(f"the image view did not start: {' / '.join(tail) or 'no output'}")
        if time.monotonic() > deadline:
            raise LifeboatError(f"the image view did not start within {READY_TIMEOUT:.0f} s (log: {log})")
        time.sleep(0.02)


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # reap it when it is our own child
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _mount_space(space: AddressSpace, view: str, directory: str) -> MountedFs | str:
    target = os.path.join(directory, f"{space.name}-{space.fstype or 'raw'}")
    how = read_only_mount(space.fstype)
    if isinstance(how, str):
        return how
    loop = run(["losetup", "--find", "--show", "--read-only", os.path.join(view, space.name)]).stdout.strip()
    try:
        mounts.mount(loop, target, fstype=how.fstype, options=how.options)
    except CommandFailed as exc:
        run(["losetup", "-d", loop], check=False)
        with contextlib.suppress(OSError):
            os.rmdir(target)
        return f"mount failed: {exc}"
    return MountedFs(space.name, space.fstype, loop, target)


def mount_image(repo_root: str, name: str, directory: str) -> MountedImage:
    """Mount every filesystem of image `name` read-only under `directory`; returns when all are mounted."""
    started = time.monotonic()
    repo = Repository.open(repo_root)
    manifest = load_manifest(repo, name)  # fails here, with its message, before a daemon starts
    directory = os.path.realpath(directory)
    os.makedirs(directory, exist_ok=True)
    state = _state_dir(directory)
    if (state / "state.json").exists():
        raise LifeboatError(f"{directory} already holds a mounted image; `lifeboat umount {directory}` first")
    shutil.rmtree(state, ignore_errors=True)
    view, pid = _start_view(repo, name, state)
    mounted = MountedImage(name, str(repo.root), directory, str(view), pid)
    try:
        wait_ready(state / "ready", pid, state / "daemon.log")
        fss, skipped = [], []
        for space in address_spaces(manifest):
            result = _mount_space(space, str(view), directory)
            if isinstance(result, str):
                skipped.append((space.name, result))
            else:
                fss.append(result)
        mounted = MountedImage(name, str(repo.root), directory, str(view), pid, tuple(fss), tuple(skipped),
                               round(time.monotonic() - started, 3))
    except BaseException:
        _undo(mounted)
        raise
    (state / "state.json").write_text(json.dumps(mounted.to_json(), indent=1))
    return mounted


def mounted_at(directory: str) -> MountedImage | None:
    path = _state_dir(directory) / "state.json"
    if not path.exists():
        return None
    return MountedImage.from_json(json.loads(path.read_text()))


def _undo(m: MountedImage) -> list[str]:
    problems = []
    for fs in reversed(m.filesystems):
        if os.path.ismount(fs.path) and run(["umount", fs.path], check=False).returncode != 0:
            problems.append(f"{fs.path} is busy (close the files and shells using it)")
            continue
        run(["losetup", "-d", fs.loop], check=False)
        with contextlib.suppress(OSError):
            os.rmdir(fs.path)
    if problems:
        return problems
    stop_daemon(m.view, m.pid)
    shutil.rmtree(Path(m.view).parent, ignore_errors=True)
    return []


def stop_daemon(view: str, pid: int) -> None:
    """Unmount a FUSE view and make sure its daemon has ended (by its pid)."""
    if run(["fusermount", "-u", view], check=False).returncode != 0:
        mounts.unmount(view)
    for _ in range(100):
        if not _alive(pid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not _alive(pid):
            return
        time.sleep(0.05)


def _start_view(repo: Repository, name: str, state: Path) -> tuple[Path, int]:
    """Start the FUSE daemon. An encrypted repository's key (already unlocked here) and a network
    repository's credentials (as its connection here got them: file, prompt or environment) reach it
    through a pipe: never in its argv, environment or a file, and it asks nothing again."""
    view, ready, log = state / "view", state / "ready", state / "daemon.log"
    view.mkdir(parents=True)
    argv = [sys.executable, "-m", "lifeboat.imagefs.daemon", str(repo.root), name, str(view), str(ready)]
    secrets = DaemonSecrets(repo.key.secret if repo.key is not None else None, _credentials_of(repo))
    if secrets == DaemonSecrets():
        return view, start_detached(argv, str(log))
    read_end = write_pipe(secrets)
    try:
        pid = start_detached([*argv, f"--secrets-fd={read_end}"], str(log), pass_fds=(read_end,))
    finally:
        os.close(read_end)
    return view, pid


def _credentials_of(repo: Repository) -> Credentials | None:
    """The credentials a network backend connected with (local directories have none)."""
    creds = getattr(repo.backend, "creds", None)
    return creds if isinstance(creds, Credentials) else None


@contextlib.contextmanager
def image_view(repo_root: str, name: str) -> Iterator[str]:
    """The image's FUSE view (one file per address space) for as long as the block runs."""
    state = Path(tempfile.mkdtemp(prefix="lifeboat-view-", dir=RUN_DIR if os.path.isdir(RUN_DIR) else None))
    view, pid = _start_view(Repository.open(repo_root), name, state)  # unlocked already in this process
    try:
        wait_ready(state / "ready", pid, state / "daemon.log")
        yield str(view)
    finally:
        stop_daemon(str(view), pid)
        shutil.rmtree(state, ignore_errors=True)


def umount_image(directory: str) -> MountedImage:
    m = mounted_at(directory)
    if m is None:
        raise LifeboatError(f"no image is mounted at {os.path.realpath(directory)}")
    problems = _undo(m)
    if problems:
        raise LifeboatError(f"cannot unmount: {problems[0]}; nothing else was unmounted")
    return m
