"""Build real loop disks with real filesystems and known files, and read them back for comparison.

Used by the integration tests (root, loop devices, udevd). Everything created here is detached /
unmounted by the caller's fixtures in a `finally`.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

MiB = 1024 * 1024


def sh(*argv: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(list(argv), input=input, capture_output=True, text=True,
                          env={**os.environ, "LC_ALL": "C"})
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc


def settle() -> None:
    sh("udevadm", "settle", "--timeout=20", check=False)


@dataclass
class LoopDisk:
    path: str  # /dev/loopN
    backing: Path

    def node(self, number: int) -> str:
        return f"{self.path}p{number}"

    def refresh(self) -> None:
        """Make the kernel show this disk's partitions (this host's kernel parses no tables itself)."""
        settle()
        sh("partx", "-u", self.path, check=False)
        sh("partx", "-a", self.path, check=False)
        settle()

    def size(self) -> int:
        return int(sh("blockdev", "--getsize64", self.path).stdout)


@contextlib.contextmanager
def loop_disk(directory: Path, name: str, size: int, sector_size: int = 512) -> Iterator[LoopDisk]:
    backing = directory / f"{name}.img"
    with open(backing, "wb") as f:
        f.truncate(size)
    path = sh("losetup", "--find", "--show", "--partscan", "--sector-size", str(sector_size),
              str(backing)).stdout.strip()
    try:
        yield LoopDisk(path, backing)
    finally:
        settle()
        for _ in range(10):
            if sh("losetup", "-d", path, check=False).returncode == 0:
                break
            time.sleep(0.5)
        # losetup -d is lazy while something holds the device; wait until it is really gone
        for _ in range(20):
            if str(backing) not in sh("losetup", "-a", check=False).stdout:
                break
            time.sleep(0.25)
        backing.unlink(missing_ok=True)


# ---------------------------------------------------------------- content


def make_tree(root: Path, seed: int, files: int = 40, max_size: int = 600_000) -> None:
    """Deterministic files of random content (incompressible) and text (compressible)."""
    rng = random.Random(seed)
    for i in range(files):
        sub = root / f"dir{i % 5}"
        sub.mkdir(parents=True, exist_ok=True)
        size = rng.randrange(0, max_size)
        if i % 3 == 0:
            data = (f"line {i} of a text file seeded {seed}\n" * (size // 30 + 1)).encode()[:size]
        else:
            data = rng.randbytes(size)
        (sub / f"file{i}.bin").write_bytes(data)
    (root / "README.TXT").write_text(f"Lifeboat test tree {seed}\n")


def tree_hashes(root: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            p = Path(dirpath, name)
            if p.is_symlink() or not p.is_file():
                continue
            rel = str(p.relative_to(root))
            if rel.startswith(("lost+found", "System Volume Information", "$")):
                continue
            out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@contextlib.contextmanager
def mounted(node: str, fstype: str, readonly: bool = False) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="lifeboat-test-mnt-") as mnt:
        opts = ["-o", "ro"] if readonly else []
        if fstype == "ntfs":
            sh("ntfs-3g", *(["-o", "ro"] if readonly else []), node, mnt)
        else:
            extra = ["-o", "ro,nouuid" if readonly else "nouuid"] if fstype == "xfs" else opts
            sh("mount", "-t", fstype, *extra, node, mnt)
        try:
            yield Path(mnt)
        finally:
            for _ in range(10):
                if sh("umount", mnt, check=False).returncode == 0:
                    break
                time.sleep(0.3)


def fat_hashes(node: str) -> dict[str, str]:
    """Read a FAT filesystem with mtools (this host kernel has no vfat driver)."""
    with tempfile.TemporaryDirectory(prefix="lifeboat-test-fat-") as out:
        sh("mcopy", "-s", "-n", "-i", node, "::/*", out)
        return tree_hashes(Path(out))


def fill_fat(node: str, tree: Path) -> None:
    for entry in sorted(tree.iterdir()):
        sh("mcopy", "-s", "-i", node, str(entry), "::/")


@dataclass
class PartSpec:
    size_mib: int  # 0: rest of the disk
    fstype: str  # ext4 xfs btrfs vfat ntfs swap raw bios-boot extended
    gpt_type: str = "L"
    mbr_type: str = "83"
    name: str = ""
    seed: int = 0
    options: tuple[str, ...] = ()  # extra mkfs options ("-b", "4096")


@dataclass
class BuiltDisk:
    disk: LoopDisk
    label: str
    specs: dict[int, PartSpec] = field(default_factory=dict)
    hashes: dict[int, dict[str, str]] = field(default_factory=dict)


def _sfdisk_lines(label: str, specs: list[PartSpec]) -> tuple[str, dict[int, PartSpec]]:
    lines = [f"label: {label}", ""]
    numbers: dict[int, PartSpec] = {}
    number = 0
    logical = 4
    in_extended = False
    for spec in specs:
        size = f"size={spec.size_mib}MiB, " if spec.size_mib else ""
        if spec.fstype == "extended":
            number += 1
            lines.append(f"part{number} : {size}type=5")
            in_extended = True
            continue
        if in_extended:
            logical += 1
            n = logical
        else:
            number += 1
            n = number
        t = spec.gpt_type if label == "gpt" else spec.mbr_type
        name = f', name="{spec.name}"' if (spec.name and label == "gpt") else ""
        lines.append(f"part{n} : {size}type={t}{name}")
        numbers[n] = spec
    return "\n".join(lines) + "\n", numbers


def build_disk(disk: LoopDisk, label: str, specs: list[PartSpec], workdir: Path) -> BuiltDisk:
    script, numbers = _sfdisk_lines(label, specs)
    sh("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", disk.path, input=script)
    disk.refresh()
    built = BuiltDisk(disk, label, numbers)
    for number, spec in numbers.items():
        node = disk.node(number)
        tree = workdir / f"tree{number}"
        if spec.fstype in ("ext4", "xfs", "btrfs", "ntfs", "vfat"):
            make_tree(tree, spec.seed or number, files=30 if spec.fstype != "vfat" else 12)
        if spec.fstype == "ext4":
            sh("mkfs.ext4", "-q", "-F", "-L", f"root{number}", *spec.options, node)
        elif spec.fstype == "xfs":
            sh("mkfs.xfs", "-q", "-f", "-L", f"xfs{number}", node)
        elif spec.fstype == "btrfs":
            sh("mkfs.btrfs", "-q", "-f", "-L", f"btrfs{number}", node)
        elif spec.fstype == "ntfs":
            sh("mkntfs", "-Q", "-F", "-L", f"NTFS{number}", node)
        elif spec.fstype == "vfat":
            sh("mkfs.vfat", "-n", f"FAT{number}", node)
        elif spec.fstype == "exfat":  # this host cannot mount exfat: an empty one, checked by bytes and fsck
            sh("mkfs.exfat", "-L", f"EXFAT{number}", node)
        elif spec.fstype == "swap":
            sh("mkswap", "-L", f"swap{number}", node)
        elif spec.fstype in ("raw", "bios-boot"):
            rng = random.Random(number)
            with open(node, "r+b") as f:
                for off in range(0, spec.size_mib * MiB, 256 * 1024):
                    f.seek(off)
                    f.write(rng.randbytes(4096))  # sparse pattern: data blocks between zero runs
                f.flush()
                os.fsync(f.fileno())
        if spec.fstype in ("ext4", "xfs", "btrfs", "ntfs"):
            with mounted(node, spec.fstype) as mnt:
                sh("cp", "-a", f"{tree}/.", str(mnt))
            built.hashes[number] = tree_hashes(tree)
        elif spec.fstype == "vfat":
            fill_fat(node, tree)
            built.hashes[number] = tree_hashes(tree)
    sh("sync")
    # the kernel may have dropped the partitions when a tool closed the disk; put them back
    disk.refresh()
    return built


def install_boot_code(disk: LoopDisk, label: str, first_partition_start: int) -> bytes:
    """Write a recognisable boot-code pattern into the MBR and the gap before the first partition."""
    rng = random.Random(99)
    code = rng.randbytes(440)
    gap_start = 512 if label == "dos" else 34 * 512
    gap = rng.randbytes(first_partition_start * 512 - gap_start)
    with open(disk.path, "r+b") as f:
        f.seek(0)
        f.write(code)
        f.seek(gap_start)
        f.write(gap)
        f.flush()
        os.fsync(f.fileno())
    disk.refresh()
    return code + gap


def read_boot_regions(disk: LoopDisk, label: str, first_partition_start: int) -> bytes:
    gap_start = 512 if label == "dos" else 34 * 512
    with open(disk.path, "rb") as f:
        code = f.read(440)
        f.seek(gap_start)
        return code + f.read(first_partition_start * 512 - gap_start)


def sfdisk_dump(disk: LoopDisk) -> str:
    """The table as sfdisk prints it, without the device names (they differ between disks)."""
    out = sh("sfdisk", "-d", disk.path).stdout
    lines = []
    for line in out.splitlines():
        if line.startswith("device:"):
            continue
        lines.append(line.replace(disk.path, "DISK"))
    return "\n".join(lines)


def wipe(disk: LoopDisk) -> None:
    """Zero the disk's whole backing file (the restore must bring everything back)."""
    sh("wipefs", "-a", disk.path, check=False)
    size = disk.size()
    with open(disk.path, "r+b") as f:
        chunk = bytes(4 * MiB)
        for off in range(0, size, len(chunk)):
            f.write(chunk[: min(len(chunk), size - off)])
        f.flush()
        os.fsync(f.fileno())
    settle()
    sh("partx", "-d", disk.path, check=False)
    settle()


def partition_digest(disk: LoopDisk, number: int) -> str:
    """sha256 of a whole partition's bytes, read through the partition node."""
    disk.refresh()
    h = hashlib.sha256()
    with open(disk.node(number), "rb") as f:
        while block := f.read(4 * MiB):
            h.update(block)
    return h.hexdigest()
