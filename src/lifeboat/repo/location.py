"""`--repo` as the user wrote it, parsed in one place, and the backend that serves it.

    /dir, ./dir, file:///dir            a local directory (as every earlier Lifeboat)
    ssh://[user@]host[:port]/path       SFTP (sftp:// is the same)
    s3://bucket[/prefix]                any S3-compatible service (AWS_ENDPOINT_URL for others than AWS)
    http://host[:port]/path, https://…  read-only, from any static web server
    smb://[user@]server/share[/path]    mounted by the kernel's cifs client, then a local directory
    nfs://server[:port]/export[/path]   mounted by the kernel's nfs client, then a local directory

Anything else of the form `scheme://` is refused with this list: a URL Lifeboat did not understand
must never become a local directory named `ssh:`. A password written into the URL is refused too: it
would be visible in the process list and the shell's history.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from lifeboat.errors import RepositoryError


# The protocol libraries log requests, headers and key exchange at DEBUG; `lifeboat -v` logs our own commands only.
for _noisy in ("paramiko", "botocore", "boto3", "urllib3", "s3transfer"):
    logging.getLogger(_noisy).setLevel(logging.WARNING)


class Scheme(StrEnum):
    LOCAL = "file"
    SSH = "ssh"
    S3 = "s3"
    HTTP = "http"
    HTTPS = "https"
    SMB = "smb"
    NFS = "nfs"


ALIASES = {"sftp": Scheme.SSH, "cifs": Scheme.SMB}
SUPPORTED = "a directory, file://, ssh:// (or sftp://), s3://, http://, https://, smb:// or nfs://"
_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP_RE = re.compile(r"^[^/@:]+@[^/:]+:")


class BadLocation(RepositoryError):
    exit_code = 2


@dataclass(frozen=True)
class Location:
    scheme: Scheme
    path: str  # local: the directory; ssh/http/smb/nfs: the path on the server; s3: the key prefix
    host: str = ""  # s3: the bucket
    port: int | None = None
    user: str = ""
    options: tuple[tuple[str, str], ...] = ()  # ?vers=1.0 and the like (smb, nfs)

    @property
    def is_network(self) -> bool:
        return self.scheme is not Scheme.LOCAL

    def option(self, key: str, default: str = "") -> str:
        return dict(self.options).get(key, default)

    def display(self) -> str:
        """The location as shown and logged: never a secret (there is none in a Location)."""
        if self.scheme is Scheme.LOCAL:
            return self.path
        user = f"{self.user}@" if self.user else ""
        port = f":{self.port}" if self.port else ""
        path = self.path if self.path.startswith("/") or not self.path else f"/{self.path}"
        return f"{self.scheme}://{user}{self.host}{port}{path}"


def parse_location(text: str) -> Location:
    """A Location, or BadLocation naming what is wrong with `text`."""
    m = _SCHEME_RE.match(text)
    if not m:
        if not text.strip():
            raise BadLocation("the repository location is empty")
        _refuse_near_urls(text)
        return Location(Scheme.LOCAL, str(Path(text).absolute()))
    name = m.group(1).lower()
    scheme = ALIASES.get(name)
    if scheme is None:
        try:
            scheme = Scheme(name)
        except ValueError:
            raise BadLocation(f"unknown repository scheme {name}:// in {text!r}: Lifeboat takes {SUPPORTED}") from None
    parts = urlsplit(text)
    if parts.password is not None:
        raise BadLocation(f"{scheme}:// location with a password in it: give the password in a credentials file "
                          "(mode 0600), the standard environment variables or at the prompt, never on the command line")
    if scheme is Scheme.LOCAL:
        if parts.netloc not in ("", "localhost"):
            raise BadLocation(f"file:// takes a local path (file:///dir), not a host: {text!r}")
        return Location(Scheme.LOCAL, str(Path(unquote(parts.path) or "/").absolute()))
    return _network(scheme, parts, text)


def _refuse_near_urls(text: str) -> None:
    """`ssh:/dir` and scp's `user@host:/dir` are typos for URLs, not directory names to create."""
    head = text.split(":", 1)[0].lower() if ":" in text else ""
    if head in {*Scheme, *ALIASES} and head != "file":
        raise BadLocation(f"{text!r} looks like a {head}:// location with a slash missing: write {head}://…")
    if _SCP_RE.match(text):
        raise BadLocation(f"{text!r} looks like scp's user@host:path; write ssh://user@host/path")


def _network(scheme: Scheme, parts, text: str) -> Location:
    host = parts.hostname or ""
    if not host:
        what = "bucket" if scheme is Scheme.S3 else "server"
        raise BadLocation(f"{text!r} names no {what}: write {scheme}://{what.upper()}/…")
    try:
        port = parts.port
    except ValueError:
        raise BadLocation(f"{text!r}: the port is not a number between 0 and 65535") from None
    path = unquote(parts.path)
    if scheme is Scheme.S3:
        if port or parts.username:
            raise BadLocation(f"{text!r}: s3:// takes s3://BUCKET/PREFIX; the endpoint comes from AWS_ENDPOINT_URL")
        path = path.strip("/")
        host = parts.netloc  # bucket names keep their case
    elif scheme in (Scheme.SMB, Scheme.NFS) and len([p for p in path.split("/") if p]) < 1:
        what = "share" if scheme is Scheme.SMB else "export"
        raise BadLocation(f"{text!r} names no {what}: write {scheme}://SERVER/{what.upper()}[/path]")
    if ".." in path.split("/"):
        raise BadLocation(f"{text!r}: '..' is not allowed in a repository path")
    options = tuple(parse_qsl(parts.query))
    return Location(scheme, path or "/", host, port, unquote(parts.username or ""), options)


_open_lock = threading.Lock()
_backends: dict[str, object] = {}


def open_backend(text: str, credentials=None, accept_host_key=None):
    """The backend for `text`. Network backends stay open for the process and are shared: a restore that
    reopens the repository its plan named reuses the connection (and asks for nothing again).
    `accept_host_key(host, fingerprint)`: decides on an unknown SSH host key (default: ask at the terminal)."""
    location = parse_location(text)
    if location.scheme is Scheme.LOCAL:
        from lifeboat.repo.local import LocalBackend
        from lifeboat.repo.mounts import on_network_filesystem

        # a share mounted earlier (a restore reopens its plan's repository by its mount point) is network traffic
        return LocalBackend(Path(location.path), network=on_network_filesystem(Path(location.path)))
    key = location.display()
    with _open_lock:
        if key not in _backends:
            _backends[key] = _connect(location, credentials, accept_host_key)
        return _backends[key]


def _connect(location: Location, credentials, accept_host_key=None):
    from lifeboat.repo.credentials import credentials_for

    creds = credentials if credentials is not None else credentials_for(location)
    if location.scheme is Scheme.SSH:
        from lifeboat.repo.sftp import SftpBackend

        from lifeboat.repo.credentials import confirm_host_key

        return SftpBackend(location, creds, accept=accept_host_key or confirm_host_key)
    if location.scheme is Scheme.S3:
        from lifeboat.repo.s3 import S3Backend

        return S3Backend(location, creds)
    if location.scheme in (Scheme.HTTP, Scheme.HTTPS):
        from lifeboat.repo.http import HttpBackend

        return HttpBackend(location, creds)
    from lifeboat.repo.mounts import mount_share

    return mount_share(location, creds)


def forget_backends() -> None:
    """Close every shared network backend (tests; the end of a process)."""
    with _open_lock:
        for backend in _backends.values():
            backend.close()
        _backends.clear()
