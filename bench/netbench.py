"""bench.py's network and encryption lines, on the same benchmark disk as the local ones.

  encrypted capture   lifeboat init --encrypt, then capture into it       (target: <= 1.10 x the local capture)
  s3 capture          capture into s3:// on `rclone serve s3` (127.0.0.1)  (target: >= 0.80 of local speed)
  s3 restore          restore from that s3:// repository                   (target: >= 0.80 of local speed)
  https restore       restore from nginx serving a copy of the local repository (target: >= 0.80 of local speed)

The three network lines run in ROUNDS interleaved rounds, each network run right after the local run it is
compared to (captures into fresh repositories and prefixes, restores of one image), and report the median
of the rounds' ratios: single runs of the same step differ by a third on this shared VM.

The servers stand for machines elsewhere: their CPU is this machine's (counted, below), their storage is not.
Their files live on a tmpfs (server_storage), not on this machine's disk, which the restore writes to and
the local repository is read from. On that disk rclone wrote what it received into the page cache (1.6 GB,
below the kernel's writeback threshold), which the sync after each timed step then wrote out (0.9 s), and
it read the objects back from a cold cache while the restore wrote the target: the same S3 restore took
10.0-10.1 s from a cold cache and 8.2 s from a warm one, against 7.8 s for the local restore.

The S3 lines also print the CPU seconds of Lifeboat and of the S3 server. That server runs on the same cores
as Lifeboat (a real deployment's runs on another machine), so the S3 ratios include its work: every second of
CPU it spends is taken from the capture or restore. It is the tests' server, with the hashing no Lifeboat
repository reads turned off (netservers.RCLONE_LEAN: no ETag or upload hashes from rclone's side; gofakes3,
its S3 layer, still MD5s every PUT body) and its Go runtime on one core (netservers.RCLONE_RUNTIME).

The servers are the ones the integration tests start (tests/integration/netservers.py), bound to 127.0.0.1,
stopped by pid.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import statistics
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from netservers import RCLONE_LEAN, RCLONE_RUNTIME, Server, nginx_https, rclone_s3  # noqa: E402


ROUNDS = 3  # interleaved rounds of (local, network) runs: the ratios are their medians (see run)


def run(work: Path, src: str, dst: str, repo: Path, lifeboat: list[str], timed: Callable, sh: Callable,
        figures: dict, cpu_seconds: list[float], rounds: int = ROUNDS) -> None:
    """Adds enc_capture_s and, per round, the local and network captures and restores to `figures`.

    One run of each line swung by a third on this shared VM (a local restore took 8.5 s in one run and 13.1 s
    in the next), so each network line is timed `rounds` times, each time right after the local run it is
    compared to, and the ratio reported is the median of the rounds' ratios."""
    phrase = work / "passphrase"
    phrase.write_text("benchmark passphrase\n")
    phrase.chmod(0o600)
    os.environ["LIFEBOAT_PASSPHRASE_FILE"] = str(phrase)
    enc = work / "repo-encrypted"
    sh(*lifeboat, "init", "--repo", str(enc), "--encrypt")
    figures["enc_capture_s"], _ = timed(lifeboat + ["capture", src, "bench", "--repo", str(enc)])
    figures["enc_capture_cpu_s"] = cpu_seconds[-1]
    del os.environ["LIFEBOAT_PASSPHRASE_FILE"]  # else plain repositories are refused (see repo/command.py)
    shutil.rmtree(enc, ignore_errors=True)
    with server_storage(work / "servers") as storage:
        s3 = rclone_s3(storage / "s3").start()
        served = storage / "repo"
        shutil.copytree(repo, served)  # nginx serves a copy in the servers' storage, not this machine's disk
        web = nginx_https(storage / "nginx", served).start()
        saved = dict(os.environ)
        try:
            os.environ.update(s3.extra["env"], SSL_CERT_FILE=str(web.extra["cert"]))
            for r in range(rounds):
                _capture_round(work, src, lifeboat, timed, figures, cpu_seconds, s3, r)
            for _ in range(rounds):
                _restore_round(dst, repo, lifeboat, timed, sh, figures, cpu_seconds, s3.proc.pid, web.port)
        finally:
            os.environ.clear()
            os.environ.update(saved)
            web.stop()
            s3.stop()


