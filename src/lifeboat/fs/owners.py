"""Which files own the unreadable bytes of a partition, asked of each filesystem's own tools.

ext2/3/4: debugfs icheck (block -> inode) and ncheck (inode -> path); xfs: xfs_db blockuse; ntfs:
ntfscluster; btrfs: dump-tree's chunk map (device offset -> logical address) and inspect-internal
logical-resolve on a read-only mount. Bytes no file owns are the filesystem's metadata (or free space
inside the copied edges): the summary says so instead of naming a file.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
from dataclasses import dataclass

from lifeboat.errors import LifeboatError
from lifeboat.mounts import mounted
from lifeboat.run import missing_tools, run

Ranges = list[tuple[int, int]]
MAX_BLOCKS = 200_000  # asking about more blocks than this takes longer than it is worth
METADATA = "filesystem metadata"


@dataclass(frozen=True)
class Owners:
    files: tuple[str, ...]
    note: str = ""  # "filesystem metadata (3 blocks)", or why the files could not be named


def owners_of(fstype: str, node: str, ranges: Ranges) -> Owners:
    finder = {"ext2": _ext, "ext3": _ext, "ext4": _ext, "xfs": _xfs, "ntfs": _ntfs, "btrfs": _btrfs}.get(fstype)
    if finder is None:
        return Owners((), f"{fstype or 'raw'} content: files cannot be named")
    try:
        found = finder(node, ranges)
        return Owners(tuple(sorted({"/" + f.lstrip("/") for f in found.files})), found.note)
    except LifeboatError as exc:
        return Owners((), f"files could not be named ({exc})")


def _blocks(ranges: Ranges, block_size: int) -> list[int]:
    out: list[int] = []
    for start, n in ranges:
        out += range(start // block_size, (start + n - 1) // block_size + 1)
        if len(out) > MAX_BLOCKS:
            raise LifeboatError(f"more than {MAX_BLOCKS} blocks are unreadable")
    return sorted(set(out))


def _debugfs(node: str, commands: list[str]) -> str:
    with tempfile.NamedTemporaryFile("w", prefix="lifeboat-debugfs-", suffix=".cmd") as f:
        f.write("\n".join(commands) + "\n")
        f.flush()
        return run(["debugfs", "-f", f.name, node], timeout=600).stdout


def _ext(node: str, ranges: Ranges) -> Owners:
    stats = run(["debugfs", "-R", "stats", node], timeout=120).stdout
    found = re.search(r"^Block size:\s+(\d+)", stats, re.M)
    if not found:
        raise LifeboatError("debugfs did not report the block size")
    blocks = _blocks(ranges, int(found.group(1)))
    inodes: dict[int, int] = {}  # inode -> blocks
    unowned = 0
    for line in _debugfs(node, ["icheck " + " ".join(map(str, blocks))]).splitlines():
        fields = line.split("\t")
        if len(fields) != 2 or not fields[0].strip().isdigit():
            continue
        if fields[1].strip().isdigit():
            inode = int(fields[1])
            inodes[inode] = inodes.get(inode, 0) + 1
        else:
            unowned += 1
    names: set[str] = set()
    special = sum(n for i, n in inodes.items() if i < 11)  # the journal, resize inode...: metadata
    wanted = [i for i in inodes if i >= 11]
    if wanted:
        for line in _debugfs(node, ["ncheck -c " + " ".join(map(str, wanted))]).splitlines():
            fields = line.split("\t")
            if len(fields) == 2 and fields[0].strip().isdigit():
                names.add(fields[1].strip())
    metadata = unowned + special
    return Owners(tuple(sorted(names)), f"{METADATA} ({metadata} blocks)" if metadata else "")


def _xfs(node: str, ranges: Ranges) -> Owners:
    commands = ["-c", "blockget -n"]
    for start, n in ranges:
        commands += ["-c", f"daddr {start // 512}", "-c", f"blockuse -n -c {max(1, n // 512)}"]
    out = run(["xfs_db", "-r", *commands, node], timeout=600).stdout
    names, metadata = set(), 0
    for line in out.splitlines():
        found = re.search(r"type (\w+)(?: inode \d+ (\S.*))?", line)
        if not found:
            continue
        if found.group(2):
            names.add(found.group(2).strip())
        elif found.group(1) != "free1":
            metadata += 1
    return Owners(tuple(sorted(names)), f"{METADATA} ({metadata} blocks)" if metadata else "")


def _ntfs(node: str, ranges: Ranges) -> Owners:
    names, metadata = set(), False
    for start, n in ranges:
        out = run(["ntfscluster", "-f", "-s", f"{start // 512}-{(start + n - 1) // 512}", node],
                  check=False, timeout=600).stdout
        for line in out.splitlines():
            found = re.match(r"Inode (\d+) (/\S.*?)(/\$\w+)?$", line.strip())
            if not found:
                continue
            path = found.group(2)
            if int(found.group(1)) < 24 or path.startswith("/$"):
                metadata = True
            else:
                names.add(path)
    return Owners(tuple(sorted(names)), METADATA if metadata else "")


def _btrfs(node: str, ranges: Ranges) -> Owners:
    chunks = _btrfs_chunks(node)
    logical = []
    for start, n in ranges:
        for phys in range(start - start % 4096, start + n, 4096):
            for log_start, phys_start, length, kind in chunks:
                if phys_start <= phys < phys_start + length:
                    logical.append((log_start + phys - phys_start, kind))
    names, metadata = set(), any(kind != "DATA" for _, kind in logical)
    data = [addr for addr, kind in logical if kind == "DATA"]
    if data:
        with _mounted_ro(node) as mnt:
            for addr in data:
                out = run(["btrfs", "inspect-internal", "logical-resolve", str(addr), mnt], check=False).stdout
                names.update(line.strip()[len(mnt):] or "/" for line in out.splitlines() if line.startswith(mnt))
    unmapped = not logical and bool(ranges)
    return Owners(tuple(sorted(names)), METADATA if metadata or unmapped else "")


def _btrfs_chunks(node: str) -> list[tuple[int, int, int, str]]:
    """(logical start, device offset, length, DATA|METADATA|SYSTEM) of every stripe on this device."""
    out = run(["btrfs", "inspect-internal", "dump-tree", "-t", "chunk", node], timeout=120).stdout
    chunks = []
    for item in re.finditer(r"CHUNK_ITEM (\d+)\) itemoff \d+ itemsize \d+\s+length (\d+) owner \d+ "
                            r"stripe_len \d+ type (\w+)(.*?)(?=\n\s*item |\Z)", out, re.S):
        logical, length, kind = int(item.group(1)), int(item.group(2)), item.group(3).split("|")[0]
        for stripe in re.finditer(r"stripe \d+ devid \d+ offset (\d+)", item.group(4)):
            chunks.append((logical, int(stripe.group(1)), length, kind))
    return chunks


def _mounted_ro(node: str) -> contextlib.AbstractContextManager[str]:
    if missing_tools(["mount", "umount"]):
        raise LifeboatError("mount is not installed")
    return mounted(node, fstype="btrfs", options="ro,norecovery", prefix="lifeboat-owners-", timeout=120)
