"""What the TUI asks of the rest of Lifeboat, as one Protocol.

The app is built against this interface, so tests and `--demo` inject a FakeBackend and the real
program injects an EngineBackend. Every `run_*` call is synchronous and is made from a worker thread:
it reports through `progress` (a sink for `lifeboat.events`), stops when `cancel` is set by
raising `lifeboat.errors.Cancelled`, and raises `LifeboatError` for anything a user should read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Protocol

from lifeboat.devices import Disk
from lifeboat.errors import LifeboatError
from lifeboat.events import ProgressSink


@dataclass(frozen=True)
class ImageInfo:
    """One image in a repository, as the image list shows it."""

    name: str
    created: datetime | None = None
    source_model: str = ""
    source_size: int = 0
    partitions: tuple[str, ...] = ()  # short descriptions: "p1 vfat 512.0 MiB"
    stored_bytes: int = 0
    unreadable_bytes: int = 0  # a rescue image: bytes that could not be read at capture (restored as zeros)


@dataclass(frozen=True)
class RepoLocation:
    """A place that holds (or may hold) an image repository."""

    path: str
    description: str = ""  # "sdb3 ext4 'LIFEBOAT' (the stick's data partition)"
    image_count: int | None = None  # None when unknown / not a repository yet
    note: str = ""  # why it cannot be used, "" when it can


@dataclass(frozen=True)
class LayoutRow:
    """One partition in a layout, for the side-by-side plan view."""

    number: int
    start: int
    size: int
    fstype: str = ""
    label: str = ""
    grows: bool = False
    shrinks: bool = False


@dataclass(frozen=True)
class RestorePlanView:
    """A restore plan as the confirmation screen shows it; `plan` is what `run_restore` executes."""

    image: str
    target: Disk
    lines: tuple[str, ...]  # plan.describe()
    current: tuple[LayoutRow, ...]  # what is on the target today
    new: tuple[LayoutRow, ...]  # what will be written
    plan: object = None

    def describe(self) -> list[str]:
        return list(self.lines)


@dataclass(frozen=True)
class BrowseView:
    """An image opened for browsing: its filesystems mounted read-only under `root`."""

    image: str
    root: str
    note: str = ""  # what could not be shown, and why


@dataclass(frozen=True)
class JobOutcome:
    """What a finished job says about itself, one line each: 'All 312 chunks verified'."""

    lines: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class NamedLocation:
    """A location a technician named in lifeboat-repos.toml on the stick's data partition."""

    name: str
    url: str
    description: str = ""


@dataclass(frozen=True)
class Login:
    """What the network form collected. Held in memory only: never logged, never saved, never in a URL."""

    user: str = ""
    password: str = field(default="", repr=False)  # also the S3 secret key; user is then the access key id
    key_file: str = ""  # ssh: a private key file


class ProbeState(StrEnum):
    READY = "ready"  # a repository, its images listed
    LOCKED = "locked"  # an encrypted repository: unlock() with its passphrase
    EMPTY = "empty"  # reachable, no repository yet: a capture (or create_encrypted) makes one


@dataclass(frozen=True)
class Probe:
    state: ProbeState
    images: tuple[ImageInfo, ...] = ()
    detail: str = ""  # "SMB 3.1.1", "Clonezilla images"...


@dataclass(frozen=True)
class LuksContainer:
    """A LUKS container the TUI asks the passphrase of: on the capture source, in an image, on a disk to repair."""

    partition: int
    node: str = ""  # /dev/sda3; "" for a container in an image
    version: str = ""  # "2"
    uuid: str = ""
    label: str = ""
    size: int = 0  # bytes of the whole container: what a whole copy takes
    unavailable: str = ""  # why it cannot be opened on this system ("no device-mapper"): not asked, copied whole

    def describe(self) -> str:
        facts = ", ".join(x for x in (f"UUID {self.uuid}" if self.uuid else "",
                                      f"label {self.label!r}" if self.label else "") if x)
        where = f"partition {self.partition}" + (f" ({self.node})" if self.node else "")
        return f"{where}: LUKS{self.version or '?'} container" + (f", {facts}" if facts else "")


@dataclass(frozen=True)
class LuksAnswer:
    """What the user answered for one container: its passphrase, or "" to copy it whole (encrypted)."""

    partition: int
    passphrase: str = field(default="", repr=False)

    @property
    def copy_whole(self) -> bool:
        return not self.passphrase


