#!/usr/bin/env python3
"""`make bench`: Lifeboat against Clonezilla's pipeline, on the same data, in one run.

Data: an 8 GiB ext4 partition holding a copy of /usr/lib and /usr/share (about 4.5-5 GB) and one
100 MiB file (bench-100M.bin, for the mount lines), built once and cached in /var/cache/lifeboat/bench.
`--small`: a 1 GiB partition holding that file, /usr/lib/python3, /usr/share/doc and /usr/share/locale
(about 0.6 GB), to check that every line works; its ratios are not the targets' (fixed costs weigh more).
Every timed step starts with a cold page cache; restores write onto a target file whose blocks all exist
(written once and cached: see written_target).

  reference capture  partclone.ext4 -c | zstd -T0 -3
  lifeboat capture   lifeboat capture DISK NAME --repo R          (a fresh repository: no dedup help)
  reference restore  zstd -dc | partclone.ext4 -r ; sync
  lifeboat restore   lifeboat restore NAME DISK --yes --no-bootloader (includes the table and a sync)

  lifeboat capture 2 the same disk again into the same repository as another image: every chunk
                     is already there, so it reads and hashes, nothing more

Prints times, ratios lifeboat/reference with the targets (capture <= 0.40, second capture <= 0.35 of the
reference's capture, restore <= 0.30, image <= 1.00 x), Lifeboat's peak memory (< 1 GiB), CPU seconds
(user+sys, the process and its children) per GB of used data, which drift less than wall time on a shared
machine, the machine's load, and where Lifeboat's time went: per pipeline stage (thread-seconds summed over
the workers, from Lifeboat's log) and per step (from the time each step's line appeared).

Clonezilla images (issue 12): the reference image is what Clonezilla's `partclone | zstdmt -3` writes;
it is laid out as a Clonezilla image directory (disk, parts, -pt.sf, -pt.parted, -mbr) and
  lifeboat restore    from that directory                  vs the reference restore (target <= 0.6)
  lifeboat import     of that directory into a fresh repository vs lifeboat capture (target: about a capture's
                      time, measured as the capture's plus the CPU time of Lifeboat's decompression of the image
                      alone (DECOMPRESS_ONLY) shared over the cores: the work no capture does and no import can skip)
`--cz-only` runs just these two lines and the steps they compare to (reference capture and restore, one
lifeboat capture), with their CPU seconds and the restore's stages: `make bench BENCH_ARGS="--small --cz-only"`.

`--net-only`: the local Lifeboat capture and restore and the network lines that compare to them (netbench.py),
nothing else: `make bench BENCH_ARGS="--net-only"`. The network lines are medians of `--net-rounds` (3)
interleaved local/network rounds.

`lifeboat mount` (issue 10): the image's mount ready time and one 100 MiB file read through it, see
mountbench.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mountbench

CACHE = Path(os.environ.get("LIFEBOAT_BENCH_CACHE", "/var/cache/lifeboat/bench"))
WORK = Path(os.environ.get("LIFEBOAT_BENCH_WORK", "/var/tmp/lifeboat-bench"))


@dataclass(frozen=True)
class Scale:
    name: str  # the cached disk's file name
    gib: int  # the partition's size
    sources: tuple[str, ...]  # copied onto it

    @property
    def disk_size(self) -> int:
        return self.gib * 1024**3 + 64 * 1024**2  # room for the table


FULL = Scale("ext4-8g.img", 8, ("/usr/lib", "/usr/share"))
SMALL = Scale("ext4-1g.img", 1, ("/usr/lib/python3", "/usr/share/doc", "/usr/share/locale"))
LIFEBOAT = [sys.executable, "-m", "lifeboat"]


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


def attach(image: Path, direct_io: bool = False) -> str:
    """A loop device on `image`. `direct_io`: the loop device reads its file with O_DIRECT, as a disk
    reads its platters: no page cache below the block device. Without it, every read of the device,
    O_DIRECT or not, is a buffered read of the file in the loop's kernel thread: a second page cache
    that no real disk has, which on this VM costs more than the copy (a cold 4 GiB read of the file:
    3.6 s with O_DIRECT, 15 s and 5.5 s of system CPU buffered; through a loop device without direct
    I/O, 11.9 s even with O_DIRECT on the device). Buffered readers of the device (partclone) still
    fill the device's own page cache, as they would on a real disk."""
    flags = ["--direct-io=on"] if direct_io else []
    return sh("losetup", "--find", "--show", "--partscan", *flags, str(image)).stdout.strip()


