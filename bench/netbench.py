"""bench.py's network and encryption lines, on the same benchmark disk as the local ones.

  encrypted capture   lifeboat init --encrypt, then capture into it       (target: <= 1.10 x the local capture)
  s3 capture          capture into s3:// on `rclone serve s3` (127.0.0.1)  (target: >= 0.80 of local speed)
  s3 restore          restore from that s3:// repository                   (target: >= 0.80 of local speed)
  https restore       restore from nginx serving the local repository      (target: >= 0.80 of local speed)

The S3 lines also print the CPU seconds of Lifeboat and of the S3 server. That server runs on the same cores
as Lifeboat (a real deployment's runs on another machine), so the S3 ratios include its work: every second of
CPU it spends is taken from the capture or restore. It is the tests' server, with the hashing no Lifeboat
repository reads turned off (netservers.RCLONE_LEAN: no MD5 ETag, no upload hashes).

The servers are the ones the integration tests start (tests/integration/netservers.py), bound to 127.0.0.1,
stopped by pid.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from netservers import RCLONE_LEAN, nginx_https, rclone_s3  # noqa: E402


def run(work: Path, src: str, dst: str, repo: Path, lifeboat: list[str], timed: Callable, sh: Callable,
        figures: dict, cpu_seconds: list[float]) -> None:
    """Adds enc_capture_s, s3_capture_s, s3_restore_s, https_restore_s to `figures` (needs lb_* already)."""
    phrase = work / "passphrase"
    phrase.write_text("benchmark passphrase\n")
    phrase.chmod(0o600)
    os.environ["LIFEBOAT_PASSPHRASE_FILE"] = str(phrase)
    enc = work / "repo-encrypted"
    sh(*lifeboat, "init", "--repo", str(enc), "--encrypt")
    figures["enc_capture_s"], _ = timed(lifeboat + ["capture", src, "bench", "--repo", str(enc)])
    figures["enc_capture_cpu_s"] = cpu_seconds[-1]
    del os.environ["LIFEBOAT_PASSPHRASE_FILE"]  # else plain repositories are refused (see repo/command.py)
    s3 = rclone_s3(work / "s3").start()
    web = nginx_https(work / "nginx", repo).start()
    saved = dict(os.environ)
    try:
        os.environ.update(s3.extra["env"], SSL_CERT_FILE=str(web.extra["cert"]))
        server = _cpu_seconds(s3.proc.pid)
        figures["s3_capture_s"], _ = timed(lifeboat + ["capture", src, "bench", "--repo", "s3://lifeboat/bench"])
        figures["s3_capture_cpu_s"], figures["s3_capture_server_cpu_s"] = cpu_seconds[-1], _cpu_seconds(s3.proc.pid) - server
        for kind, url in (("s3", "s3://lifeboat/bench"), ("https", f"https://127.0.0.1:{web.port}/")):
            sh("wipefs", "-a", dst)
            server = _cpu_seconds(s3.proc.pid)
            figures[f"{kind}_restore_s"], _ = timed(
                lifeboat + ["restore", "bench", dst, "--repo", url, "--yes", "--no-bootloader"])
            figures[f"{kind}_restore_cpu_s"] = cpu_seconds[-1]
            if kind == "s3":
                figures["s3_restore_server_cpu_s"] = _cpu_seconds(s3.proc.pid) - server
    finally:
        os.environ.clear()
        os.environ.update(saved)
        web.stop()
        s3.stop()


def _cpu_seconds(pid: int) -> float:
    """user+system seconds of a running process (the S3 server: it shares this machine's cores)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(f: dict) -> None:
    enc = f["enc_capture_s"] / f["lb_capture_s"]
    cpu = f["enc_capture_cpu_s"] / f["lb_capture_cpu_s"] if f.get("lb_capture_cpu_s") else 0.0
    print(f"encrypted capture {f['enc_capture_s']:.1f}s vs {f['lb_capture_s']:.1f}s: {enc:.2f} x  "
          f"<= 1.10 {'OK' if enc <= 1.10 else 'MISSED'}  (CPU time {cpu:.2f} x)")
    for kind, local in (("s3_capture", "lb_capture_s"), ("s3_restore", "lb_restore_s"), ("https_restore", "lb_restore_s")):
        speed = f[local] / f[f"{kind}_s"]
        print(f"{kind.replace('_', ' '):<17} {f[f'{kind}_s']:.1f}s vs local {f[local]:.1f}s: {speed:.2f} of local speed  "
              f">= 0.80 {'OK' if speed >= 0.8 else 'MISSED'}", end="")
        if f"{kind}_server_cpu_s" in f:  # the server runs on the same cores: its CPU time is not Lifeboat's
            print(f"  (CPU: lifeboat {f[f'{kind}_cpu_s']:.1f} s vs local {f.get(local.replace('_s', '_cpu_s'), 0.0):.1f} s, "
                  f"the S3 server {f[f'{kind}_server_cpu_s']:.1f} s)", end="")
        print()
    print(f"  (the S3 lines include the S3 server's work: `rclone serve s3 {' '.join(RCLONE_LEAN)}` on 127.0.0.1, "
          f"on the same {os.cpu_count()} cores)")
