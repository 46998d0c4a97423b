"""A Backend with made-up disks and images: for unit tests and `lifeboat tui --demo`.

Jobs pretend to move bytes (sleeping a little per step), honour `cancel`, and can be told to fail
part-way (`fail_at`) or to wait at a gate (`gate`) so tests can act while a job is running.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from lifeboat.devices import Disk, Partition
from lifeboat.events import LogLine, Progress, ProgressSink, StepFinished, StepStarted
from lifeboat.errors import Cancelled, LifeboatError, TargetTooSmall, UnsafeTarget
from lifeboat.repo import netwait
from lifeboat.repo.crypto import WrongPassphrase
from lifeboat.repo.location import parse_location
from lifeboat.tui.backend import (BrowseView, CapturePlanView, ImageInfo, JobOutcome, LayoutRow, Login, LuksAnswer,
                                  LuksContainer, NamedLocation, NeedsPassphrase, Probe, ProbeState, RepoLocation,
                                  RestorePlanView)
from lifeboat.volumes.luks import WrongLuksPassphrase

GiB = 1024**3
MiB = 1024**2
DEMO_REPO = "/srv/lifeboat-demo"
DEMO_NAS = "smb://tech@nas.local/backups/lifeboat"
DEMO_VAULT = "ssh://lifeboat@vault.example/srv/images"  # encrypted; passphrase DEMO_PASSPHRASE
DEMO_PASSWORD = "nas-secret-pw"
DEMO_PASSPHRASE = "correct horse battery staple"


def _part(disk: str, number: int, start: int, size: int, fstype: str, label: str = "", mounts=()) -> Partition:
    return Partition(f"{disk}{number}", number, start, size, fstype, label, mountpoints=tuple(mounts))


def demo_disks() -> list[Disk]:
    laptop = Disk(
        "/dev/sda", "sda", 256 * GiB, "Samsung SSD 860", "S3Z9NB0K123", "ata", table="gpt",
        partitions=(
            _part("/dev/sda", 1, MiB, 512 * MiB, "vfat", "EFI"),
            _part("/dev/sda", 2, 513 * MiB, 240 * GiB, "ext4", "root"),
            _part("/dev/sda", 3, 241 * GiB, 8 * GiB, "swap"),
        ),
    )
    blank = Disk("/dev/sdb", "sdb", 500 * GiB, "WDC WD5000AAKX", "WCC2EUA12345", "ata")
    small = Disk(
        "/dev/sdc", "sdc", 64 * GiB, "Kingston A400", "50026B77", "ata", table="dos",
        partitions=(_part("/dev/sdc", 1, MiB, 64 * GiB - MiB, "ntfs", "DATA"),),
    )
    stick = Disk(
        "/dev/sdd", "sdd", 32 * GiB, "SanDisk Cruzer", "4C530001", "usb", removable=True, table="gpt",
        partitions=(_part("/dev/sdd", 1, MiB, 2 * GiB, "iso9660", "LIFEBOAT", ["/run/live/medium"]),),
        is_boot_medium=True, mountpoints=("/run/live/medium",), unsafe_reason="Lifeboat runs from this disk",
    )
    return [laptop, blank, small, stick]


def demo_images() -> list[ImageInfo]:
    return [
        ImageInfo("laptop-2026-11-01", datetime(2026, 11, 1, 9, 30), "Samsung SSD 860", 256 * GiB,
                  ("p1 vfat 512.0 MiB", "p2 ext4 240.0 GiB", "p3 swap 8.0 GiB"), 41 * GiB),
        ImageInfo("office-pc", datetime(2026, 10, 12, 17, 5), "Kingston A400", 64 * GiB,
                  ("p1 ntfs 64.0 GiB",), 22 * GiB),
    ]


class FakeBackend:
    """Made-up disks and repositories; jobs take about `job_seconds`."""

    def __init__(self, job_seconds: float = 0.5, disks: list[Disk] | None = None):
        self.log_path = "/tmp/lifeboat-demo.log"
        self.job_seconds = job_seconds
        self.disks = list(disks if disks is not None else demo_disks())
        self.repos: dict[str, list[ImageInfo]] = {DEMO_REPO: demo_images(), "/media/usb-backup": [],
                                                  DEMO_NAS: demo_images()[1:], DEMO_VAULT: demo_images()[:1]}
        self.passwords = {DEMO_NAS: DEMO_PASSWORD}  # network locations that refuse other passwords
        self.passphrases = {DEMO_VAULT: DEMO_PASSPHRASE}  # encrypted repositories, locked until unlock()
        self.unlocked: set[str] = set()
        self.luks_passphrases: dict[str, str] = {}  # a crypto_LUKS partition's node -> the passphrase opening it
        self.image_luks: dict[str, tuple[tuple[LuksContainer, ...], str]] = {}  # image -> its containers, passphrase
        self.capture_plans: list[CapturePlanView | None] = []  # what run_capture was given
        self.rescue_timeouts: list[float | None] = []  # and its rescue time limit
        self.bootfix_passphrases: list[str] = []
        self.logins: list[tuple[str, Login]] = []
        self.offline: set[str] = set()  # servers with no route to them (DHCP not done): the real wait's messages
        self.fail_at: float | None = None  # fraction of a job at which to raise `failure`
        self.failure: LifeboatError = LifeboatError("read error on /dev/sda at offset 12884901888")
        self.gate: threading.Event | None = None  # when set, jobs wait for it after their first step
        self.started = threading.Event()  # set once a job has emitted its first progress
        self.calls: list[tuple] = []
        self._watchers: list[Callable[[], None]] = []

    # ---- discovery

    def list_disks(self) -> list[Disk]:
        return list(self.disks)

    def watch_disks(self, on_change: Callable[[], None]) -> Callable[[], None]:
        self._watchers.append(on_change)
        return lambda: self._watchers.remove(on_change) if on_change in self._watchers else None

    def plug(self, disk: Disk) -> None:
        """Pretend a disk was plugged in; watchers are told from another thread, as udev would."""
        self.disks.append(disk)
        self._notify()

    def unplug(self, path: str) -> None:
        self.disks = [d for d in self.disks if d.path != path]
        self._notify()

    def _notify(self) -> None:
        for watcher in list(self._watchers):
            threading.Thread(target=watcher, daemon=True).start()

    def find_repositories(self) -> list[RepoLocation]:
        return [
            RepoLocation(DEMO_REPO, "sdd2 ext4 'LIFEBOAT-DATA' (the stick's data partition)", len(self.repos[DEMO_REPO])),
            RepoLocation("/media/usb-backup", "sde1 exfat 'BACKUP' (mounted)", len(self.repos["/media/usb-backup"])),
        ]

    def list_images(self, repo_path: str) -> list[ImageInfo]:
        if repo_path not in self.repos:
            raise LifeboatError(f"{repo_path} is not an image repository")
        if repo_path in self.passphrases and repo_path not in self.unlocked:
            raise NeedsPassphrase(f"{repo_path} is encrypted: its passphrase is needed")
        return list(self.repos[repo_path])

    # ---- network and encrypted repositories

    def named_locations(self) -> list[NamedLocation]:
        return [NamedLocation("office-nas", DEMO_NAS, "the office NAS"), NamedLocation("vault", DEMO_VAULT)]

    def probe_location(self, url: str, login: Login, trust_host_key: str = "") -> Probe:
        location = parse_location(url)
        if location.host in self.offline:  # the real wait, on a clock that runs 10 s per probe
            ticks = iter(range(0, 3600, 10))
            netwait.wait_for_route(location.host, location.port or 445, timeout=30,
                                   probe=lambda host, _: netwait.RouteProbe(netwait.RouteState.NO_ROUTE, host),
                                   sleep=lambda _: None, clock=lambda: next(ticks))
        self.logins.append((url, login))
        self.calls.append(("probe", url))
        if url in self.passwords and login.password != self.passwords[url]:
            raise LifeboatError(f"{url}: the server refused the user name or password")
        if url in self.passphrases and url not in self.unlocked:
            return Probe(ProbeState.LOCKED)
        if url not in self.repos:
            return Probe(ProbeState.EMPTY)
        return Probe(ProbeState.READY, tuple(self.repos[url]), "SMB 3.1.1" if url.startswith("smb:") else "")

    def unlock(self, url: str, passphrase: str) -> list[ImageInfo]:
        self.calls.append(("unlock", url))
        if self.passphrases.get(url) != passphrase:
            raise WrongPassphrase(f"wrong passphrase for the encrypted repository {url}")
        self.unlocked.add(url)
        return list(self.repos[url])

    def create_encrypted(self, url: str, passphrase: str) -> None:
        self.calls.append(("create_encrypted", url))
        self.repos[url] = []
        self.passphrases[url] = passphrase
        self.unlocked.add(url)

    # ---- LUKS containers

    def luks_containers(self, source: Disk) -> tuple[LuksContainer, ...]:
        return tuple(LuksContainer(p.number, p.path, "2", p.uuid, p.label, p.size) for p in source.partitions
                     if p.fstype == "crypto_LUKS")

    def check_luks_passphrase(self, container: LuksContainer, passphrase: str) -> None:
        self.calls.append(("check_luks", container.node))
        if self.luks_passphrases.get(container.node) != passphrase:
            raise WrongLuksPassphrase(f"wrong passphrase for the LUKS container on partition {container.partition} "
                                      f"({container.node}): no key slot opens with it; nothing was written")

    def plan_capture(self, source: Disk, repo_path: str, answers: tuple[LuksAnswer, ...]) -> CapturePlanView:
        self.calls.append(("plan_capture", source.path, repo_path, tuple((a.partition, a.copy_whole) for a in answers)))
        opened = {a.partition for a in answers if not a.copy_whole}
        lines = [f"Capture {source.path} ({source.model}, {_gib(source.size)}) into {repo_path}"]
        for p in source.partitions:
            if p.fstype != "crypto_LUKS":
                lines.append(f"  partition {p.number}: {p.fstype} {_gib(p.size)}, used blocks, {_gib(p.size // 3)} to read")
            elif p.number in opened:
                lines += [f"  partition {p.number}: LUKS2 container, opened read-only with the passphrase",
                          f"    contents: ext4 {_gib(p.size - 16 * MiB)}, used blocks, {_gib(p.size // 4)} to read; "
                          "a backup of its header is kept"]
            else:
                lines.append(f"  partition {p.number}: LUKS2 container, copied whole ({_gib(p.size)}): encrypted data "
                             "does not compress")
        plaintext = bool(opened) and repo_path not in self.passphrases
        return CapturePlanView(source, repo_path, tuple(lines), plaintext, plan=answers)

    def image_luks_containers(self, repo_path: str, image: str) -> tuple[LuksContainer, ...]:
        return self.image_luks.get(image, ((), ""))[0]

    def check_image_luks_passphrase(self, repo_path: str, image: str, partition: int, passphrase: str) -> None:
        self.calls.append(("check_image_luks", image, partition))
        if self.image_luks[image][1] != passphrase:
            raise WrongLuksPassphrase(f"wrong passphrase for the LUKS container of partition {partition} in image "
                                      f"{image!r}: no key slot opens with it; nothing was written")

    def bootfix_luks_containers(self, disk: Disk) -> tuple[LuksContainer, ...]:
        return self.luks_containers(disk)

    # ---- restore

    def plan_restore(self, repo_path: str, image: str, target: Disk, luks_passphrase: str = "") -> RestorePlanView:
        if image in self.image_luks and self.image_luks[image][1] != luks_passphrase:
            raise WrongLuksPassphrase(f"wrong passphrase for the LUKS containers of image {image!r}")
        info = next(i for i in self.list_images(repo_path) if i.name == image)
        if target.unsafe_reason:
            raise UnsafeTarget(f"{target.path}: {target.unsafe_reason}")
        if target.size < info.source_size:
            short = (info.source_size - target.size) / GiB
            raise TargetTooSmall(f"{target.path} is {short:.1f} GiB too small for {image}")
        source_disk = next((d for d in demo_disks() if d.model == info.source_model), demo_disks()[0])
        current = tuple(LayoutRow(p.number, p.start, p.size, p.fstype, p.label) for p in target.partitions)
        new = tuple(_grown_layout(source_disk, target.size))
        lines = [f"Write a {source_disk.table or 'gpt'} partition table to {target.path} ({target.model})"]
        lines += [f"Partition {r.number}: {r.fstype} {_gib(r.size)}" + (" (grows)" if r.grows else "") for r in new]
        lines.append("Reinstall the bootloader")
        return RestorePlanView(image, target, tuple(lines), current, new, plan=(repo_path, image, target.path))

    def run_restore(self, plan: RestorePlanView, progress: ProgressSink, cancel: threading.Event) -> JobOutcome:
        self.calls.append(("restore", plan.image, plan.target.path))
        items = [(f"partition {r.number} ({r.fstype})", r.size // 64) for r in plan.new if r.fstype != "swap"]
        self._pretend("restore", items, progress, cancel)
        progress(StepStarted("bootloader"))
        progress(StepFinished("bootloader", "done", "GRUB (UEFI) reinstalled"))
        return JobOutcome(("Every chunk's hash checked before it was written", "Bootloader: GRUB (UEFI) reinstalled"))

    # ---- capture, verify, bootfix

    def run_capture(self, source: Disk, name: str, repo_path: str, level: int, progress, cancel,
                    rescue: bool = False, plan: CapturePlanView | None = None,
                    rescue_timeout: float | None = None) -> JobOutcome:
        self.calls.append(("capture", source.path, name, repo_path, level, rescue))
        self.rescue_timeouts.append(rescue_timeout)
        self.capture_plans.append(plan)
        items = [(f"partition {p.number} ({p.fstype})", p.size // 64) for p in source.partitions if p.fstype != "swap"]
        self._pretend("capture", items or [("whole disk", source.size // 64)], progress, cancel)
        stored = sum(size for _, size in items) // 3
        parts = tuple(f"p{p.number} {p.fstype} {_gib(p.size)}" for p in source.partitions)
        self.repos.setdefault(repo_path, []).append(
            ImageInfo(name, datetime.now(), source.model, source.size, parts, stored)
        )
        return JobOutcome((f"Image {name} written to {repo_path}", f"Stored {_gib(stored)} (zstd level {level})"))

    def open_image(self, repo_path: str, image: str) -> BrowseView:
        """A made-up tree standing in for the image's mounted filesystems."""
        self.calls.append(("open", repo_path, image))
        root = tempfile.mkdtemp(prefix="lifeboat-demo-browse-")
        docs = os.path.join(root, "p2-ext4", "home", "ana", "Documents")
        os.makedirs(docs)
        with open(os.path.join(docs, "thesis.txt"), "w") as f:
            f.write("chapter 1\n" * 1000)
        os.makedirs(os.path.join(root, "p3-ntfs", "Users"))
        return BrowseView(image, root, "p1 (the running kernel has no vfat driver)")

    def close_image(self, view: BrowseView) -> None:
        self.calls.append(("close", view.image))
        shutil.rmtree(view.root, ignore_errors=True)

    def run_verify(self, repo_path: str, image: str, progress, cancel) -> JobOutcome:
        self.calls.append(("verify", repo_path, image))
        info = next(i for i in self.list_images(repo_path) if i.name == image)
        self._pretend("verify", [("chunks", max(info.stored_bytes, MiB))], progress, cancel)
        return JobOutcome((f"Image {image}: every chunk and the manifest check out",))

    def run_bootfix(self, disk: Disk, progress, cancel, luks_passphrase: str = "") -> JobOutcome:
        self.calls.append(("bootfix", disk.path))
        self.bootfix_passphrases.append(luks_passphrase)
        progress(StepStarted("bootloader", f"{disk.path}"))
        self._pretend("bootfix", [("grub-install", MiB)], progress, cancel)
        progress(StepFinished("bootloader", "done", "GRUB (UEFI) reinstalled, NVRAM entry added"))
        return JobOutcome(("GRUB (UEFI) reinstalled on " + disk.path, "NVRAM boot entry 'debian' added"))

    def power(self, action: str) -> None:
        self.calls.append(("power", action))

    # ---- the pretend work

    def _pretend(self, phase: str, items: list[tuple[str, int]], progress: ProgressSink, cancel: threading.Event) -> None:
        total = sum(size for _, size in items) or 1
        steps_per_item = 10
        done_before = 0
        for item, size in items:
            pause = self.job_seconds * size / total / steps_per_item
            progress(StepStarted(item))
            for step in range(1, steps_per_item + 1):
                if cancel.is_set():
                    raise Cancelled()
                item_done = size * step // steps_per_item
                progress(Progress(phase, item, item_done, size, done_before + item_done, total))
                self.started.set()
                self._maybe_wait(cancel)
                if self.fail_at is not None and (done_before + item_done) / total >= self.fail_at:
                    progress(LogLine(str(self.failure), "error"))
                    raise self.failure
                time.sleep(pause)
            done_before += size
            progress(StepFinished(item))

    def _maybe_wait(self, cancel: threading.Event) -> None:
        while self.gate is not None and not self.gate.is_set() and not cancel.is_set():
            self.gate.wait(0.02)


def _grown_layout(source: Disk, target_size: int) -> list[LayoutRow]:
    """Data partitions grow in proportion (ESP and swap keep their size), like the engine's fit."""
    fixed = sum(p.size for p in source.partitions if p.fstype in ("vfat", "swap"))
    growable = sum(p.size for p in source.partitions if p.fstype not in ("vfat", "swap")) or 1
    factor = max(1.0, (target_size - fixed - 2 * MiB) / growable)
    rows, start = [], MiB
    for p in source.partitions:
        grows = p.fstype not in ("vfat", "swap") and factor > 1.0001
        size = int(p.size * factor) // MiB * MiB if grows else p.size
        rows.append(LayoutRow(p.number, start, size, p.fstype, p.label, grows))
        start += size
    return rows


def _gib(n: int) -> str:
    return f"{n / GiB:.1f} GiB" if n >= GiB else f"{n / MiB:.0f} MiB"


def with_unsafe(disk: Disk, reason: str) -> Disk:
    return replace(disk, unsafe_reason=reason)