def build_source(image: Path, scale: Scale) -> None:
    """The benchmark disk: GPT, one ext4 partition, a copy of the scale's sources and the 100 MiB file."""
    print(f"building the benchmark disk {image} (once; cached)...", flush=True)
    tmp = image.with_suffix(".partial")
    tmp.unlink(missing_ok=True)
    with open(tmp, "wb") as f:
        f.truncate(scale.disk_size)
    sh("sfdisk", "--quiet", str(tmp), input=f"label: gpt\nsize={scale.gib}GiB, type=L, name=bench\n")
    disk = attach(tmp)
    try:
        part = settle_partitions(disk)
        sh("mkfs.ext4", "-q", "-F", "-L", "bench", part)
        mnt = WORK / "mnt"
        mnt.mkdir(parents=True, exist_ok=True)
        sh("mount", part, str(mnt))
        try:
            mountbench.add_big_file(mnt)
            for src in scale.sources:
                subprocess.run(["cp", "-a", src, str(mnt / src.strip("/").replace("/", "-"))], check=False)
        finally:
            sh("umount", str(mnt))
    finally:
        subprocess.run(["losetup", "-d", disk])
    tmp.rename(image)


def written_target(scale: Scale) -> Path:
    """The restore target: a file every block of which was written once (cached beside the source).

    A fresh sparse file made whichever restore ran on it first pay for ext4's block allocation: in one
    --net-only run the first local restore took 12.0 s and the next two 8.3 and 8.6 s; in the full run that
    first restore was the reference's. Written through once, every restore overwrites blocks that exist."""
    target = CACHE / f"target-{scale.name}"
    if not target.exists() or target.stat().st_size != scale.disk_size:
        print(f"writing the restore target {target} once (cached)...", flush=True)
        partial = target.with_suffix(".partial")
        sh("dd", "if=/dev/zero", f"of={partial}", "bs=4M", f"count={scale.disk_size // (4 * 1024**2)}",
           "oflag=direct", "status=none")
        partial.rename(target)
    return target


CPU_SECONDS: list[float] = []  # user+system seconds of each timed() step, in order (netbench reads its own)


@dataclass
class Run:
    """One timed step: wall seconds (cold cache, synced), CPU seconds (user+sys, children included),
    peak RSS, and for Lifeboat its stage summaries and the seconds from each step's line to the next."""

    seconds: float
    cpu: float
    peak_rss: int
    stages: list[str] = field(default_factory=list)
    steps: list[tuple[str, float]] = field(default_factory=list)


def timed(argv: list[str] | str) -> Run:
    """Run `argv` (a list, or a shell pipeline as one string) from a cold page cache, then sync."""
    drop_caches()
    if isinstance(argv, str):
        argv = ["/bin/bash", "-o", "pipefail", "-c", argv]
    argv = ["/usr/bin/time", "-f", "BENCH_RUSAGE %M %U %S", *argv]
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines = [(time.monotonic() - start, line.rstrip("\n")) for line in proc.stderr]
    if proc.wait() != 0:
        raise SystemExit(f"benchmark step failed: {argv}\n" + "\n".join(text for _, text in lines[-30:]))
    os.sync()
    seconds = time.monotonic() - start
    usage = [text.split() for _, text in lines if text.startswith("BENCH_RUSAGE ")][-1]
    CPU_SECONDS.append(float(usage[2]) + float(usage[3]))  # user + system: steadier than wall time on a shared machine
    steps = [(text.strip(" »"), at) for at, text in lines if text.startswith("» ")]
    return Run(seconds, float(usage[2]) + float(usage[3]), int(usage[1]) * 1024,
               stages=[text.strip() for _, text in lines if "time per stage" in text],
               steps=[(name, (steps[i + 1][1] if i + 1 < len(steps) else seconds) - at) for i, (name, at) in enumerate(steps)])


