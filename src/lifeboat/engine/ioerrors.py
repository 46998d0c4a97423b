"""Turn an OSError from under a job into one sentence that names the device that failed.

A repository's disk that was unplugged, or whose filesystem the kernel switched to read-only after
errors, shows up as EIO/EROFS/ENODEV on some file operation deep in a worker thread. The user needs
to know which disk (the repository's or the target's), what happened, and what is left on it.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from lifeboat.errors import LifeboatError, RepositoryError
from lifeboat.mounts import mount_table

GONE_ERRNOS = (errno.EIO, errno.ENODEV, errno.ENXIO, errno.ENOTCONN, errno.ESHUTDOWN, errno.ENOMEDIUM, errno.ESTALE)
READ_ONLY_ERRNOS = (errno.EROFS,)


def device_of(path: str | os.PathLike) -> tuple[str, str]:
    """(/dev/NAME, mount point) of the filesystem holding `path`; ("", "") when unknown. Reads only
    /proc/self/mountinfo and sysfs: the filesystem itself may no longer answer a stat."""
    best, dev = "", ""
    for m in mount_table():
        inside = str(path) == m.point or str(path).startswith(m.point.rstrip("/") + "/")
        if inside and len(m.point) >= len(best):
            best = m.point
            dev = _dev_name(m.devnum) or (m.source if m.source.startswith("/dev/") else "")
    return dev, best


def _dev_name(devnum: int) -> str:
    if not devnum:
        return ""
    try:
        return "/dev/" + os.path.basename(os.readlink(f"/sys/dev/block/{os.major(devnum)}:{os.minor(devnum)}"))
    except OSError:
        return ""


def device_state(dev: str) -> str:
    """'gone', 'empty' (size 0: no medium, or a loop device whose file vanished) or '' when present.
    For a partition, its whole disk counts too: a pulled disk leaves its partitions' sizes behind."""
    name = os.path.basename(dev)
    try:
        node = os.path.realpath(f"/sys/class/block/{name}")
        sizes = [int(Path(node, "size").read_text())]
        if Path(node, "partition").exists():
            sizes.append(int(Path(os.path.dirname(node), "size").read_text()))
    except (OSError, ValueError):
        return "gone"
    return "empty" if 0 in sizes else ""


def _under(filename: object, root: Path) -> bool:
    if not filename:
        return False
    return str(filename).startswith(str(root))


def repository_failure(exc: OSError, root: Path, doing: str) -> RepositoryError:
    """The repository's disk or filesystem failed while `doing`."""
    dev, point = device_of(root)
    where = f"{dev} (mounted on {point})" if dev and point else (dev or str(root))
    state = device_state(dev) if dev else ""
    lost = {"gone": " and is gone", "empty": " and has disappeared (it reports no size)"}.get(state, "")
    if exc.errno in GONE_ERRNOS or state:
        what = f"the repository's disk {where} stopped answering{lost} while {doing} ({exc.strerror}); was it unplugged?"
    elif exc.errno in READ_ONLY_ERRNOS:
        what = (f"the repository's filesystem on {where} became read-only while {doing} "
                "(the kernel does this after disk errors, or it was remounted read-only)")
    else:
        what = f"the repository at {root} failed while {doing}: {exc.strerror or exc}"
    return RepositoryError(f"{what}; the job stopped, nothing was recorded as complete")


def io_failure(exc: OSError, repo_root: Path, target: str, doing: str) -> LifeboatError:
    """An OSError during a restore: the repository's (a file under its root) or the target's."""
    repo_dev = device_of(repo_root)[0]
    repo_lost = bool(repo_dev) and bool(device_state(repo_dev))
    if repo_lost or _under(exc.filename, repo_root) or exc.errno in READ_ONLY_ERRNOS:
        return repository_failure(exc, repo_root, doing)
    state = device_state(os.path.realpath(target))
    lost = {"gone": " and is gone", "empty": " and has disappeared"}.get(state, "")
    return LifeboatError(f"the target {target} failed{lost} while {doing} ({exc.strerror or exc}); "
                         f"it is only partly restored and will not boot; restore again")
