"""Clonezilla images made by the real Clonezilla (Debian's `clonezilla` + `drbl`, `ocs-sr` in batch
mode) from loop disks built here, cached under /var/cache/lifeboat/clonezilla-fixtures.

The cache key is a hash of this file, diskbuilder.py and the versions of the packages that shape
the image (clonezilla, drbl, partclone, zstd, pigz, e2fsprogs, xfsprogs, ntfs-3g, dosfstools).

ocs-sr runs partprobe and `parted print` on every disk it can see, and udev would then drop other
jobs' loop partitions (this host kernel parses no tables). So it runs in a private mount namespace
(`unshare -m`) whose /dev is a tmpfs holding only null/zero/random/tty and the nodes of our own loop
disk and its partitions; reboot/poweroff/halt are bound to /bin/true there, and ocs-sr's own
/tmp, /var/lib/clonezilla and /var/log (partclone.log) are private too. Its post action is `true`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from diskbuilder import (
    PartSpec,
    build_disk,
    install_boot_code,
    loop_disk,
    sfdisk_dump,
    sh,
)

CACHE = Path(os.environ.get("LIFEBOAT_CACHE", "/var/cache/lifeboat")) / "clonezilla-fixtures"
PACKAGES = ("clonezilla", "drbl", "partclone", "zstd", "pigz", "e2fsprogs", "xfsprogs", "ntfs-3g", "dosfstools")
MiB = 1024 * 1024
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
SWAP = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"


@dataclass(frozen=True)
class Fixture:
    name: str
    label: str
    disk_mib: int
    specs: tuple[PartSpec, ...]
    ocs_options: tuple[str, ...]  # compression and split options


FIXTURES = {
    f.name: f
    for f in (
        Fixture(
            "gpt-zst-split", "gpt", 460,
            (PartSpec(32, "vfat", gpt_type=ESP, name="EFI system"), PartSpec(64, "ext4", name="root", seed=11),
             PartSpec(310, "xfs", name="data", seed=12), PartSpec(0, "swap", gpt_type=SWAP, name="swap")),
            ("-z9p", "-i", "1"),
        ),
        Fixture(
            "mbr-gz", "dos", 210,
            (PartSpec(64, "ext4", mbr_type="83", seed=21), PartSpec(16, "swap", mbr_type="82"),
             PartSpec(8, "raw", mbr_type="da"), PartSpec(0, "extended"), PartSpec(64, "ntfs", mbr_type="7", seed=22),
             PartSpec(0, "ext4", mbr_type="83", seed=23)),
            ("-z1p", "-i", "0"),
        ),
    )
}


def _versions() -> str:
    out = sh("dpkg-query", "-W", "-f", "${Package}=${Version}\n", *PACKAGES, check=False).stdout
    return out


def cache_key() -> str:
    here = Path(__file__).parent
    h = hashlib.sha256()
    for source in (here / "clonezilla_fixtures.py", here / "diskbuilder.py"):
        h.update(source.read_bytes())
    h.update(_versions().encode())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class BuiltFixture:
    """A Clonezilla image directory and what its source disk held."""

    root: Path  # the /home/partimag-like directory
    image: Path  # root / name
    label: str
    disk_bytes: int
    table: str  # sfdisk -d of the source, device names replaced by DISK
    boot_code: str  # sha256 of the MBR's 440 bytes of boot code
    boot_regions: str  # sha256 of MBR boot code + gap before the first partition
    first_partition_start: int
    hashes: dict[int, dict[str, str]]  # partition -> file -> sha256
    fstypes: dict[int, str]


def _node_script(devices: list[str]) -> str:
    lines = []
    for dev in devices:
        st = os.stat(dev)
        lines.append(f"mknod -m 660 {dev} b {os.major(st.st_rdev)} {os.minor(st.st_rdev)}")
    return "\n".join(lines)


OCS_SHELL = """set -e
mount -t tmpfs -o mode=755 lifeboat-dev /dev
mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; mknod -m 666 /dev/full c 1 7
mknod -m 666 /dev/random c 1 8; mknod -m 666 /dev/urandom c 1 9; mknod -m 666 /dev/tty c 5 0
ln -s /proc/self/fd /dev/fd; ln -s /proc/self/fd/0 /dev/stdin; ln -s /proc/self/fd/1 /dev/stdout
ln -s /proc/self/fd/2 /dev/stderr; mkdir /dev/shm /dev/pts
{nodes}
for cmd in reboot poweroff halt shutdown; do mount --bind /bin/true /usr/sbin/$cmd; done
mount -t tmpfs lifeboat-tmp /tmp
mount -t tmpfs lifeboat-log /var/log
mkdir -p /var/lib/clonezilla /home/partimag
mount -t tmpfs lifeboat-ocs /var/lib/clonezilla
mount --bind {out} /home/partimag
ocs-sr -q2 -b -nogui -j2 -sfsck -scs -senc -noabo -p true {options} savedisk {name} {disk} </dev/null
"""


def _run_ocs_sr(fixture: Fixture, disk: str, partitions: list[str], out: Path) -> None:
    script = OCS_SHELL.format(nodes=_node_script([disk, *partitions]), out=out,
                              options=" ".join(fixture.ocs_options), name=fixture.name,
                              disk=os.path.basename(disk))
    _ocs_sr_in_namespace(script, disk, fixture.name, out)


def _ocs_sr_in_namespace(script: str, disk: str, name: str, out: Path) -> None:
    with open(disk, "rb") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_SH)  # udev leaves a disk alone while someone holds it
        proc = sh("unshare", "-m", "--propagation", "private", "bash", "-c", script, check=False)
    (out / f"{name}.ocs-sr.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0 or not (out / name / "clonezilla-img").exists():
        raise AssertionError(f"ocs-sr savedisk {name} failed ({proc.returncode}): {proc.stdout[-3000:]}"
                             f"{proc.stderr[-2000:]}")


def _build(fixture: Fixture, dest: Path, work: Path) -> None:
    with loop_disk(work, fixture.name, fixture.disk_mib * MiB) as disk:
        built = build_disk(disk, fixture.label, list(fixture.specs), work)
        table = json.loads(sh("sfdisk", "--json", disk.path).stdout)["partitiontable"]
        start = min(p["start"] for p in table["partitions"])
        boot = install_boot_code(disk, fixture.label, start)
        parts = sorted(n for n in built.specs)
        nodes = [disk.node(n) for n in parts] + ([disk.node(n) for n in range(1, 5) if n not in parts
                                                  and Path(disk.node(n)).exists()])
        dest.mkdir(parents=True)
        _run_ocs_sr(fixture, disk.path, nodes, dest)
        expect = {
            "label": fixture.label,
            "disk_bytes": disk.size(),
            "table": sfdisk_dump(disk),
            "boot_code": hashlib.sha256(boot[:440]).hexdigest(),
            "boot_regions": hashlib.sha256(boot).hexdigest(),
            "first_partition_start": start,
            "hashes": {str(n): h for n, h in built.hashes.items()},
            "fstypes": {str(n): s.fstype for n, s in built.specs.items()},
        }
        (dest / f"{fixture.name}.expect.json").write_text(json.dumps(expect, indent=1))


def fixture(name: str) -> BuiltFixture:
    """The cached Clonezilla image `name` (built once; about a minute each). Copy before damaging it."""
    spec = FIXTURES[name]
    CACHE.mkdir(parents=True, exist_ok=True)
    key = cache_key()
    root = CACHE / f"{name}-{key}"
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if not (root / f"{name}.expect.json").exists():
            for old in CACHE.glob(f"{name}-*"):
                shutil.rmtree(old, ignore_errors=True)
            work = Path(tempfile.mkdtemp(prefix=f"cz-{name}-", dir="/var/tmp"))
            try:
                _build(spec, root, work)
            except BaseException:
                shutil.rmtree(root, ignore_errors=True)
                raise
            finally:
                shutil.rmtree(work, ignore_errors=True)
    expect = json.loads((root / f"{name}.expect.json").read_text())
    return BuiltFixture(
        root=root, image=root / name, label=expect["label"], disk_bytes=expect["disk_bytes"],
        table=expect["table"], boot_code=expect["boot_code"], boot_regions=expect["boot_regions"],
        first_partition_start=expect["first_partition_start"],
        hashes={int(k): v for k, v in expect["hashes"].items()},
        fstypes={int(k): v for k, v in expect["fstypes"].items()},
    )


def image_of(disk_image: Path, name: str, options: tuple[str, ...] = ("-z9p",)) -> Path:
    """A Clonezilla image (directory `name` under the returned root) of an existing disk image file, made
    by ocs-sr from a read-only loop device; cached by this file, the package versions and the file's name
    (cached fixture disks carry their own key in their names)."""
    key = hashlib.sha256(f"{cache_key()} {disk_image.name} {options}".encode()).hexdigest()[:16]
    root = CACHE / f"{name}-{key}"
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        if (root / name / "clonezilla-img").exists():
            return root
        for old in CACHE.glob(f"{name}-*"):
            shutil.rmtree(old, ignore_errors=True)
        dev = sh("losetup", "--find", "--show", "--read-only", str(disk_image)).stdout.strip()
        try:
            sh("partx", "-a", dev, check=False)
            parts = sorted(str(p) for p in Path("/dev").glob(f"{os.path.basename(dev)}p*"))
            root.mkdir(parents=True)
            script = OCS_SHELL.format(nodes=_node_script([dev, *parts]), out=root, options=" ".join(options),
                                      name=name, disk=os.path.basename(dev))
            _ocs_sr_in_namespace(script, dev, name, root)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        finally:
            sh("partx", "-d", dev, check=False)
            sh("losetup", "-d", dev, check=False)
    return root


@contextlib.contextmanager
def copy_of(built: BuiltFixture, workdir: Path):
    """A private copy of the image directory (to damage it), as WORKDIR/cz/NAME."""
    root = workdir / "cz"
    root.mkdir()
    shutil.copytree(built.image, root / built.image.name)
    yield root


if __name__ == "__main__":
    import sys

    for n in sys.argv[1:] or list(FIXTURES):
        print(fixture(n))
