#!/usr/bin/env python3
"""`make bench-volumes` (issue 11's performance figure): capturing a 20 GiB PV holding an LV with about 3 GB of
files, against capturing the same filesystem on a plain partition. Not part of `make test`.

This host has no device-mapper, so the capture runs inside the live ISO in one QEMU guest (TCG):
- LBPLAIN: a GPT disk whose one partition is a FS_GIB ext4 holding the files (about 2/3 random data in 1-64 MiB
  files, 1/3 a copy of the host's /usr/lib: real, partly compressible files). Built on the host with
  `mke2fs -d` and cached in /var/cache/lifeboat/bench (the guest gets it as a snapshot: never written).
- LBPV: a sparse 20 GiB disk; in the guest its one partition becomes a PV, the VG `benchvg` on it gets an LV
  `data` of FS_GIB, and the plain partition's filesystem is copied onto the LV by used blocks (`e2image -ra`)
  and given a UUID of its own: the same filesystem, byte for byte in its used blocks.
- LBREPO: an ext4 disk for the repositories; each capture goes into a fresh repository, removed afterwards.

The captures alternate (LV, plain, plain, LV for two rounds), each after the guest's page cache is dropped,
each timed in the guest: wall seconds and CPU seconds (user+sys of lifeboat and its children). Prints the
filesystem's used bytes (df, and the image's used_bytes), the repository's growth (du of the fresh
repository) and the times for each capture, the medians and the ratios LV/plain.

  make bench-volumes                        # the ISO of this checkout (make iso)
  LIFEBOAT_ISO=path bench/volbench.py --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "vm"))

from iso_helpers import BOOT_TIMEOUT, blank_disk, ready_pattern, shell, wait_for_all  # noqa: E402
from qemu import Drive, Machine  # noqa: E402

CACHE = Path(os.environ.get("LIFEBOAT_BENCH_CACHE", "/var/cache/lifeboat/bench"))
GIB, MIB = 1 << 30, 1 << 20
PV_GIB, FS_GIB = 20, 12
PV, PLAIN = "/dev/disk/by-id/virtio-LBPV", "/dev/disk/by-id/virtio-LBPLAIN"
LV = "/dev/benchvg/data"


@dataclass(frozen=True)
class Capture:
    kind: str  # "lv" or "plain"
    wall: float
    cpu: float  # in the guest: user+sys of lifeboat and its children (TCG: inflated when the host is loaded)
    qemu_cpu: float  # on the host: CPU seconds QEMU used meanwhile (the guest is otherwise idle)
    repo_bytes: int
    image_used: int
    data_wall: float  # of `wall`, the data stage (the volume's used blocks read, hashed, compressed, written)

    @property
    def fixed(self) -> float:
        """Wall seconds outside the data stage: the table, the LVM metadata, activation, the manifest."""
        return self.wall - self.data_wall


def data_stage_wall(log: str) -> float:
    """The data stage's wall seconds from the capture's "time per stage" line ("...; 220.0 s wall with")."""
    found = re.search(r"time per stage.*; ([\d.]+) s wall with", log)
    return float(found[1]) if found else 0.0


def _qemu_cpu(vm: Machine) -> float:
    """CPU seconds (user+sys) of the QEMU process so far, from /proc."""
    fields = open(f"/proc/{vm.proc.pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _version() -> str:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["version"]


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL, capture_output=True)


def _content(where: Path, random_mib: int, usr_mib: int) -> None:
    """About random_mib of random files (1-64 MiB each, a fixed sequence of sizes) and usr_mib of /usr/lib."""
    sizes, total, i = [1, 3, 8, 17, 32, 64], 0, 0
    (where / "random").mkdir(parents=True)
    while total < random_mib:
        size = min(sizes[i % len(sizes)], random_mib - total)
        with open(where / "random" / f"r{i:04d}.bin", "wb") as f:
            f.write(os.urandom(size * MIB))
        total, i = total + size, i + 1
    copied, dest = 0, where / "usr"
    for path in sorted(Path("/usr/lib").rglob("*")):
        if copied >= usr_mib * MIB:
            break
        if path.is_file() and not path.is_symlink():
            target = dest / path.relative_to("/usr/lib")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            copied += path.stat().st_size


def plain_disk(random_mib: int, usr_mib: int) -> Path:
    """The cached LBPLAIN disk: GPT, one partition of FS_GIB from 1 MiB holding the ext4 with the files."""
    disk = CACHE / f"volbench-plain-{FS_GIB}g-{random_mib}r-{usr_mib}u.img"
    if disk.exists():
        return disk
    CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="volbench-") as tmp:
        content, part = Path(tmp) / "content", Path(tmp) / "disk.img"
        print(f"building {disk.name}: {random_mib} MiB random, {usr_mib} MiB of /usr/lib", flush=True)
        _content(content, random_mib, usr_mib)
        blank_disk(part, FS_GIB * 1024 + 2)
        _run(["sgdisk", "-n", f"1:2048:+{FS_GIB}G", "-t", "1:8300", str(part)])
        _run(["mkfs.ext4", "-q", "-F", "-L", "lbbench", "-E", f"offset={MIB}", "-d", str(content),
              str(part), f"{FS_GIB}G"])
        os.replace(part, disk)
    return disk


def _ok(vm: Machine, command: str, timeout: float = 1800) -> str:
    rc, out = shell(vm, command, timeout)
    if rc != 0:
        raise RuntimeError(f"{command}\n-> rc {rc}:\n{out}")
    return out


def _prepare(vm: Machine) -> int:
    """The PV, VG and LV in the guest, the files copied onto the LV by used blocks; the fs's used bytes."""
    _ok(vm, f"sgdisk -n 1:2048:0 -t 1:8e00 {PV} >/dev/null && partx -u {PV} && udevadm settle"
            f" && pvcreate -q {PV}-part1 && vgcreate -q benchvg {PV}-part1"
            f" && lvcreate -q -y -n data -L {FS_GIB}G benchvg")
    started = time.monotonic()
    _ok(vm, f"e2image -ra {PLAIN}-part1 {LV} && e2fsck -fy {LV} >/dev/null; tune2fs -U random {LV} >/dev/null")
    print(f"LV filled by used blocks in {time.monotonic() - started:.0f} s", flush=True)
    used = {}
    for name, node in (("lv", LV), ("plain", f"{PLAIN}-part1")):
        out = _ok(vm, f"mkdir -p /mnt/fs && mount -o ro {node} /mnt/fs && df -B1 --output=used /mnt/fs | tail -1"
                      " && umount /mnt/fs")
        used[name] = int(out.split()[-1])
    print(f"filesystem used bytes (df): LV {used['lv']}, plain {used['plain']}", flush=True)
    _ok(vm, "vgchange -an benchvg >/dev/null && mkdir -p /mnt/repo && mount LABEL=LBREPO /mnt/repo")
    return used["lv"]