def used_bytes(part: str) -> int:
    from lifeboat.fs.usedmap import used_runs

    return sum(n for _, n in used_runs("partclone.ext4", part, 8 * 1024**3))


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


# What an import adds to a capture's work: Lifeboat's own reading and decompression of a Clonezilla image
# file (foreign/pieces.py: O_DIRECT reads, zstandard's stream reader into a reused buffer), and nothing else.
DECOMPRESS_ONLY = """
import sys
from lifeboat.foreign.pieces import Compression, DecompressedStream, find_pieces
stream = DecompressedStream(find_pieces(sys.argv[1], Compression.ZSTD), "bench")
view = memoryview(bytearray(4 << 20))
while stream.readinto(view) == len(view):
    pass
"""


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--no-network", action="store_true", help="skip the encryption, S3 and HTTPS lines")
    parser.add_argument("--lifeboat-only", action="store_true", help="skip the reference (partclone | zstd) steps")
    parser.add_argument("--small", action="store_true", help="a 1 GiB disk (~0.7 GB used): checks every line quickly")
    parser.add_argument("--cz-only", action="store_true",
                        help="only the Clonezilla lines (and the reference capture/restore and capture they compare to)")
    parser.add_argument("--net-only", action="store_true",
                        help="only the encryption, S3 and HTTPS lines and the local capture and restore they compare to")
    parser.add_argument("--net-rounds", type=int, default=3,
                        help="interleaved local/network rounds behind each network ratio (their median; default 3)")
    args = parser.parse_args()
    args.lifeboat_only = args.lifeboat_only or args.net_only
    if os.geteuid() != 0:
        print("the benchmark needs root (loop devices, drop_caches)", file=sys.stderr)
        return 2
    CACHE.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    scale = SMALL if args.small else FULL
    source_image = CACHE / scale.name
    if not source_image.exists():
        build_source(source_image, scale)
    target_image = written_target(scale)
    src = attach(source_image, direct_io=True)  # the capture source reads like a disk (see attach)
    dst = attach(target_image)
    runs: dict[str, Run] = {}
    figures: dict[str, float] = {"load_before": os.getloadavg()[0]}
    try:
        src_part = settle_partitions(src)
        if subprocess.run(["debugfs", "-R", f"stat /{mountbench.BIG_FILE}", src_part], capture_output=True,
                          text=True).stderr.find("not found") >= 0:
            mountbench.ensure_big_file(src_part, sh, WORK / "mnt")
        figures["used_bytes"] = used_bytes(src_part)
        ref_image = WORK / "reference.pcl.zst"
        if not args.lifeboat_only:
            runs["ref_capture"] = timed(f"partclone.ext4 -c -s {src_part} -o - -q | zstd -T0 -3 -q -o {ref_image}")
            figures["ref_image_bytes"] = ref_image.stat().st_size
        repo = WORK / "repo"
        runs["lb_capture"] = timed(LIFEBOAT + ["capture", src, "bench", "--repo", str(repo)])
        figures["lb_image_bytes"] = dir_size(repo / "chunks")
        if not args.cz_only and not args.net_only:
            runs["lb_capture2"] = timed(LIFEBOAT + ["capture", src, "bench2", "--repo", str(repo)])

        # reference restore onto the same layout: copy the table, then partclone onto the partition
        sh("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", dst, input=sh("sfdisk", "-d", src).stdout)
        dst_part = settle_partitions(dst)
        if not args.lifeboat_only:
            runs["ref_restore"] = timed(f"zstd -dc {ref_image} | partclone.ext4 -r -s - -o {dst_part} -q")
        figures["lb_capture_s"] = runs["lb_capture"].seconds
        figures["lb_capture_cpu_s"] = runs["lb_capture"].cpu  # netbench's CPU ratios
        if not args.cz_only:
            sh("wipefs", "-a", dst)
            runs["lb_restore"] = timed(LIFEBOAT + ["restore", "bench", dst, "--repo", str(repo), "--yes", "--no-bootloader"])
            check = subprocess.run(["e2fsck", "-f", "-n", settle_partitions(dst)], capture_output=True, text=True)
            figures["restored_fsck_ok"] = check.returncode == 0
            figures["lb_restore_s"] = runs["lb_restore"].seconds
            figures["lb_restore_cpu_s"] = runs["lb_restore"].cpu
            if not args.net_only:
                mountbench.run(WORK, repo, LIFEBOAT, timed, sh, figures)
        if not args.lifeboat_only:
            partimag = WORK / "partimag"
            cz = clonezilla_dir(partimag, src, ref_image)
            sh("wipefs", "-a", dst)
            runs["cz_restore"] = timed(LIFEBOAT + ["restore", cz, dst, "--repo", str(partimag), "--yes",
                                                   "--no-bootloader"])
            figures["cz_restore_s"] = runs["cz_restore"].seconds
            check = subprocess.run(["e2fsck", "-f", "-n", settle_partitions(dst)], capture_output=True, text=True)
            figures["cz_restored_fsck_ok"] = check.returncode == 0
            runs["cz_import"] = timed(LIFEBOAT + ["import", str(partimag / cz), "cz", "--repo",
                                                  str(WORK / "repo-import")])
            figures["cz_import_s"] = runs["cz_import"].seconds
            runs["cz_decompress"] = timed([sys.executable, "-c", DECOMPRESS_ONLY, str(ref_image)])
        figures["load_after"] = os.getloadavg()[0]
        if not args.no_network and not args.cz_only:
            import netbench

            netbench.run(WORK, src, dst, repo, LIFEBOAT, lambda argv: (lambda r: (r.seconds, r.peak_rss))(timed(argv)),
                         sh, figures, CPU_SECONDS, rounds=args.net_rounds)
    finally:
        for disk in (src, dst):
            subprocess.run(["udevadm", "settle"], capture_output=True)
            subprocess.run(["losetup", "-d", disk])
    if args.cz_only:
        report_cz(runs, figures)
    elif args.net_only:
        for key in ("lb_capture", "lb_restore"):
            print(f"local {key[3:]}: {runs[key].seconds:.1f} s wall, {runs[key].cpu:.1f} s cpu; load average "
                  f"{figures['load_before']:.1f} before, {figures['load_after']:.1f} after ({os.cpu_count()} CPUs)")
    else:
        report(runs, figures)
        mountbench.report(figures)
    if not args.no_network and not args.cz_only:
        import netbench

        netbench.report(figures)
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures, "runs": {k: asdict(v) for k, v in runs.items()}}, indent=2))
    shutil.rmtree(WORK, ignore_errors=True)
    return 0