@dataclass(frozen=True)
class CapturePlanView:
    """What a capture will do, shown before it starts when the source holds LUKS containers; `plan` is what
    `run_capture` executes (the inspected source, keys held in memory)."""

    source: Disk
    repo_path: str
    lines: tuple[str, ...]
    plaintext: bool = False  # opened contents would be stored decrypted in an unencrypted repository
    plan: object = field(default=None, repr=False)


class NeedsPassphrase(LifeboatError):
    """The repository is encrypted and not unlocked yet in this session."""


class Backend(Protocol):
    log_path: str  # where the full log is written, shown in error dialogs

    def list_disks(self) -> list[Disk]: ...

    def watch_disks(self, on_change: Callable[[], None]) -> Callable[[], None]:
        """Call `on_change()` (from any thread) when disks come or go; returns a function that stops watching."""
        ...

    def find_repositories(self) -> list[RepoLocation]: ...

    def list_images(self, repo_path: str) -> list[ImageInfo]:
        """NeedsPassphrase when the repository is encrypted and unlock() was not called yet."""
        ...

    def named_locations(self) -> list[NamedLocation]:
        """The stick's lifeboat-repos.toml, [] when there is none."""
        ...

    def probe_location(self, url: str, login: Login, trust_host_key: str = "") -> Probe:
        """Connect to `url` with `login` (kept for this session's later opens of `url`) and look what is there.
        `trust_host_key`: an SSH host key fingerprint the user accepted."""
        ...

    def unlock(self, url: str, passphrase: str) -> list[ImageInfo]:
        """Open an encrypted repository for this session; WrongPassphrase (a LifeboatError) when it does not fit."""
        ...

    def create_encrypted(self, url: str, passphrase: str) -> None: ...

    def plan_restore(self, repo_path: str, image: str, target: Disk, luks_passphrase: str = "") -> RestorePlanView:
        """`luks_passphrase` re-opens the image's re-created LUKS containers (image_luks_containers)."""
        ...

    def image_luks_containers(self, repo_path: str, image: str) -> tuple[LuksContainer, ...]:
        """The LUKS containers whose opened contents the image holds: a restore needs their passphrase."""
        ...

    def check_image_luks_passphrase(self, repo_path: str, image: str, partition: int, passphrase: str) -> None:
        """WrongLuksPassphrase (a LifeboatError) unless it opens the header backup of the image's container on
        `partition`."""
        ...

    def luks_containers(self, source: Disk) -> tuple[LuksContainer, ...]:
        """The LUKS containers on the capture source, not opened."""
        ...

    def check_luks_passphrase(self, container: LuksContainer, passphrase: str) -> None:
        """WrongLuksPassphrase (a LifeboatError) unless `passphrase` opens a key slot of the container."""
        ...

    def plan_capture(self, source: Disk, repo_path: str, answers: tuple[LuksAnswer, ...]) -> CapturePlanView:
        """Inspect the source with the containers' passphrases: what is imaged by used blocks, what is copied whole."""
        ...

    def run_restore(self, plan: RestorePlanView, progress: ProgressSink, cancel: threading.Event) -> JobOutcome: ...

    def run_capture(
        self, source: Disk, name: str, repo_path: str, level: int, progress: ProgressSink, cancel: threading.Event,
        rescue: bool = False, plan: CapturePlanView | None = None, rescue_timeout: float | None = None,
    ) -> JobOutcome:
        """`plan`: from plan_capture (the LUKS containers' passphrases in it), None when none was asked.
        `rescue_timeout`: seconds the rescue may spend reading around damage (None: no limit)."""
        ...

    def run_verify(self, repo_path: str, image: str, progress: ProgressSink, cancel: threading.Event) -> JobOutcome: ...

    def open_image(self, repo_path: str, image: str) -> BrowseView: ...

    def close_image(self, view: BrowseView) -> None: ...

    def bootfix_luks_containers(self, disk: Disk) -> tuple[LuksContainer, ...]:
        """The LUKS containers on `disk` a repair could unlock to find a root inside; () when the repair cannot
        take a passphrase."""
        ...

    def run_bootfix(self, disk: Disk, progress: ProgressSink, cancel: threading.Event,
                    luks_passphrase: str = "") -> JobOutcome: ...

    def power(self, action: str) -> None:
        """'reboot' or 'poweroff'."""
        ...
