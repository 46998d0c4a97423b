"""Restore a filesystem into a partition smaller than the one it was captured from.

Shrink in place (ext*, btrfs, ntfs). A resize tool can only shrink a filesystem that exists whole,
at its captured size S, but the target partition holds only its new size T < S. So while restoring,
every stored run below T is written straight into the target partition, and every run at or past T
into a sparse overflow file (SCRATCH/<image>-p<N>.overflow) at offset (run - T), encrypted with a
key held only in memory (imagefs/scratch.py): the overflow holds
exactly the stored data beyond the cut, which the plan computed from the block map and checked
against the scratch space, never the whole filesystem. Then a FUSE file (imagefs/splice.py) joins
them into one S-byte address space, a loop device is put over it, and the filesystem's own tool
shrinks it to T, moving what lies beyond the cut into the partition. The overflow is then deleted.
Nothing is read from the disk the image came from and nothing is written to the repository.

Re-create and copy (xfs, vfat, exfat...). The image's own read-only view (imagefs, the same as
`lifeboat mount`) is loop-mounted; the filesystem is made anew on the target partition with the
UUID, label and parameters read from it, and the files are copied with rsync -aHAXS (mtools for FAT).
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from lifeboat import mounts
from lifeboat.engine.shrink_plan import SCRATCH, ShrinkStep
from lifeboat.errors import Cancelled, ImageCorrupt, LifeboatError
from lifeboat.fs.shrink import (ShrinkMethod, copy_fat, copy_tree, fat_options, make_like, shrink_in_place,
                                xfs_mkfs_options)
from lifeboat.fs.usedmap import decode_runs, runs_in_window
from lifeboat.imagefs import scratch
from lifeboat.imagefs.mount import image_view, read_only_mount, stop_daemon, wait_ready
from lifeboat.imagefs.scratch import ScratchFile
from lifeboat.repo.manifest import CHUNK_SIZE, DataStream
from lifeboat.repo.store import Repository
from lifeboat.run import run, start_detached


def overflow_path(image: str, number: int) -> str:
    return space_overflow_path(image, f"p{number}")


def space_overflow_path(image: str, space: str) -> str:
    """The overflow file of the image's address space `space` ("p3", "lv-vg0-root")."""
    return os.path.join(SCRATCH, f"{image}-{space}.overflow")


def discard_overflows(image: str, numbers: list[int]) -> None:
    for number in numbers:
        scratch.discard(overflow_path(image, number))


def write_split(repo: Repository, disk_fd: int, base: int, stream: DataStream, cut: int, overflow: str,
                title: str, advance: Callable[[int], None] = lambda n: None,
                cancel: threading.Event | None = None) -> int:
    """Write a stream's runs: below `cut` into the disk at `base`, the rest into `overflow`. Returns
    the bytes written; `advance` hears of each chunk, `cancel` stops between chunks."""
    runs = decode_runs(repo.get_chunk(stream.map.digest, stream.map.length))
    os.makedirs(os.path.dirname(overflow), exist_ok=True)
    written, index = 0, 0
    over = ScratchFile(overflow)  # encrypted with a key held only in memory (imagefs/scratch.py)
    try:
        for ref in stream.chunks:
            if cancel is not None and cancel.is_set():
                raise Cancelled()
            inside, index = runs_in_window(runs, index, ref.offset, ref.offset + CHUNK_SIZE)
            try:
                data = memoryview(repo.get_chunk(ref.digest, ref.length))
            except ImageCorrupt as exc:
                raise ImageCorrupt(f"{title} at offset {ref.offset}: {exc}") from None
            pos = 0
            for start, n in inside:
                low = max(0, min(n, cut - start))
                if low:
                    os.pwrite(disk_fd, data[pos : pos + low], base + start)
                if n > low:
                    over.write(start + low - cut, data[pos + low : pos + n])
                pos += n
            written += ref.length
            advance(ref.length)
    finally:
        over.close()
    return written


@contextlib.contextmanager
def _spliced(node: str, cut: int, overflow: str, size: int) -> Iterator[str]:
    """A loop device over the partition + overflow, joined at `cut` into `size` bytes."""
    state = Path(tempfile.mkdtemp(prefix="lifeboat-splice-", dir=SCRATCH))
    view, ready = state / "view", state / "ready"
    view.mkdir()
    key_fd = scratch.state_pipe(scratch.held(overflow))
    try:
        pid = start_detached([sys.executable, "-m", "lifeboat.imagefs.splice", node, cut, overflow, size, view, ready,
                              f"--scratch-fd={key_fd}"], str(state / "daemon.log"), pass_fds=(key_fd,))
    finally:
        os.close(key_fd)
    loop = ""
    try:
        wait_ready(ready, pid, state / "daemon.log")
        loop = run(["losetup", "--find", "--show", str(view / "fs")]).stdout.strip()
        yield loop
        run(["blockdev", "--flushbufs", loop], check=False)
    finally:
        if loop:
            run(["losetup", "-d", loop], check=False)
            _wait_detached(str(view / "fs"))
        stop_daemon(str(view), pid)
        scratch.discard(overflow)
        run(["rm", "-rf", str(state)], check=False)