def _line(name: str, ref: Run | None, lb: Run, target: float, gb: float) -> None:
    if ref is None:  # --lifeboat-only
        print(f"{name:<10} {'':>11} {lb.seconds:>9.1f}s {'':>7}  {'':<14}  cpu {'':>5}   {lb.cpu / gb:5.2f} s/GB")
        return
    ratio = lb.seconds / ref.seconds
    print(f"{name:<10} {ref.seconds:>10.1f}s {lb.seconds:>9.1f}s {ratio:>7.2f}  <= {target:.2f} {'OK    ' if ratio <= target else 'MISSED'}"
          f"  cpu {ref.cpu / gb:5.2f} / {lb.cpu / gb:5.2f} s/GB")


def report(runs: dict[str, Run], f: dict) -> None:
    gb = f["used_bytes"] / 1e9
    print()
    print(f"{f['used_bytes'] / 1e9:.2f} GB of used blocks; load average {f['load_before']:.1f} before, {f['load_after']:.1f} after"
          f" ({os.cpu_count()} CPUs)")
    print(f"{'step':<10} {'reference':>11} {'lifeboat':>10} {'ratio':>7}  target       cpu (user+sys) reference / lifeboat")
    _line("capture", runs.get("ref_capture"), runs["lb_capture"], 0.40, gb)
    _line("capture 2", runs.get("ref_capture"), runs["lb_capture2"], 0.35, gb)
    _line("restore", runs.get("ref_restore"), runs["lb_restore"], 0.30, gb)
    if "ref_image_bytes" in f:
        size = f["lb_image_bytes"] / f["ref_image_bytes"]
        print(f"{'image':<10} {f['ref_image_bytes'] / 1e9:>9.3f}GB {f['lb_image_bytes'] / 1e9:>8.3f}GB {size:>7.3f}  <= 1.00 {'OK' if size <= 1.0 else 'MISSED'}")
    else:
        print(f"{'image':<10} {'':>11} {f['lb_image_bytes'] / 1e9:>8.3f}GB")
    peak = max(r.peak_rss for k, r in runs.items() if k.startswith("lb_"))
    print(f"lifeboat peak memory {peak / 2**20:.0f} MiB (target < 1024 MiB) {'OK' if peak < 2**30 else 'MISSED'}")
    print(f"restored filesystem fsck clean: {f['restored_fsck_ok']}")
    print("\nwhere lifeboat's time went:")
    for key in ("lb_capture", "lb_capture2", "lb_restore"):
        run = runs[key]
        print(f"  {key[3:]}: {run.seconds:.1f} s wall, {run.cpu:.1f} s cpu; steps: "
              + ", ".join(f"{name.split(':')[0]} {sec:.1f} s" for name, sec in run.steps))
        for stage in run.stages:
            print(f"    {stage}")
    if "cz_restore_s" in f:
        report_cz(runs, f)