@contextlib.contextmanager
def server_storage(path: Path) -> Iterator[Path]:
    """A tmpfs for the servers' files, unmounted afterwards (see the module's docstring)."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8g,mode=755", "lifeboat-bench-servers", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def _capture_round(work: Path, src: str, lifeboat: list[str], timed: Callable, figures: dict,
                   cpu_seconds: list[float], s3: Server, r: int) -> None:
    """A local capture into a fresh repository, then an S3 capture into a fresh prefix: neither finds a chunk.
    The prefix is removed afterwards, except the first round's, which the restores read."""
    local = work / "repo-round"
    shutil.rmtree(local, ignore_errors=True)
    seconds, _ = timed(lifeboat + ["capture", src, "bench", "--repo", str(local)])
    _add(figures, "local_capture", seconds, cpu_seconds[-1])
    shutil.rmtree(local, ignore_errors=True)
    server = _cpu_seconds(s3.proc.pid)
    seconds, _ = timed(lifeboat + ["capture", src, "bench", "--repo", f"s3://lifeboat/bench{r}"])
    _add(figures, "s3_capture", seconds, cpu_seconds[-1], _cpu_seconds(s3.proc.pid) - server)
    if r:
        shutil.rmtree(s3.extra["data"] / "lifeboat" / f"bench{r}")


def _restore_round(dst: str, repo: Path, lifeboat: list[str], timed: Callable, sh: Callable, figures: dict,
                   cpu_seconds: list[float], server_pid: int, web_port: int) -> None:
    """The same image restored from the local repository, from S3 and over HTTPS, one after the other."""
    for kind, url in (("local", str(repo)), ("s3", "s3://lifeboat/bench0"), ("https", f"https://127.0.0.1:{web_port}/")):
        sh("wipefs", "-a", dst)
        server = _cpu_seconds(server_pid)
        seconds, _ = timed(lifeboat + ["restore", "bench", dst, "--repo", url, "--yes", "--no-bootloader"])
        _add(figures, f"{kind}_restore", seconds, cpu_seconds[-1],
             _cpu_seconds(server_pid) - server if kind == "s3" else None)


def _add(figures: dict, key: str, seconds: float, cpu: float, server_cpu: float | None = None) -> None:
    """Append one round's figures: `key`_s, `key`_cpu_s and, for S3, `key`_server_cpu_s are lists."""
    figures.setdefault(f"{key}_s", []).append(seconds)
    figures.setdefault(f"{key}_cpu_s", []).append(cpu)
    if server_cpu is not None:
        figures.setdefault(f"{key}_server_cpu_s", []).append(server_cpu)


def _cpu_seconds(pid: int) -> float:
    """user+system seconds of a running process (the S3 server: it shares this machine's cores)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(f: dict) -> None:
    enc = f["enc_capture_s"] / f["lb_capture_s"]
    cpu = f["enc_capture_cpu_s"] / f["lb_capture_cpu_s"] if f.get("lb_capture_cpu_s") else 0.0
    print(f"encrypted capture {f['enc_capture_s']:.1f}s vs {f['lb_capture_s']:.1f}s: {enc:.2f} x  "
          f"<= 1.10 {'OK' if enc <= 1.10 else 'MISSED'}  (CPU time {cpu:.2f} x)")
    for kind, local in (("s3_capture", "local_capture"), ("s3_restore", "local_restore"), ("https_restore", "local_restore")):
        speeds = [lo / net for lo, net in zip(f[f"{local}_s"], f[f"{kind}_s"])]
        speed = statistics.median(speeds)
        rounds = ", ".join(f"{net:.1f}/{lo:.1f}s" for lo, net in zip(f[f"{local}_s"], f[f"{kind}_s"]))
        print(f"{kind.replace('_', ' '):<17} {speed:.2f} of local speed (median of {len(speeds)} rounds: "
              f"{' '.join(f'{s:.2f}' for s in speeds)})  >= 0.80 {'OK' if speed >= 0.8 else 'MISSED'}")
        print(f"{'':<19}network/local wall per round: {rounds}", end="")
        if f"{kind}_server_cpu_s" in f:  # the server runs on the same cores: its CPU time is not Lifeboat's
            print(f"; CPU medians: lifeboat {statistics.median(f[f'{kind}_cpu_s']):.1f} s vs local "
                  f"{statistics.median(f[f'{local}_cpu_s']):.1f} s, the S3 server "
                  f"{statistics.median(f[f'{kind}_server_cpu_s']):.1f} s", end="")
        print()
    runtime = " ".join(f"{k}={v}" for k, v in RCLONE_RUNTIME.items())
    print(f"  (the S3 lines include the S3 server's work: `{runtime} rclone serve s3 {' '.join(RCLONE_LEAN)}` on 127.0.0.1, "
          f"on the same {os.cpu_count()} cores)")
