"""Small, real images for unit tests: chunks and block maps stored in a real repository, no disk needed.

The image "office" (a GPT disk of 40 MiB):
  1  vfat  8 MiB   used blocks at 0 and 5 MiB
  2  ext4  16 MiB  used blocks in windows 0, 1 and 2 (the second run starts inside window 1)
  3  swap  4 MiB
  4  raw   4 MiB   one 64 KiB block
"""

from __future__ import annotations

import random

from lifeboat.fs.usedmap import encode_runs
from lifeboat.layout.model import DiskLayout, PartitionEntry
from lifeboat.repo.manifest import (
    CHUNK_SIZE,
    BlockMapRef,
    BootRegion,
    CaptureStats,
    ChunkRef,
    Compression,
    DataStream,
    FilesystemContent,
    ImageManifest,
    PartitionImage,
    RawContent,
    SourceDisk,
    SwapContent,
    write_manifest,
)
from lifeboat.repo.store import Repository

MiB = 1024 * 1024
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
SWAP = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"

# partition number -> (type, size in MiB, fstype, {offset: length} of its data)
OFFICE = {
    1: (ESP, 8, "vfat", {0: 4096, 5 * MiB: 8192}),
    2: (LINUX, 16, "ext4", {0: 65536, CHUNK_SIZE + 1024: 4096, 9 * MiB: 4096}),
    3: (SWAP, 4, "swap", {}),
    4: (LINUX, 4, "", {0: 65536}),
}


def data(number: int, offset: int, length: int) -> bytes:
    """The deterministic content of a run (compressible, like real data)."""
    rng = random.Random(number * 1_000_003 + offset)
    return bytes(rng.choice(b"lifeboat \n0123") for _ in range(length // 16)) * 16 + bytes(length % 16)


def gpt_layout(sizes: dict[int, tuple[str, int]], disk_mib: int) -> DiskLayout:
    parts, start = [], 2048
    for number, (type_, size_mib) in sorted(sizes.items()):
        parts.append(PartitionEntry(number, start, size_mib * 2048, type_, uuid=f"00000000-0000-4000-8000-{number:012d}"))
        start += size_mib * 2048
    sectors = disk_mib * 2048
    return DiskLayout("gpt", "11111111-2222-4333-8444-555555555555", 512, sectors, tuple(parts), 34, sectors - 34)


def store_stream(repo: Repository, number: int, runs: dict[int, int]) -> DataStream:
    """Store the runs' data window by window, as capture does. Runs must not cross a window edge."""
    by_window: dict[int, bytearray] = {}
    for offset, length in sorted(runs.items()):
        assert offset // CHUNK_SIZE == (offset + length - 1) // CHUNK_SIZE, "a test run crosses a window"
        by_window.setdefault(offset // CHUNK_SIZE, bytearray()).extend(data(number, offset, length))
    chunks = []
    for window, blob in sorted(by_window.items()):
        digest, _ = repo.put_chunk(bytes(blob), 3)
        chunks.append(ChunkRef(window, digest, len(blob)))
    blob = encode_runs(sorted(runs.items()))
    map_digest, _ = repo.put_chunk(blob, 3)
    return DataStream(BlockMapRef(map_digest, len(blob), len(runs)), tuple(chunks), sum(runs.values()))


def office_manifest(repo: Repository, name: str = "office") -> ImageManifest:
    layout = gpt_layout({n: (t, size) for n, (t, size, _, _) in OFFICE.items()}, 40)
    partitions = []
    for number, (_, size_mib, fstype, runs) in OFFICE.items():
        if fstype == "swap":
            content = SwapContent("5a5a5a5a-0000-4000-8000-000000000003", "swap")
        elif fstype:
            content = FilesystemContent(fstype, f"UUID-{number}", f"label{number}", store_stream(repo, number, runs))
        else:
            content = RawContent(store_stream(repo, number, runs), reason="content not recognised")
        partitions.append(PartitionImage(number, size_mib * MiB, content))
    mbr = bytes(range(256)) * 2
    gap = data(0, 34 * 512, (2048 - 34) * 512)
    regions = []
    for region, offset, blob in (("mbr", 0, mbr), ("post-mbr-gap", 34 * 512, gap)):
        regions.append(BootRegion(region, offset, len(blob), repo.put_chunk(blob, 3)[0]))
    return ImageManifest(
        name=name, created="2026-11-27T07:00:00+00:00", finished="2026-11-27T07:01:00+00:00", lifeboat_version="0.test",
        source=SourceDisk("/dev/sdz", 40 * MiB, "Office PC disk", "SER123"), layout=layout,
        boot_regions=tuple(regions), partitions=tuple(partitions), compression=Compression("zstd", 3),
        stats=CaptureStats(1, 2, 3),
    )


def office_image(repo: Repository, name: str = "office") -> ImageManifest:
    manifest = office_manifest(repo, name)
    write_manifest(repo, manifest)
    return manifest


FIXTURES = __import__("pathlib").Path(__file__).resolve().parent.parent / "fixtures"


def v1_repo(tmp_path) -> Repository:
    """A copy of the committed version-1 repository (tests/fixtures/v1-image, made by make_v1_image.py)."""
    import shutil

    shutil.copytree(FIXTURES / "v1-image" / "repo", tmp_path / "v1-repo")
    return Repository.open(tmp_path / "v1-repo")


def fake_target(monkeypatch, size: int, path: str = "/dev/sdt", unsafe: str = "", tools_missing: tuple = ()):
    """plan_restore sees a disk of `size` bytes at `path` (no real disk: planning only reads disk_info)."""
    from lifeboat.devices import Disk
    from lifeboat.engine import plan

    disk = Disk(path, path.rsplit("/", 1)[-1], size, model="Spare SSD", serial="T1", transport="sata",
                unsafe_reason=unsafe)
    monkeypatch.setattr(plan, "disk_info", lambda target: disk)
    monkeypatch.setattr(plan, "missing_tools", lambda tools: [t for t in tools if t in tools_missing])
    monkeypatch.setattr(plan, "_current_layout", lambda target: None)
    return disk