def report_cz(runs: dict[str, Run], f: dict) -> None:
    """The Clonezilla lines, with CPU seconds and the restore's stages."""
    gb = f["used_bytes"] / 1e9
    print(f"\n{gb:.2f} GB of used blocks; load average {f['load_before']:.1f} before, {f['load_after']:.1f} after"
          f" ({os.cpu_count()} CPUs)")
    for key, ref_key in (("cz_restore", "ref_restore"), ("cz_import", "lb_capture")):
        run, ref = runs.get(key), runs.get(ref_key)
        if run and ref:
            print(f"  {key}: {run.seconds:.1f} s wall, {run.cpu:.1f} s cpu ({run.cpu / gb:.2f} s/GB); "
                  f"{ref_key}: {ref.seconds:.1f} s wall, {ref.cpu:.1f} s cpu; cpu ratio {run.cpu / ref.cpu:.2f}")
            for stage in run.stages:
                print(f"    {stage}")
    if "cz_restore_s" in f:
        ref_restore = runs["ref_restore"].seconds
        czr = f["cz_restore_s"] / ref_restore
        czi = f["cz_import_s"] / f["lb_capture_s"]
        print(f"{'cz restore':<10} {ref_restore:>10.1f}s {f['cz_restore_s']:>9.1f}s {czr:>7.2f}  <= 0.60 "
              f"{'OK' if czr <= 0.6 else 'MISSED'}  (Clonezilla image vs Clonezilla's restore pipeline)")
        # An import does a capture's work (hash, compress, store the same chunks) plus decompressing Clonezilla's
        # stream, which no capture does and no import can skip; on cores the capture already fills, that
        # decompression's CPU time shared over the cores is the least an import can add.
        floor = 1.0 + runs["cz_decompress"].cpu / (os.cpu_count() or 1) / f["lb_capture_s"]
        print(f"{'cz import':<10} {f['lb_capture_s']:>10.1f}s {f['cz_import_s']:>9.1f}s {czi:>7.2f}  <= {floor:.2f} "
              f"{'OK' if czi <= floor else 'MISSED'}  (import vs a native capture of the same disk; the target is the "
              f"capture plus decompressing Clonezilla's stream: that alone took {runs['cz_decompress'].cpu:.1f} s "
              f"of CPU, over {os.cpu_count()} cores)")
        print(f"restored from the Clonezilla image, fsck clean: {f['cz_restored_fsck_ok']}")


if __name__ == "__main__":
    sys.exit(main())
