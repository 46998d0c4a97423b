"""Volumes inside partitions (issue 11), detection part, on a real loop disk: a synthetic BitLocker
partition (its -FVE-FS- boot sector + random data), a real LUKS2 container (cryptsetup luksFormat works
on this host without device-mapper), a real LVM PV + VG (pvcreate/vgcreate write metadata without
device-mapper) and a synthetic MD 1.2 superblock (mdadm --create needs the md driver, which this host
lacks). Each is captured whole with its reason, shown in the plan and `lifeboat images`, and restored
byte for byte."""

from __future__ import annotations

import json
import os
import random
import struct
import subprocess
import sys

import pytest
from diskbuilder import MiB, loop_disk, partition_digest, sh

from lifeboat.engine.capture import capture
from lifeboat.engine.plan import plan_restore
from lifeboat.engine.restore import restore
from lifeboat.fs.volumes import BITLOCKER_SIGNATURE, MD_MAGIC
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration


def _write(node: str, offset: int, data: bytes) -> None:
    with open(node, "r+b") as f:
        f.seek(offset)
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def test_encrypted_and_volume_partitions_copied_whole_with_reasons(workdir, lifeboat_env):
    with loop_disk(workdir, "vols", 120 * MiB) as src, loop_disk(workdir, "back", 120 * MiB) as dst:
        sh("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", src.path,
           input="label: gpt\n\nsize=16MiB, type=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7\nsize=24MiB, type=L\n"
                 "size=24MiB, type=E6D6D379-F507-44C2-A23C-238F2A3DF928\nsize=16MiB, type=R\n")
        src.refresh()
        rng = random.Random(11)
        _write(src.node(1), 0, b"\xeb\x58\x90" + BITLOCKER_SIGNATURE + rng.randbytes(501))
        _write(src.node(1), 1 * MiB, rng.randbytes(2 * MiB))
        key = workdir / "key"
        key.write_bytes(b"not a real secret")
        sh("cryptsetup", "luksFormat", "--type", "luks2", "-q", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000",
           "--label", "cryptroot", "--key-file", str(key), src.node(2))
        luks_uuid = sh("cryptsetup", "luksUUID", src.node(2)).stdout.strip()
        vg = f"lbtest{os.getpid()}"
        sh("pvcreate", "-q", "--devices", src.node(3), src.node(3))
        sh("vgcreate", "-q", "--autobackup", "n", "--devices", src.node(3), vg, src.node(3))
        md = bytearray(4096)
        struct.pack_into("<III", md, 0, MD_MAGIC, 1, 0)
        md[16:32], md[32:38] = bytes(range(16)), b"nas:md"
        struct.pack_into("<i", md, 72, 1)
        _write(src.node(4), 4096, bytes(md))
        _write(src.node(4), 2 * MiB, rng.randbytes(MiB))
        sh("sync")
        src.refresh()
        before = {n: partition_digest(src, n) for n in (1, 2, 3, 4)}

        disks = subprocess.run([sys.executable, "-m", "lifeboat", "disks", "--loop", "--json"],
                               capture_output=True, text=True, env=dict(os.environ))
        shown = next(d for d in json.loads(disks.stdout) if d["path"] == src.path)
        assert shown["sector_size"] == 512
        assert shown["volumes"][src.node(2)].startswith(f"LUKS2 container (aes-xts-plain64, UUID {luks_uuid}")
        assert shown["volumes"][src.node(3)].endswith(f"of volume group {vg}")
        repo = Repository.open(workdir / "repo", create=True)
        manifest = capture(src.path, "vols", repo)
        reasons = {p.number: p.content.reason for p in manifest.partitions}
        assert str(manifest.partitions[0].mode) == "raw"
        assert reasons[1].startswith("BitLocker volume (signature -FVE-FS-): copied whole while locked; "
                                     "Windows may ask for the recovery key")
        assert reasons[2] == (f"LUKS2 container (aes-xts-plain64, UUID {luks_uuid}, label 'cryptroot'), "
                              "copied whole (24.0 MiB): encrypted data does not compress; give its passphrase "
                              "(--luks-passphrase-file) to image its contents by used blocks")
        assert f"of volume group {vg}, copied whole" in reasons[3]
        assert reasons[4] == ("MD RAID member (metadata 1.2, raid1) of array nas:md: copied whole, "
                              "superblock included")

        plan = plan_restore(repo, "vols", dst.path)
        text = "\n".join(plan.describe())
        assert f"{reasons[2]} (24.0 MiB)" in text or f"{reasons[2]} (24 MiB)" in text, text
        assert all(r in text for r in reasons.values())
        images = subprocess.run([sys.executable, "-m", "lifeboat", "images", "--repo", str(repo.root), "--json"],
                                capture_output=True, text=True, env=dict(os.environ))
        notes = {p["number"]: p["note"] for p in json.loads(images.stdout)[0]["partitions"]}
        assert notes == reasons

        restore(plan, bootloader=False)
        dst.refresh()
        assert {n: partition_digest(dst, n) for n in (1, 2, 3, 4)} == before
        assert sh("cryptsetup", "luksUUID", dst.node(2)).stdout.strip() == luks_uuid
