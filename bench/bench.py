#!/usr/bin/env python3
"""`make bench`: Lifeboat against Clonezilla's pipeline, on the same data, in one run.

Data: an 8 GiB ext4 partition holding a copy of /usr/lib and /usr/share (about 4.5-5 GB), built
once and cached in /var/cache/lifeboat/bench. Every timed step starts with a cold page cache.

  reference capture  partclone.ext4 -c | zstd -T0 -3
  lifeboat capture   lifeboat capture DISK NAME --repo R          (a fresh repository: no dedup help)
  reference restore  zstd -dc | partclone.ext4 -r ; sync
  lifeboat restore   lifeboat restore NAME DISK --yes --no-bootloader (includes the table and a sync)

Prints times, the ratio lifeboat/reference (targets: <= 0.5), image sizes (target: <= 1.05 x) and
Lifeboat's peak memory (target: < 1 GiB). Absolute seconds drift on shared machines; ratios less.

Clonezilla images (issue 12): the reference image is what Clonezilla's `partclone | zstdmt -3` writes;
it is laid out as a Clonezilla image directory (disk, parts, -pt.sf, -pt.parted, -mbr) and
  lifeboat restore    from that directory                  vs the reference restore (target <= 0.6)
  lifeboat import     of that directory into a fresh repository vs lifeboat capture (target <= 1.0)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

CACHE = Path(os.environ.get("LIFEBOAT_BENCH_CACHE", "/var/cache/lifeboat/bench"))
WORK = Path(os.environ.get("LIFEBOAT_BENCH_WORK", "/var/tmp/lifeboat-bench"))
DISK_SIZE = 8 * 1024**3 + 64 * 1024**2  # an 8 GiB partition plus room for the table
SOURCES = ("/usr/lib", "/usr/share")
LIFEBOAT = [sys.executable, "-m", "lifeboat"]
CPU_SECONDS: list[float] = []  # user+system seconds of each timed() step, in order


def sh(*argv: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), check=True, text=True, capture_output=True, **kw)


def settle_partitions(disk: str) -> str:
    sh("udevadm", "settle", "--timeout=20")
    subprocess.run(["partx", "-u", disk], capture_output=True)
    subprocess.run(["partx", "-a", disk], capture_output=True)
    sh("udevadm", "settle", "--timeout=20")
    return f"{disk}p1"


def drop_caches() -> None:
    os.sync()
    Path("/proc/sys/vm/drop_caches").write_text("3\n")


def attach(image: Path) -> str:
    return sh("losetup", "--find", "--show", "--partscan", str(image)).stdout.strip()


def build_source(image: Path) -> None:
    """The benchmark disk: GPT, one 8 GiB ext4 partition, a copy of /usr/lib and /usr/share."""
    print(f"building the benchmark disk {image} (once; cached)...", flush=True)
    tmp = image.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(DISK_SIZE)
    sh("sfdisk", "--quiet", str(tmp), input="label: gpt\nsize=8GiB, type=L, name=bench\n")
    disk = attach(tmp)
    try:
        part = settle_partitions(disk)
        sh("mkfs.ext4", "-q", "-F", "-L", "bench", part)
        mnt = WORK / "mnt"
        mnt.mkdir(parents=True, exist_ok=True)
        sh("mount", part, str(mnt))
        try:
            for src in SOURCES:
                subprocess.run(["cp", "-a", src, str(mnt / src.strip("/").replace("/", "-"))], check=False)
        finally:
            sh("umount", str(mnt))
    finally:
        subprocess.run(["losetup", "-d", disk])
    tmp.rename(image)


def timed(argv: list[str] | str, shell: bool = False) -> tuple[float, int]:
    """Wall seconds (cold cache, synced) and the peak RSS in bytes of `argv` itself (via GNU time)."""
    drop_caches()
    if not shell:
        argv = ["/usr/bin/time", "-f", "PEAK_KB=%M\nCPU_S=%U %S", *argv]
    start = time.monotonic()
    proc = subprocess.run(argv, shell=shell, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True, executable="/bin/bash" if shell else None)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed: {argv}\n{proc.stderr[-2000:]}")
    os.sync()
    seconds = time.monotonic() - start
    peak = [line for line in proc.stderr.splitlines() if line.startswith("PEAK_KB=")]
    cpu = [line for line in proc.stderr.splitlines() if line.startswith("CPU_S=")]
    CPU_SECONDS.append(sum(map(float, cpu[-1][6:].split())) if cpu else 0.0)  # user + system, less noisy than wall
    return seconds, int(peak[-1].split("=")[1]) * 1024 if peak else 0


def clonezilla_dir(root: Path, disk: str, ref_image: Path) -> str:
    """The reference image as one image of a Clonezilla image directory (what `ocs-sr savedisk` writes
    for this disk with -z9p, minus the logs); returns the image's name."""
    name, dev = "bench-clonezilla", os.path.basename(disk)
    image = root / name
    image.mkdir(parents=True)
    (image / "disk").write_text(f"{dev}\n")
    (image / "parts").write_text(f"{dev}p1\n")
    (image / "clonezilla-img").write_text(f"This image was saved by Clonezilla at {time.strftime('%Y-%m-%d %H:%M:%S')} UTC.\n")
    (image / f"{dev}-pt.sf").write_text(sh("sfdisk", "-d", disk).stdout)
    (image / f"{dev}-pt.parted").write_text(sh("parted", "-s", disk, "unit", "s", "print").stdout)
    with open(disk, "rb") as f:
        (image / f"{dev}-mbr").write_bytes(f.read(512))
    os.link(ref_image, image / f"{dev}p1.ext4-ptcl-img.zst")
    return name


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--no-network", action="store_true", help="skip the encryption, S3 and HTTPS lines")
    parser.add_argument("--lifeboat-only", action="store_true", help="skip the reference (partclone | zstd) steps")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("the benchmark needs root (loop devices, drop_caches)", file=sys.stderr)
        return 2
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    source_image = CACHE / "ext4-8g.img"
    if not source_image.exists():
        build_source(source_image)
    target_image = WORK / "target.img"
    with open(target_image, "wb") as f:
        f.truncate(DISK_SIZE)
    src = attach(source_image)
    dst = attach(target_image)
    figures: dict[str, float] = {}
    try:
        src_part = settle_partitions(src)
        ref_image = WORK / "reference.pcl.zst"
        if not args.lifeboat_only:
            figures["ref_capture_s"], _ = timed(f"partclone.ext4 -c -s {src_part} -o - -q | zstd -T0 -3 -q -o {ref_image}", shell=True)
            figures["ref_image_bytes"] = ref_image.stat().st_size
        repo = WORK / "repo"
        figures["lb_capture_s"], figures["lb_capture_peak_rss"] = timed(LIFEBOAT + ["capture", src, "bench", "--repo", str(repo)])
        figures["lb_capture_cpu_s"] = CPU_SECONDS[-1]
        figures["lb_image_bytes"] = dir_size(repo / "chunks")

        # reference restore onto the same layout: copy the table, then partclone onto the partition
        sh("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", dst, input=sh("sfdisk", "-d", src).stdout)
        dst_part = settle_partitions(dst)
        if not args.lifeboat_only:
            figures["ref_restore_s"], _ = timed(f"zstd -dc {ref_image} | partclone.ext4 -r -s - -o {dst_part} -q", shell=True)
        sh("wipefs", "-a", dst)
        figures["lb_restore_s"], figures["lb_restore_peak_rss"] = timed(
            LIFEBOAT + ["restore", "bench", dst, "--repo", str(repo), "--yes", "--no-bootloader"])
        check = subprocess.run(["e2fsck", "-f", "-n", settle_partitions(dst)], capture_output=True, text=True)
        figures["restored_fsck_ok"] = check.returncode == 0

        partimag = WORK / "partimag"
        cz = clonezilla_dir(partimag, src, ref_image)
        sh("wipefs", "-a", dst)
        figures["cz_restore_s"], _ = timed(LIFEBOAT + ["restore", cz, dst, "--repo", str(partimag), "--yes",
                                                       "--no-bootloader"])
        check = subprocess.run(["e2fsck", "-f", "-n", settle_partitions(dst)], capture_output=True, text=True)
        figures["cz_restored_fsck_ok"] = check.returncode == 0
        figures["cz_import_s"], _ = timed(LIFEBOAT + ["import", str(partimag / cz), "cz", "--repo",
                                                      str(WORK / "repo-import")])
        if not args.no_network:
            import netbench

            netbench.run(WORK, src, dst, repo, LIFEBOAT, timed, sh, figures, CPU_SECONDS)
    finally:
        for disk in (src, dst):
            subprocess.run(["udevadm", "settle"], capture_output=True)
            subprocess.run(["losetup", "-d", disk])
    if not args.lifeboat_only:
        report(figures)
    if not args.no_network:
        import netbench

        netbench.report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