def _capture(vm: Machine, kind: str, n: int) -> Capture:
    disk, repo = (PV if kind == "lv" else PLAIN), f"/mnt/repo/{kind}{n}"
    _ok(vm, "sync; echo 3 >/proc/sys/vm/drop_caches")
    qemu_before = _qemu_cpu(vm)
    out = _ok(vm, f"TIMEFORMAT='TIMES %R %U %S'; time lifeboat capture {disk} {kind}{n} --repo {repo}"
                  f" >/tmp/{kind}{n}.log 2>&1; rc=$?;"
                  f" grep -v '%' /tmp/{kind}{n}.log | grep -v '^+ ' | tail -12; (exit $rc)")
    qemu_cpu = _qemu_cpu(vm) - qemu_before
    out += _ok(vm, f"sync; du -sb {repo}")
    m = re.search(r"TIMES ([\d.]+) ([\d.]+) ([\d.]+)", out)
    grown = re.search(r"^(\d+)\s+" + re.escape(repo), out, re.M)
    assert m and grown, out
    listing = _ok(vm, f"lifeboat images --repo {repo} --json")
    image = json.loads(listing[listing.index("["):])[0]
    used = _image_used(image)
    _ok(vm, f"rm -rf {repo}")
    cap = Capture(kind, float(m[1]), float(m[2]) + float(m[3]), qemu_cpu, int(grown[1]), used, data_stage_wall(out))
    print(f"{kind:5} #{n}: {cap.wall:7.1f} s wall, {cap.cpu:7.1f} s CPU in the guest, {cap.qemu_cpu:7.1f} s QEMU CPU,"
          f" repository +{cap.repo_bytes / MIB:8.1f} MiB,"
          f" image used_bytes {cap.image_used / MIB:8.1f} MiB, outside the data stage {cap.fixed:5.1f} s\n{out}",
          flush=True)
    return cap