def _wait_detached(backing: str) -> None:
    """losetup -d is lazy; the FUSE file must be closed before the daemon is stopped."""
    for _ in range(100):
        if backing not in run(["losetup", "-a"], check=False).stdout:
            return
        time.sleep(0.05)


def shrink_resized(node: str, step: ShrinkStep, overflow: str) -> str:
    run(["blockdev", "--flushbufs", node], check=False)  # drop any page cached before the data was written
    with _spliced(node, step.target_bytes, overflow, step.source_bytes) as loop, \
            tempfile.TemporaryDirectory(prefix="lifeboat-shrink-", dir=SCRATCH) as mnt:
        done = shrink_in_place(step.fstype, loop, step.target_bytes, mnt)
    run(["blockdev", "--flushbufs", node], check=False)
    return done


def copy_recreated(repo_root: str, image: str, space: str, node: str, step: ShrinkStep, uuid: str,
                   label: str) -> str:
    """Make the filesystem anew on `node` and copy the files of the image's address space `space`."""
    with image_view(repo_root, image) as view, tempfile.TemporaryDirectory(prefix="lifeboat-copy-", dir=SCRATCH) \
            as tmp:
        source = os.path.join(view, space)
        if step.fstype == "vfat":
            fat = run(["blkid", "-p", "-o", "value", "-s", "VERSION", source], check=False).stdout.strip()
            sector = int(run(["blockdev", "--getss", node]).stdout)
            make_like("vfat", node, uuid, label, fat_options(fat, step.target_bytes, sector))
            copy_fat(source, node, tmp)
            return f"FAT made anew ({sector}-byte sectors), files copied with mtools"
        src_mnt, dst_mnt = os.path.join(tmp, "from"), os.path.join(tmp, "to")
        how = read_only_mount(step.fstype)
        if isinstance(how, str):
            raise LifeboatError(f"{space}: cannot read the image's {step.fstype}: {how}")
        loop = run(["losetup", "--find", "--show", "--read-only", source]).stdout.strip()
        try:
            with mounts.mounted(loop, src_mnt, fstype=how.fstype, options=how.options):
                params = xfs_mkfs_options(run(["xfs_info", src_mnt]).stdout) if step.fstype == "xfs" else []
                make_like(step.fstype, node, uuid, label, params)
                options = "nouuid" if step.fstype == "xfs" else None  # the image's twin may be mounted
                with mounts.mounted(node, dst_mnt, fstype=step.fstype, options=options):
                    copy_tree(src_mnt, dst_mnt)
        finally:
            run(["losetup", "-d", loop], check=False)
    return f"{step.fstype} made anew with its UUID and label, files copied with rsync"


def write_data(repo: Repository, disk_fd: int, image: str, action, stream: DataStream,
               advance: Callable[[int], None], cancel: threading.Event) -> int:
    """The data phase of a shrinking partition (nothing for re-create-and-copy, which copies files later)."""
    if action.shrink.method is not ShrinkMethod.RESIZE:
        return 0
    return write_split(repo, disk_fd, action.target.start * 512, stream, action.shrink.target_bytes,
                       overflow_path(image, action.number), action.title, advance, cancel)


def finish(repo_root: str, image: str, number: int, node: str, step: ShrinkStep, uuid: str, label: str) -> str:
    """The filesystem into its smaller partition. Returns what was done and how long it took."""
    return finish_space(repo_root, image, f"p{number}", node, step, uuid, label)


def finish_space(repo_root: str, image: str, space: str, node: str, step: ShrinkStep, uuid: str, label: str) -> str:
    """The filesystem of the image's address space `space` into the smaller `node` (a partition or a
    logical volume). Returns what was done and how long it took."""
    started = time.monotonic()
    if step.method is ShrinkMethod.RESIZE:
        done = shrink_resized(node, step, space_overflow_path(image, space))
    elif step.method is ShrinkMethod.COPY:
        done = copy_recreated(repo_root, image, space, node, step, uuid, label)
    else:
        return "nothing to do"
    return f"{done} in {time.monotonic() - started:.1f} s"
