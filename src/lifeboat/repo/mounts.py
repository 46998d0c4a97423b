"""smb:// and nfs:// repositories: mounted by the kernel's cifs and nfs clients (in the live system), then
used as local directories.

SMB tries protocol 3.1.1, 3.0, 2.1 in turn (1.0 only with `?vers=1.0` in the URL, for very old NAS boxes)
and says which one the server took: the `vers=` the kernel shows for the mount in /proc/self/mountinfo
(the dialect it negotiated), in the repository's url ("smb://… (SMB protocol 3.1.1)"). The password reaches
mount.cifs through `credentials=FILE`, a 0600 file in /run that exists only while mount runs: never on argv,
where `ps` and our `+ cmd` log would show it.
NFS tries 4.2, 4.1, 4.0 and 3 (or only `?vers=N`). Mount points live under /run/lifeboat/mnt and are
unmounted when the process ends.
Before mounting, Lifeboat waits (bounded) for a route to the server (netwait.py): right after the live
system boots, DHCP may not be done yet.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path

from lifeboat.errors import CommandFailed, RepositoryError
from lifeboat.repo.credentials import Credentials, prompt_password
from lifeboat.repo.location import Location, Scheme
from lifeboat.repo.netwait import NoNetwork, no_network_message, unreachable, wait_for_route

log = logging.getLogger("lifeboat.repo.mounts")
MOUNT_BASE = Path("/run/lifeboat/mnt")
SMB_VERSIONS = ("3.1.1", "3.0", "2.1")
NFS_VERSIONS = ("4.2", "4.1", "4.0", "3")


def smb_source(location: Location) -> tuple[str, str]:
    """(//server/share, the path inside the share)."""
    share, _, inside = location.path.strip("/").partition("/")
    return f"//{location.host}/{share}", inside


def nfs_source(location: Location) -> tuple[str, str]:
    """(server:/export, "") — the whole path is mounted; NFS exports may be nested."""
    return f"{location.host}:{location.path}", ""


def smb_mount_argv(location: Location, mount_point: Path, version: str, credentials_file: Path | None) -> list[str]:
    source, _ = smb_source(location)
    options = [f"vers={version}", "uid=0", "gid=0", "file_mode=0600", "dir_mode=0700", "nosuid", "nodev", "noexec"]
    options.append(f"credentials={credentials_file}" if credentials_file else "guest")
    if location.port:
        options.append(f"port={location.port}")
    return ["mount", "-t", "cifs", source, str(mount_point), "-o", ",".join(options)]


def nfs_mount_argv(location: Location, mount_point: Path, version: str) -> list[str]:
    source, _ = nfs_source(location)
    options = [f"vers={version}", "nosuid", "nodev", "noexec", "timeo=100", "retrans=3", "soft"]
    if location.port:
        options.append(f"port={location.port}")
    return ["mount", "-t", "nfs", source, str(mount_point), "-o", ",".join(options)]


def versions(location: Location) -> tuple[str, ...]:
    asked = location.option("vers")
    if asked:
        return (asked,)
    return SMB_VERSIONS if location.scheme is Scheme.SMB else NFS_VERSIONS


@contextlib.contextmanager
def credentials_file(creds: Credentials, location: Location):
    """A mount.cifs credentials file (0600, in /run) for the duration of the block; None for a guest mount."""
    user = creds.user or location.user
    if not user:
        yield None
        return
    password = creds.password or prompt_password(f"password for {user} on {location.display()}")
    fd, name = tempfile.mkstemp(prefix="lifeboat-cred-", dir="/run" if os.access("/run", os.W_OK) else None)
    try:
        with os.fdopen(fd, "w") as f:  # mkstemp makes it 0600
            f.write(f"username={user}\npassword={password}\n")
            if creds.domain:
                f.write(f"domain={creds.domain}\n")
        yield Path(name)
    finally:
        os.unlink(name)


def mount_point_for(location: Location) -> Path:
    return MOUNT_BASE / hashlib.sha256(location.display().encode()).hexdigest()[:16]


def mount_share(location: Location, creds: Credentials):
    """Mount the share (trying protocol versions newest first) and return a LocalBackend on the path in it."""
    from lifeboat.repo.local import LocalBackend
    from lifeboat.run import require, run

    # right after boot DHCP may not be done: wait (bounded) for a route rather than fail with cifs' -101
    wait_for_route(location.host, location.port or (445 if location.scheme is Scheme.SMB else 2049))
    require("mount.cifs" if location.scheme is Scheme.SMB else "mount.nfs")
    mount_point = mount_point_for(location)
    mount_point.mkdir(parents=True, exist_ok=True)
    errors = []
    with credentials_file(creds, location) as cred:
        for version in versions(location):
            argv = (smb_mount_argv(location, mount_point, version, cred) if location.scheme is Scheme.SMB
                    else nfs_mount_argv(location, mount_point, version))
            try:
                run(argv, timeout=60)
            except CommandFailed as exc:
                if unreachable(exc.stderr_tail):  # the route went away again: no other version will do better
                    raise NoNetwork(no_network_message(location.host)) from None
                errors.append(f"{version}: {exc.stderr_tail.strip().splitlines()[-1:] or exc.code}")
                continue
            version = negotiated_version(mount_point) or version
            log.info("mounted %s with protocol version %s", location.display(), version)
            atexit.register(_unmount, mount_point)
            _, inside = smb_source(location) if location.scheme is Scheme.SMB else nfs_source(location)
            backend = LocalBackend(mount_point / inside if inside else mount_point, network=True)
            kind = "SMB" if location.scheme is Scheme.SMB else "NFS"
            backend.url = f"{location.display()} ({kind} protocol {version})"
            return backend
    raise RepositoryError(f"cannot mount {location.display()}: tried protocol versions {'; '.join(errors)}")


def negotiated_version(mount_point: Path, mountinfo: str | None = None) -> str:
    """The protocol version the kernel uses for the cifs/nfs mount at `mount_point` (its `vers=` option in
    /proc/self/mountinfo), or "" when it does not say."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return ""
    found = ""
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[4] != str(mount_point):
            continue
        for option in " ".join(fields[5:]).replace(" ", ",").split(","):
            if option.startswith("vers="):
                found = option[len("vers="):]  # the last mount on that point is the one in use
    return found


NETWORK_FSTYPES = frozenset({"cifs", "smb3", "nfs", "nfs4", "fuse.sshfs"})


def on_network_filesystem(path: Path, mountinfo: str | None = None) -> bool:
    """Whether `path` lies on a cifs/nfs/sshfs mount (ours, or one made by hand): its reads and writes are
    network traffic. The deepest mount point holding the path decides."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return False
    target = str(path)
    best, fstype = "", ""
    for line in mountinfo.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 5:
            continue
        point = fields[4].replace("\\040", " ")
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, fstype = point, line.split(" - ", 1)[1].split()[0]
    return fstype in NETWORK_FSTYPES


def _unmount(mount_point: Path) -> None:
    from lifeboat.run import run

    with contextlib.suppress(Exception):
        run(["umount", str(mount_point)], check=False, timeout=60)