def _image_used(image: dict) -> int:
    """The used bytes the image records: its partitions' and its logical volumes' (JSON of `images --json`)."""
    total = sum(int(p.get("used_bytes") or 0) for p in image.get("partitions", []))
    for group in image.get("volume_groups", []):
        total += sum(int(lv.get("used_bytes") or 0) for lv in group.get("lvs", []))
    return total


def _report(caps: list[Capture], fs_used: int) -> None:
    med = {k: {f: statistics.median(getattr(c, f) for c in caps if c.kind == k)
               for f in ("wall", "cpu", "qemu_cpu", "repo_bytes", "image_used", "fixed")} for k in ("lv", "plain")}
    print(f"\nfilesystem used (df): {fs_used / MIB:.1f} MiB = {fs_used / 1e9:.2f} GB")
    for k in ("lv", "plain"):
        m = med[k]
        print(f"{k:5} median: {m['wall']:.1f} s wall, {m['cpu']:.1f} s guest CPU, {m['qemu_cpu']:.1f} s QEMU CPU,"
              f" repository +{m['repo_bytes'] / MIB:.1f} MiB"
              f" ({m['repo_bytes'] / fs_used:.2f} x the fs's used bytes), image used_bytes {m['image_used'] / MIB:.1f} MiB,"
              f" {m['fixed']:.1f} s outside the data stage")
    lv, plain = med["lv"], med["plain"]
    print(f"ratios LV/plain: wall {lv['wall'] / plain['wall']:.2f}, guest CPU {lv['cpu'] / plain['cpu']:.2f},"
          f" QEMU CPU {lv['qemu_cpu'] / plain['qemu_cpu']:.2f},"
          f" repository growth {lv['repo_bytes'] / plain['repo_bytes']:.3f}")
    print(f"host load at the end: {os.getloadavg()}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=2, help="pairs of captures (LV then plain, then reversed)")
    ap.add_argument("--random-mib", type=int, default=2048)
    ap.add_argument("--usr-mib", type=int, default=1024)
    ap.add_argument("--cpus", type=int, default=1)
    ap.add_argument("--memory", type=int, default=2048)
    args = ap.parse_args()
    iso = Path(os.environ.get("LIFEBOAT_ISO") or ROOT / "out" / f"lifeboat-{_version()}-amd64.hybrid.iso")
    if not iso.exists():
        sys.exit(f"{iso}: no ISO; run `make iso` first")
    plain = plain_disk(args.random_mib, args.usr_mib)
    with tempfile.TemporaryDirectory(dir="/var/tmp", prefix="volbench-") as tmp:
        work = Path(tmp)
        repo = blank_disk(work / "repo.img", 24 * 1024)
        _run(["mkfs.ext4", "-q", "-F", "-L", "LBREPO", str(repo)])
        drives = [Drive(iso, "sata", media="cdrom", bootindex=0),
                  Drive(plain, "virtio", serial="LBPLAIN", snapshot=True),
                  Drive(blank_disk(work / "pv.img", PV_GIB * 1024), "virtio", serial="LBPV"),
                  Drive(repo, "virtio", serial="LBREPO")]
        vm = Machine(drives, workdir=work, memory=args.memory, cpus=args.cpus, name="volbench")
        try:
            vm.start()
            wait_for_all(vm, [ready_pattern(_version(), "ttyS0", "shell")], BOOT_TIMEOUT)
            time.sleep(2)
            fs_used = _prepare(vm)
            caps = []
            for r in range(args.rounds):
                for kind in (("lv", "plain") if r % 2 == 0 else ("plain", "lv")):
                    caps.append(_capture(vm, kind, r))
            _ok(vm, "umount /mnt/repo")
        finally:
            vm.stop()
            shutil.copyfile(vm.serial_log, "/var/tmp/volbench-serial.log")
            print("the guest's serial log: /var/tmp/volbench-serial.log")
        _report(caps, fs_used)
    return 0


if __name__ == "__main__":
    sys.exit(main())
