"""bench.py's `lifeboat mount` lines (issue 10), on the benchmark disk's image:

  mount ready    `lifeboat mount bench DIR --repo R` from a cold page cache until it returns, every
                 filesystem mounted (target < 2 s for the ~5 GB image of the full-size disk)
  one file       reading bench-100M.bin (100 MiB of /usr/lib's bytes, tar'ed) through the mount from a
                 cold cache: its throughput against the full restore's (used bytes / restore seconds),
                 target >= 0.5; the chunks it fetched (from the view's stats.json) against the windows
                 its extents cover, and against the image's chunk count
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

BIG_FILE = "bench-100M.bin"
BIG_BYTES = 100 * 1024 * 1024
WINDOW = 4 * 1024 * 1024


def add_big_file(mnt: Path) -> None:
    """100 MiB of real data (a tar of /usr/lib's shared libraries: compresses like the rest of the disk)."""
    subprocess.run(f"tar -cf - -C / usr/lib/x86_64-linux-gnu 2>/dev/null | head -c {BIG_BYTES} > {mnt / BIG_FILE}",
                   shell=True, check=True)
    if (mnt / BIG_FILE).stat().st_size != BIG_BYTES:
        raise SystemExit(f"{mnt / BIG_FILE}: could not gather {BIG_BYTES} bytes from /usr/lib/x86_64-linux-gnu")


def ensure_big_file(part: str, sh: Callable, mnt: Path) -> None:
    """A benchmark disk cached before the mount lines existed gets the file once (its other data unchanged)."""
    mnt.mkdir(parents=True, exist_ok=True)
    sh("mount", part, str(mnt))
    try:
        if not (mnt / BIG_FILE).exists():
            print(f"adding {BIG_FILE} to the cached benchmark disk (once)...", flush=True)
            add_big_file(mnt)
    finally:
        sh("umount", str(mnt))


def _windows(path: Path, sh: Callable) -> int:
    """The 4 MiB windows of the partition holding the file's extents (filefrag), i.e. the chunks it needs."""
    windows: set[int] = set()
    for line in sh("filefrag", "-e", "-b4096", str(path)).stdout.splitlines():
        fields = line.replace(":", " ").replace("..", " ").split()
        if len(fields) >= 6 and fields[0].isdigit():
            first, last = int(fields[3]), int(fields[4])
            windows.update(range(first * 4096 // WINDOW, last * 4096 // WINDOW + 1))
    return len(windows)


def run(work: Path, repo: Path, lifeboat: list[str], timed: Callable, sh: Callable, figures: dict) -> None:
    """Adds mount_ready_s, mount_ready_own_s, file_read_s, file_chunks, file_windows, image_chunks."""
    target = work / "mounted"
    run_ = timed(lifeboat + ["mount", "bench", str(target), "--repo", str(repo)])
    figures["mount_ready_s"] = run_.seconds
    try:
        state = _state(target, lifeboat)
        stats = Path(state["view"]) / "stats.json"
        figures["mount_ready_own_s"] = state["ready_seconds"]
        fs = next(f for f in state["filesystems"] if f["fstype"] == "ext4")
        big = Path(fs["path"]) / BIG_FILE
        figures["file_windows"] = _windows(big, sh)
        before = json.loads(stats.read_text())["chunks_fetched"]
        figures["file_read_s"] = timed(["dd", f"if={big}", "of=/dev/null", "bs=4M", "status=none"]).seconds
        figures["file_chunks"] = json.loads(stats.read_text())["chunks_fetched"] - before
    finally:
        sh(*lifeboat, "umount", str(target))
    figures["image_chunks"] = int(_py(lifeboat, "from lifeboat.repo.store import Repository; "
                                             "from lifeboat.repo.manifest import load_manifest; "
                                             "m = load_manifest(Repository.open(sys.argv[1]), 'bench'); "
                                             "print(sum(len(p.stream.chunks) for p in m.partitions if p.stream))",
                                      str(repo)))


def _py(lifeboat: list[str], code: str, *args: str) -> str:
    """Ask Lifeboat's own modules (the interpreter `make bench` runs them with)."""
    return subprocess.run([lifeboat[0], "-c", "import json, sys; " + code, *args], check=True,
                          capture_output=True, text=True).stdout


def _state(target: Path, lifeboat: list[str]) -> dict:
    """The mount's state (what `lifeboat mount` recorded): view directory, filesystems, its own ready time."""
    return json.loads(_py(lifeboat, "from lifeboat.imagefs.mount import mounted_at; "
                                    "print(json.dumps(mounted_at(sys.argv[1]).to_json()))", str(target)))


def report(f: dict) -> None:
    if "mount_ready_s" not in f:
        return
    restore_tput = f["used_bytes"] / f["lb_restore_s"]
    file_tput = BIG_BYTES / f["file_read_s"]
    ratio = file_tput / restore_tput
    ready = f["mount_ready_s"]
    print(f"{'mount':<10} ready in {ready:.2f} s (its own count {f['mount_ready_own_s']:.2f} s) for a "
          f"{f['used_bytes'] / 1e9:.2f} GB image  < 2 s {'OK' if ready < 2 else 'MISSED'}")
    print(f"{'one file':<10} {BIG_BYTES / 2**20:.0f} MiB in {f['file_read_s']:.2f} s = {file_tput / 1e6:.0f} MB/s vs the "
          f"restore's {restore_tput / 1e6:.0f} MB/s: {ratio:.2f}  >= 0.50 {'OK' if ratio >= 0.5 else 'MISSED'}; "
          f"fetched {f['file_chunks']} chunks for {f['file_windows']} windows"
          + (f" (image: {f['image_chunks']} chunks)" if f.get("image_chunks") else ""))
