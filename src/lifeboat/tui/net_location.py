"""The network form's fields as URLs `lifeboat.repo.location` parses, the last locations used (without
secrets) and the named locations of the stick's lifeboat-repos.toml."""

from __future__ import annotations

import json
import logging
import os
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from urllib.parse import quote

from lifeboat.errors import LifeboatError
from lifeboat.repo.location import Scheme, parse_location
from lifeboat.tui.backend import NamedLocation

log = logging.getLogger("lifeboat.tui")

REPOS_TOML = "lifeboat-repos.toml"
RECENT_MAX = 8


class NetKind(StrEnum):
    SSH = "ssh"
    SMB = "smb"
    NFS = "nfs"
    S3 = "s3"
    HTTP = "http"
    HTTPS = "https"
    DIRECTORY = "file"

    @property
    def label(self) -> str:
        return {"ssh": "SSH (SFTP)", "smb": "SMB (Windows share)", "nfs": "NFS", "s3": "S3",
                "http": "HTTP (read-only)", "https": "HTTPS (read-only)", "file": "Local directory"}[self.value]

    @property
    def server_label(self) -> str:
        return {"s3": "Bucket", "file": "(none)"}.get(self.value, "Server")

    @property
    def path_label(self) -> str:
        return {"smb": "Share/path", "nfs": "Export/path", "s3": "Prefix", "file": "Directory"}.get(self.value, "Path")

    @property
    def takes_user(self) -> bool:
        return self not in (NetKind.NFS, NetKind.DIRECTORY)


@dataclass(frozen=True)
class FormFields:
    kind: NetKind
    server: str = ""
    path: str = ""
    port: str = ""
    user: str = ""


def build_url(f: FormFields) -> str:
    """The URL for the form's fields, checked by parse_location (BadLocation says what is wrong). The user
    goes into ssh:// and smb:// URLs as location.py reads them; a password never does."""
    path = "/" + "/".join(quote(p) for p in f.path.strip().split("/") if p)
    if f.kind is NetKind.DIRECTORY:
        url = "file://" + path
    else:
        user = f"{quote(f.user.strip(), safe='')}@" if f.user.strip() and f.kind in (NetKind.SSH, NetKind.SMB) else ""
        port = f":{f.port.strip()}" if f.port.strip() and f.kind is not NetKind.S3 else ""
        url = f"{f.kind.value}://{user}{f.server.strip()}{port}{path if path != '/' else ''}"
        if f.kind in (NetKind.SSH, NetKind.HTTP, NetKind.HTTPS) and path == "/":
            url += "/"
    parse_location(url)
    return url


def fields_of(url: str) -> FormFields:
    """The form's fields for a URL (a recent or named location), to fill the form with."""
    loc = parse_location(url)
    kind = NetKind.DIRECTORY if loc.scheme is Scheme.LOCAL else NetKind(loc.scheme.value)
    return FormFields(kind, "" if kind is NetKind.DIRECTORY else loc.host, loc.path, str(loc.port or ""), loc.user)


def config_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "lifeboat"


class RecentLocations:
    """The last network locations used, newest first: URLs only (a URL never holds a password). Saved in
    the config directory, or kept in memory when there is no writable place."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else config_dir() / "recent-locations.json"
        self.urls: list[str] = []
        try:
            data = json.loads(self.path.read_text())
            self.urls = [u for u in data.get("recent", []) if isinstance(u, str)][:RECENT_MAX]
        except (OSError, ValueError, AttributeError):
            pass

    def add(self, url: str) -> None:
        parse_location(url)  # only what location.py accepts, so never a URL with a password
        self.urls = [url, *[u for u in self.urls if u != url]][:RECENT_MAX]
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"recent": self.urls}, indent=1) + "\n")
            tmp.replace(self.path)
        except OSError as error:
            log.info("recent locations kept in memory only: %s", error)


def read_named_locations(path: Path) -> list[NamedLocation]:
    """[name] tables with url = "…" and an optional description. Secrets are not read from it: a stick
    gets lost, and the TUI asks for passwords."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return []
    except (OSError, tomllib.TOMLDecodeError) as error:
        log.warning("%s is unreadable: %s", path, error)
        return []
    found = []
    for name, table in data.items():
        if not isinstance(table, dict) or not isinstance(table.get("url"), str):
            log.warning("%s: [%s] has no url = \"…\"; skipped", path, name)
            continue
        if any(k in table for k in ("password", "passphrase", "secret_key")):
            log.warning("%s: [%s] holds a secret, which is ignored: the TUI asks for it", path, name)
        try:
            parse_location(table["url"])
        except LifeboatError as error:  # BadLocation: name the entry and go on
            log.warning("%s: [%s]: %s", path, name, error)
            continue
        found.append(NamedLocation(name, table["url"], str(table.get("description", ""))))
    return found