def report(f: dict) -> None:
    gb = 1e9
    print()
    print(f"{'step':<10} {'reference':>11} {'lifeboat':>10} {'ratio':>7}  target")
    cap = f["lb_capture_s"] / f["ref_capture_s"]
    res = f["lb_restore_s"] / f["ref_restore_s"]
    size = f["lb_image_bytes"] / f["ref_image_bytes"]
    print(f"{'capture':<10} {f['ref_capture_s']:>10.1f}s {f['lb_capture_s']:>9.1f}s {cap:>7.2f}  <= 0.50 {'OK' if cap <= 0.5 else 'MISSED'}")
    print(f"{'restore':<10} {f['ref_restore_s']:>10.1f}s {f['lb_restore_s']:>9.1f}s {res:>7.2f}  <= 0.50 {'OK' if res <= 0.5 else 'MISSED'}")
    print(f"{'image':<10} {f['ref_image_bytes'] / gb:>9.2f}GB {f['lb_image_bytes'] / gb:>8.2f}GB {size:>7.3f}  <= 1.05 {'OK' if size <= 1.05 else 'MISSED'}")
    peak = max(f["lb_capture_peak_rss"], f["lb_restore_peak_rss"])
    print(f"lifeboat peak memory {peak / 2**20:.0f} MiB (target < 1024 MiB) {'OK' if peak < 2**30 else 'MISSED'}")
    print(f"restored filesystem fsck clean: {f['restored_fsck_ok']}")
    czr = f["cz_restore_s"] / f["ref_restore_s"]
    czi = f["cz_import_s"] / f["lb_capture_s"]
    print(f"{'cz restore':<10} {f['ref_restore_s']:>10.1f}s {f['cz_restore_s']:>9.1f}s {czr:>7.2f}  <= 0.60 "
          f"{'OK' if czr <= 0.6 else 'MISSED'}  (Clonezilla image vs Clonezilla's restore pipeline)")
    print(f"{'cz import':<10} {f['lb_capture_s']:>10.1f}s {f['cz_import_s']:>9.1f}s {czi:>7.2f}  <= 1.00 "
          f"{'OK' if czi <= 1.0 else 'MISSED'}  (import vs a native capture of the same disk)")
    print(f"restored from the Clonezilla image, fsck clean: {f['cz_restored_fsck_ok']}")


if __name__ == "__main__":
    sys.exit(main())
