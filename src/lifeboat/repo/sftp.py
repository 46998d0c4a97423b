"""ssh:// repositories over SFTP, with paramiko (pure Python on python3-cryptography, in Debian as
python3-paramiko; no ssh or sshfs process, so no password on a pipe and no FUSE in the live system).

- Host, user, port and identity files from ~/.ssh/config; keys from the agent, ~/.ssh/id_* and the config.
  A password (credentials file, SSHPASS, or the prompt) only when the server asks for one.
- The host key must be in ~/.ssh/known_hosts (or LIFEBOAT_KNOWN_HOSTS): an unknown key is refused with its
  SHA256 fingerprint, or, when an `accept` callback says yes (the CLI asks at the terminal), added there.
- One SSH connection; each thread has its own SFTP channel on it, so chunk transfers run in parallel.
- Writes go to tmp/ and are renamed with posix-rename@openssh.com (atomic replace). The server applies
  requests in order, so a manifest written after its chunks' renames is never seen before them.
- A dropped connection is re-established and the request retried with back-off, about 4 s in all,
  then BackendUnavailable; every request has a 30 s timeout.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import os
import socket
import stat
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import paramiko

from lifeboat import traffic
from lifeboat.errors import RepositoryError
from lifeboat.repo.backend import BackendUnavailable, ObjectLocks, ObjectMissing, retrying
from lifeboat.repo.credentials import Credentials, prompt_password
from lifeboat.repo.location import Location

TIMEOUT = 30.0
READ_PIECE = 1 << 20  # an object is read, and its bytes counted as network traffic, a MiB at a time
_NETWORK_ERRORS = (paramiko.SSHException, EOFError, socket.error, ConnectionError, TimeoutError)
AcceptHostKey = Callable[[str, str], bool]  # (host, "SHA256:…") -> accept and remember?


class UnknownHostKey(RepositoryError):
    exit_code = 2


def fingerprint(key: paramiko.PKey) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")


def known_hosts_file() -> Path:
    return Path(os.environ.get("LIFEBOAT_KNOWN_HOSTS") or Path.home() / ".ssh" / "known_hosts")


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    def __init__(self, accept: AcceptHostKey | None):
        self.accept = accept

    def missing_host_key(self, client, hostname, key):
        fp = fingerprint(key)
        if self.accept is not None and self.accept(hostname, fp):
            path = known_hosts_file()
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            with open(path, "a") as f:
                f.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
            return
        raise UnknownHostKey(f"the host key of {hostname} is not known ({key.get_name()} {fp}): check the "
                             f"fingerprint with the server's owner, then add it to {known_hosts_file()} or accept it "
                             "when asked")


class SftpBackend:
    read_only = False
    can_list = True

    def __init__(self, location: Location, creds: Credentials, accept: AcceptHostKey | None = None):
        self.location, self.creds, self.accept = location, creds, accept
        self.url = location.display()
        self.base = location.path.rstrip("/") or "/"
        self._local = threading.local()
        self._lock = threading.Lock()
        self._client: paramiko.SSHClient | None = None
        self._generation = 0
        self._locks = ObjectLocks(self)
        self._connect()

    # ------------------------------------------------------------ connection

    def _connect(self) -> None:
        loc = self.location
        cfg = _ssh_config(loc.host)
        client = paramiko.SSHClient()
        path = known_hosts_file()
        if path.exists():
            client.load_host_keys(str(path))
        client.set_missing_host_key_policy(_HostKeyPolicy(self.accept))
        kwargs = dict(hostname=cfg.get("hostname", loc.host), port=loc.port or int(cfg.get("port", 22)),
                      username=loc.user or self.creds.user or cfg.get("user") or os.environ.get("USER", "root"),
                      key_filename=self.creds.key_file or cfg.get("identityfile"), timeout=TIMEOUT, banner_timeout=TIMEOUT,
                      auth_timeout=TIMEOUT, allow_agent=True, look_for_keys=True)
        try:
            try:
                client.connect(**kwargs, password=self.creds.password or None)
            except paramiko.AuthenticationException:
                if self.creds.password:
                    raise
                password = prompt_password(f"password for {kwargs['username']}@{loc.host}")
                client.connect(**kwargs, password=password)
                self.creds = replace(self.creds, password=password, source="prompt")  # for `lifeboat mount`'s daemon
        except paramiko.AuthenticationException:
            raise RepositoryError(f"{self.url}: the server refused our keys and password") from None
        except UnknownHostKey:
            raise
        except (paramiko.SSHException, OSError) as exc:
            raise BackendUnavailable(f"cannot connect to {self.url}: {exc}") from None
        transport = client.get_transport()
        transport.set_keepalive(10)
        with self._lock:
            self._client, self._generation = client, self._generation + 1

    def _reconnect(self) -> None:
        with self._lock:
            old = self._client
        with contextlib.suppress(Exception):
            old.close()
        self._connect()

    def _sftp(self) -> paramiko.SFTPClient:
        local = self._local
        if getattr(local, "generation", -1) != self._generation or local.sftp is None:
            local.sftp = self._client.open_sftp()
            local.sftp.get_channel().settimeout(TIMEOUT)
            local.generation = self._generation
        return local.sftp

    def _do(self, what: str, fn):
        def attempt():
            try:
                return fn(self._sftp())
            except OSError as exc:
                if isinstance(exc, (ConnectionError, TimeoutError)) or not self._alive():
                    raise  # the connection: retried
                raise RepositoryError(f"{self.url}: {what}: {exc.strerror or exc}") from None  # the server said no
        return retrying(f"{self.url}: {what}", attempt, _NETWORK_ERRORS, on_retry=self._reconnect)

    def _alive(self) -> bool:
        transport = self._client.get_transport() if self._client else None
        return bool(transport and transport.is_active())

    def _path(self, name: str) -> str:
        return f"{self.base}/{name}" if name else self.base

    # ------------------------------------------------------------ objects

    def read(self, name: str) -> bytes:
        def attempt(sftp):
            try:
                with sftp.open(self._path(name), "rb") as f:
                    f.prefetch()
                    pieces = []
                    # counted as it arrives: on a slow link a 4 MiB chunk takes seconds, and the progress
                    # screens' network rate should move meanwhile
                    while piece := f.read(READ_PIECE):
                        traffic.count_received(len(piece))
                        pieces.append(piece)
                    return pieces[0] if len(pieces) == 1 else b"".join(pieces)
            except FileNotFoundError:
                raise ObjectMissing(f"{self.url}/{name} does not exist") from None
        return self._do(f"reading {name}", attempt)

    def write(self, name: str, data: bytes, *, durable: bool = False) -> None:
        final = self._path(name)
        tmp = self._path(f"tmp/{name.rsplit('/', 1)[-1]}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")

        def attempt(sftp):
            try:
                self._put(sftp, tmp, data)
            except FileNotFoundError:  # tmp/ or the object's directory is new
                self._mkdirs(sftp, tmp.rsplit("/", 1)[0])
                self._put(sftp, tmp, data)
            try:
                sftp.posix_rename(tmp, final)
            except OSError as exc:
                if isinstance(exc, (FileNotFoundError,)) or exc.errno in (None, errno.ENOENT):
                    self._mkdirs(sftp, final.rsplit("/", 1)[0])
                    sftp.posix_rename(tmp, final)
                else:
                    raise
        self._do(f"writing {name}", attempt)
        traffic.count_sent(len(data))

    @staticmethod
    def _put(sftp: paramiko.SFTPClient, path: str, data: bytes) -> None:
        with sftp.open(path, "wb") as f:
            f.set_pipelined(True)
            f.write(data)

    @staticmethod
    def _mkdirs(sftp: paramiko.SFTPClient, path: str) -> None:
        parts, todo = path, []
        while parts and parts != "/":
            try:
                sftp.stat(parts)
                break
            except FileNotFoundError:
                todo.append(parts)
                parts = parts.rsplit("/", 1)[0] or "/"
        for p in reversed(todo):
            with contextlib.suppress(OSError):
                sftp.mkdir(p)

    def exists(self, name: str) -> bool:
        return self.size(name) is not None

    def size(self, name: str) -> int | None:
        def attempt(sftp):
            try:
                return sftp.stat(self._path(name)).st_size
            except FileNotFoundError:
                return None
        return self._do(f"looking at {name}", attempt)

    def list(self, prefix: str) -> Iterator[tuple[str, int]]:
        base, _, _ = prefix.rpartition("/")
        return iter(self._do(f"listing {prefix or '/'}", lambda sftp: list(self._walk(sftp, base, prefix))))

    def _walk(self, sftp, rel: str, prefix: str) -> Iterator[tuple[str, int]]:
        try:
            entries = sftp.listdir_attr(self._path(rel))
        except FileNotFoundError:
            return
        for e in entries:
            name = f"{rel}/{e.filename}" if rel else e.filename
            if stat.S_ISDIR(e.st_mode or 0):
                if prefix.startswith(name + "/") or name.startswith(prefix) or not prefix:
                    yield from self._walk(sftp, name, prefix)
            elif name.startswith(prefix):
                yield name, e.st_size or 0

    def delete(self, name: str) -> None:
        def attempt(sftp):
            with contextlib.suppress(FileNotFoundError):
                sftp.remove(self._path(name))
            if name.startswith("images/") and name.count("/") == 2:
                with contextlib.suppress(OSError):
                    sftp.rmdir(self._path(name.rsplit("/", 1)[0]))
        self._do(f"deleting {name}", attempt)

    def lock(self, scope: str, exclusive: bool):
        return self._locks.hold(scope, exclusive)

    def sync(self) -> None:
        pass  # the server applies our requests in order; see the module's docstring

    def free_bytes(self) -> int | None:
        return None  # paramiko does not expose statvfs@openssh.com

    def clean_partial(self) -> None:
        mine = f".{socket.gethostname()}.{os.getpid()}."
        for name, _ in self.list("tmp/"):
            if name.endswith(".part") and mine in name:
                self.delete(name)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._client.close()


def _ssh_config(host: str) -> dict:
    path = Path.home() / ".ssh" / "config"
    if not path.exists():
        return {}
    return paramiko.SSHConfig.from_path(str(path)).lookup(host)
