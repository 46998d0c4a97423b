"""The Clonezilla directory as a read-only repository, without root: a directory laid out as ocs-sr
lays it out, holding a real partclone image (Debian's partclone.ext4 of a `mkfs.ext4 -d` file),
read the way restore and verify read it: windows in order from several threads, again from the
start, after damage."""

from __future__ import annotations

import os
import random
import subprocess
import threading

import pytest

from lifeboat.errors import ImageCorrupt, RepositoryError
from lifeboat.foreign.czrepo import ClonezillaRepository
from lifeboat.fs.usedmap import decode_runs
from lifeboat.repo.manifest import ImageManifest
from lifeboat.repo.store import Repository

SF = """label: dos
label-id: 0x12345678
device: /dev/sda
unit: sectors
sector-size: 512

/dev/sda1 : start=        2048, size=       81920, type=83
"""


@pytest.fixture(scope="module")
def fs_and_image(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("czrepo")
    src = tmp / "src"
    src.mkdir()
    rng = random.Random(5)
    for i in range(12):
        (src / f"f{i}").write_bytes(rng.randbytes(900_000))
    fs = tmp / "fs.img"
    with open(fs, "wb") as f:
        f.truncate(40 * 1024 * 1024)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-b", "4096", "-d", str(src), str(fs)], check=True)
    image = tmp / "sda1.pcl"
    subprocess.run(["partclone.ext4", "-c", "-s", str(fs), "-o", str(image), "-L", str(tmp / "log")],
                   check=True, capture_output=True)
    return fs.read_bytes(), image.read_bytes()


def make_dir(root, partclone_image: bytes):
    d = root / "2026-11-27-img"
    d.mkdir(parents=True)
    (d / "disk").write_text("sda\n")
    (d / "parts").write_text("sda1\n")
    (d / "clonezilla-img").write_text("This image was saved by Clonezilla at 2026-11-27 07:00:00 UTC.\n")
    (d / "sda-pt.sf").write_text(SF)
    (d / "sda-pt.parted").write_text("Disk /dev/sda: 102400s\n")
    (d / "sda-mbr").write_bytes(bytes(range(256)) * 2)
    packed = subprocess.run(["zstd", "-q", "-c"], input=partclone_image, capture_output=True, check=True).stdout
    subprocess.run(["split", "-a", "2", "-b", "100000", "-", str(d / "sda1.ext4-ptcl-img.zst.")], input=packed,
                   check=True)
    return d


def expected(fs: bytes, repo: ClonezillaRepository, name: str) -> dict[str, bytes]:
    stream = repo.manifest(name).partition(1).stream
    runs = decode_runs(repo.get_chunk(stream.map.digest, stream.map.length))
    out = {}
    for ref in stream.chunks:
        lo, hi = ref.offset, ref.offset + 4 * 1024 * 1024
        out[ref.digest] = b"".join(fs[max(s, lo):min(s + n, hi)] for s, n in runs if s < hi and s + n > lo)
    return out


def test_opened_by_repository_open_and_read_like_a_repository(fs_and_image, tmp_path):
    fs, image = fs_and_image
    d = make_dir(tmp_path, image)
    repo = Repository.open(tmp_path)
    assert isinstance(repo, ClonezillaRepository) and repo.image_names() == [d.name]
    manifest = ImageManifest.from_json(repo.read_manifest(d.name), d.name)  # the full load-time check
    assert manifest.origin.tool == "clonezilla" and manifest.layout.disk_id == "0x12345678"
    assert repo.get_chunk(manifest.boot_regions[0].digest, 512) == bytes(range(256)) * 2
    want = expected(fs, repo, d.name)
    refs = manifest.partition(1).stream.chunks
    assert len(refs) >= 3
    assert [repo.get_chunk(r.digest, r.length) for r in refs] == [want[r.digest] for r in refs]
    # again from the start (a verify after a restore), and from a fresh instance (restore reopens it)
    assert repo.get_chunk(refs[0].digest, refs[0].length) == want[refs[0].digest]
    fresh = ClonezillaRepository(tmp_path)
    assert fresh.get_chunk(refs[-1].digest, refs[-1].length) == want[refs[-1].digest]


def test_several_threads_in_near_order(fs_and_image, tmp_path):
    fs, image = fs_and_image
    d = make_dir(tmp_path, image)
    repo = ClonezillaRepository(tmp_path)
    refs = repo.manifest(d.name).partition(1).stream.chunks
    want = expected(fs, repo, d.name)
    got: dict[str, bytes] = {}
    order = list(refs)
    for i in range(0, len(order) - 1, 2):  # pairs swapped, as a pool's workers take them
        order[i], order[i + 1] = order[i + 1], order[i]

    def read(ref):
        got[ref.digest] = repo.get_chunk(ref.digest, ref.length)

    threads = [threading.Thread(target=read, args=(r,)) for r in order]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads), "a reader is stuck"
    assert got == want


def test_damage_is_reported_once_then_windows_after_it_are_refused(fs_and_image, tmp_path):
    fs, image = fs_and_image
    damaged = bytearray(image)
    damaged[len(damaged) * 2 // 3] ^= 0x10
    d = make_dir(tmp_path, bytes(damaged))
    repo = ClonezillaRepository(tmp_path)
    refs = repo.manifest(d.name).partition(1).stream.chunks
    messages = []
    for ref in refs:
        try:
            repo.get_chunk(ref.digest, ref.length)
        except ImageCorrupt as exc:
            messages.append(str(exc))
    assert messages and "checksum mismatch in used blocks" in messages[0] and "partition 1 (sda1)" in messages[0]
    assert all("lies after the damage" in m for m in messages[1:])


def test_read_only(fs_and_image, tmp_path):
    _, image = fs_and_image
    make_dir(tmp_path, image)
    repo = ClonezillaRepository(tmp_path)
    with pytest.raises(RepositoryError, match="Clonezilla images and is read-only"):
        repo.put_chunk(b"x", 3)
    with pytest.raises(RepositoryError, match="read-only"):
        repo.write_manifest("x", {})
    assert os.listdir(tmp_path) == ["2026-11-27-img"]
