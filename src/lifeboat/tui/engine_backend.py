"""The Backend the real program uses: disks from udev, images from a repository, jobs from the engine."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime

from lifeboat.devices import Disk, human_size
from lifeboat.events import LogLine, Outcome, ProgressSink, StepStarted
from lifeboat.errors import Cancelled, ImageCorrupt, LifeboatError
from lifeboat.tui import repo_locations as locations
from lifeboat.tui import luks_backend
from lifeboat.tui.backend import (BrowseView, CapturePlanView, ImageInfo, JobOutcome, LayoutRow, Login, LuksAnswer,
                                  LuksContainer, NamedLocation, NeedsPassphrase, Probe, ProbeState, RepoLocation,
                                  RestorePlanView)

log = logging.getLogger("lifeboat.tui")

LOG_DIRS = ("/var/log/lifeboat", os.path.expanduser("~/.cache/lifeboat"), "/tmp")


def default_log_path() -> str:
    for directory in LOG_DIRS:
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError:
            continue
        if os.access(directory, os.W_OK):
            return os.path.join(directory, "lifeboat.log")
    return "/tmp/lifeboat.log"


class EngineBackend:
    def __init__(self, log_path: str | None = None, include_loop: bool = False) -> None:
        self.log_path = log_path or default_log_path()
        self.include_loop = include_loop
        self._unmounted: dict[str, locations.UnmountedRepo] = {}
        self._mounted: set[str] = set()

    # ---- discovery

    def list_disks(self) -> list[Disk]:
        from dataclasses import replace

        from lifeboat.devices import list_disks
        from lifeboat.engine.restore_marker import read_marker
        from lifeboat.health import read_health

        def described(disk: Disk) -> str:
            marker = read_marker(disk.path)  # a restore killed before its end left this on sector 0
            return marker.describe() if marker else ""

        return [replace(d, health=read_health(d.path), incomplete_restore=described(d))
                for d in list_disks(include_loop=self.include_loop)]

    def watch_disks(self, on_change: Callable[[], None]) -> Callable[[], None]:
        from lifeboat.devices import DiskMonitor

        monitor = DiskMonitor(on_change)
        try:
            monitor.start()
        except Exception as error:  # noqa: BLE001 - no udev (a container): the list just won't follow hotplug
            log.warning("disk hotplug is not watched: %s", error)
        return monitor.stop

    def find_repositories(self) -> list[RepoLocation]:
        """Mounted repositories (the stick's data partition first), then ones on unmounted partitions."""
        found = locations.mounted_repositories()
        if os.path.isdir(locations.DATA_MOUNT) and not any(r.path.startswith(locations.DATA_MOUNT) for r in found):
            found.append(RepoLocation(locations.DATA_MOUNT, "the stick's data partition (no images yet)", None))
        found.sort(key=lambda r: (not r.path.startswith(locations.DATA_MOUNT), r.path))
        if os.geteuid() == 0:
            elsewhere, how = locations.unmounted_repositories(self.list_disks())
            self._unmounted.update(how)
            found += elsewhere
        return found

    def _ready(self, repo_path: str) -> str:
        """A repository found on an unmounted partition is mounted the first time it is used."""
        for path, how in self._unmounted.items():
            if repo_path == path or repo_path.startswith(how.mount_point + os.sep):
                locations.mount_repository(how)
                self._mounted.add(path)
        return repo_path

    def close(self) -> None:
        """Unmount what this backend mounted."""
        for path in list(self._mounted):
            locations.unmount_repository(self._unmounted[path])
            self._mounted.discard(path)

    def _open(self, repo_path: str, create: bool = False):
        """The repository, never asking at the terminal (the TUI owns it): a locked encrypted one raises
        NeedsPassphrase until unlock() opened it once (the store keeps its key for the process)."""
        from lifeboat.repo.store import Repository

        def locked(what: str) -> str:
            raise NeedsPassphrase(f"{what.removeprefix('passphrase for ')} is encrypted: its passphrase is needed")

        return Repository.open(self._ready(repo_path), create=create, passphrase=locked)

    # ---- network and encrypted repositories

    def named_locations(self) -> list[NamedLocation]:
        from pathlib import Path

        from lifeboat.tui.net_location import REPOS_TOML, read_named_locations

        return read_named_locations(Path(locations.DATA_MOUNT, REPOS_TOML))

    def probe_location(self, url: str, login: Login, trust_host_key: str = "") -> Probe:
        from lifeboat.repo.credentials import Credentials
        from lifeboat.repo.location import Scheme, open_backend, parse_location
        from lifeboat.repo.store import MARKER

        location = parse_location(url)
        if location.scheme is Scheme.S3:
            creds = Credentials(access_key=login.user, secret_key=login.password, source="the TUI's form")
        elif login.user or login.password or login.key_file:
            creds = Credentials(user=login.user, password=login.password, key_file=login.key_file,
                                source="the TUI's form")
        else:
            creds = None  # keys, agent, credentials file or environment, as the CLI
        if location.is_network:
            backend = open_backend(url, credentials=creds,
                                   accept_host_key=lambda _host, fp: bool(trust_host_key) and fp == trust_host_key)
            root = getattr(backend, "root", None)  # a mounted share is a local directory
            if not backend.exists(MARKER) and not (root is not None and locations.is_clonezilla(str(root))):
                if backend.read_only:
                    raise LifeboatError(f"{url} holds no Lifeboat repository (no {MARKER}), and {location.scheme}:// "
                                        "is read-only: nothing can be captured there")
                return Probe(ProbeState.EMPTY)
        elif not os.path.exists(os.path.join(location.path, MARKER)) and not locations.is_clonezilla(location.path):
            return Probe(ProbeState.EMPTY)
        try:
            return Probe(ProbeState.READY, tuple(self.list_images(url)))
        except NeedsPassphrase:
            return Probe(ProbeState.LOCKED)

    def unlock(self, url: str, passphrase: str) -> list[ImageInfo]:
        from lifeboat.repo.store import Repository

        Repository.open(self._ready(url), passphrase=lambda _what: passphrase)
        return self.list_images(url)

    def create_encrypted(self, url: str, passphrase: str) -> None:
        from lifeboat.repo.location import open_backend
        from lifeboat.repo.store import Repository

        Repository.initialize(open_backend(self._ready(url)), passphrase=passphrase)
        Repository.open(url, passphrase=lambda _what: passphrase)  # the key stays known for this session
        log.info("created an encrypted repository at %s", url)

    def list_images(self, repo_path: str) -> list[ImageInfo]:
        from lifeboat.repo.manifest import list_images

        images = []
        for image in list_images(self._open(repo_path)):
            summary = image.summary
            if summary is None:
                log.warning("image %s is unreadable: %s", image.name, image.problem)
                continue
            images.append(
                ImageInfo(
                    name=image.name,
                    created=_parse_time(summary.created),
                    source_model=summary.source_model,
                    source_size=summary.source_size,
                    partitions=tuple(f"p{p.number} {p.fstype} {human_size(p.size)}" for p in summary.partitions),
                    stored_bytes=summary.data_bytes,
                    unreadable_bytes=sum(p.unreadable_bytes for p in summary.partitions)
                    + sum(v.unreadable_bytes for g in summary.volume_groups for v in g.lvs),
                )
            )
        return images

    # ---- LUKS containers (passphrases held in memory, handed to cryptsetup on a pipe: luks_backend)

    def luks_containers(self, source: Disk) -> tuple[LuksContainer, ...]:
        return luks_backend.containers_on(source)

    def check_luks_passphrase(self, container: LuksContainer, passphrase: str) -> None:
        luks_backend.check_passphrase(container, passphrase)

    def plan_capture(self, source: Disk, repo_path: str, answers: tuple[LuksAnswer, ...]) -> CapturePlanView:
        return luks_backend.plan_capture(source, self._open(repo_path, create=True), repo_path, answers)

    def image_luks_containers(self, repo_path: str, image: str) -> tuple[LuksContainer, ...]:
        return luks_backend.image_containers(self._open(repo_path), image)

    def check_image_luks_passphrase(self, repo_path: str, image: str, partition: int, passphrase: str) -> None:
        luks_backend.check_image_passphrase(self._open(repo_path), image, partition, passphrase)

    def bootfix_luks_containers(self, disk: Disk) -> tuple[LuksContainer, ...]:
        return luks_backend.bootfix_containers(disk)

    # ---- restore

    def plan_restore(self, repo_path: str, image: str, target: Disk, luks_passphrase: str = "") -> RestorePlanView:
        from lifeboat.engine.plan import plan_restore
        from lifeboat.volumes.luks import LuksKey

        key = LuksKey(luks_passphrase) if luks_passphrase else None
        plan = plan_restore(self._open(repo_path), image, target.path, luks_key=key)
        return RestorePlanView(
            image=image,
            target=plan.target_disk,
            lines=tuple(plan.describe()),
            current=tuple(_current_rows(plan, target)),
            new=tuple(_new_rows(plan)),
            plan=plan,
        )

    def run_restore(self, plan: RestorePlanView, progress: ProgressSink, cancel: threading.Event) -> JobOutcome:
        from lifeboat.engine.restore import bootloader_outcome, restore

        result = restore(plan.plan, progress=progress, cancel=cancel, bootloader=True)
        lines = [
            f"Wrote {human_size(result.bytes_written)} to {plan.target.path}; every chunk's hash was checked first.",
            f"Bootloader: {bootloader_outcome(result)}",
        ]
        lines += [f"{s.step}: {s.outcome}" + (f" ({s.detail})" if s.detail else "") for s in result.steps
                  if s.step.startswith(("bootloader", "grow", "swap")) and s.outcome is not Outcome.FAILED]
        warnings = tuple(f"{s.step}: {s.detail or s.outcome}" for s in result.failed_steps())
        return JobOutcome(tuple(lines), warnings)

    # ---- capture, verify, bootfix

    def run_capture(self, source: Disk, name: str, repo_path: str, level: int, progress, cancel,
                    rescue: bool = False, plan: CapturePlanView | None = None,
                    rescue_timeout: float | None = None) -> JobOutcome:
        from lifeboat.engine.capture import capture, inspect_source
        from lifeboat.engine.rescue import RescueOptions, unreadable_lines

        repo = self._open(repo_path, create=True)
        # the engine reads the table and the used-block maps before its first event: say so meanwhile
        progress(StepStarted("reading the source", f"{source.path}: partition table and used blocks"))
        options = RescueOptions(timeout=rescue_timeout) if rescue else None
        inspected: luks_backend.InspectedSource | None = plan.plan if plan else None
        keys = inspected.keys if inspected else None
        info = inspected.info if inspected and not rescue else None
        if rescue:
            info = inspect_source(source.path, progress, rescue=True, luks_key=keys)
        manifest = capture(source.path, name, repo, level=level, progress=progress, cancel=cancel, info=info,
                           rescue=options)
        used = manifest.data_bytes
        return JobOutcome((f"Image {name} of {source.name} stored in {repo_path} ({human_size(used)} of data, "
                           f"zstd level {level}).",), tuple(f"INCOMPLETE: {line}" for line in unreadable_lines(manifest)))

    def open_image(self, repo_path: str, image: str) -> BrowseView:
        from lifeboat.imagefs.mount import RUN_DIR, mount_image

        m = mount_image(repo_path, image, os.path.join(RUN_DIR, "browse", image))
        return BrowseView(image, m.dir, "; ".join(f"{space} ({why})" for space, why in m.skipped))

    def close_image(self, view: BrowseView) -> None:
        from lifeboat.imagefs.mount import umount_image

        umount_image(view.root)

    def run_verify(self, repo_path: str, image: str, progress, cancel) -> JobOutcome:
        from lifeboat.engine.verify import verify

        report = verify(self._open(repo_path), image, progress=progress, cancel=cancel)
        if cancel.is_set():
            raise Cancelled()
        if not report.ok:
            for problem in report.problems:
                progress(LogLine(problem, "error"))
            more = f" (and {len(report.problems) - 1} more, see the log)" if len(report.problems) > 1 else ""
            raise ImageCorrupt(f"image {image} is damaged: {report.problems[0]}{more}")
        # an image captured with --rescue is intact but incomplete: say where, as `lifeboat verify` does
        return JobOutcome((f"Verified: all {report.chunks} chunks ({human_size(report.bytes)}) of {image} are intact.",),
                          tuple(f"INCOMPLETE: {line}" for line in report.incomplete))

    def run_bootfix(self, disk: Disk, progress: ProgressSink, cancel: threading.Event,
                    luks_passphrase: str = "") -> JobOutcome:
        from lifeboat.boot import bootfix
        from lifeboat.volumes.luks import LuksKey

        if cancel.is_set():
            raise Cancelled()
        outcomes = bootfix(disk.path, progress, key=LuksKey(luks_passphrase) if luks_passphrase else None)
        failed = [o for o in outcomes if o.outcome == Outcome.FAILED]
        if failed or not outcomes:
            raise LifeboatError(str(failed[0]) if failed else f"nothing could be repaired on {disk.path}")
        locked = tuple(str(o) for o in outcomes if o.outcome == Outcome.NEEDS_PASSPHRASE)  # said, not a failure
        return JobOutcome(tuple(str(o) for o in outcomes if o.outcome != Outcome.NEEDS_PASSPHRASE), locked)

    def power(self, action: str) -> None:
        from lifeboat.devices import SANDBOX_ENV
        from lifeboat.run import run

        if os.environ.get(SANDBOX_ENV):  # `make run` on a developer's machine: never switch the host off
            log.warning("sandbox: not running 'systemctl %s'", action)
            return
        run(["systemctl", action])


# ---- helpers


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text).astimezone()
    except (TypeError, ValueError):
        return None


def _current_rows(plan, target: Disk) -> list[LayoutRow]:
    fstypes = {p.number: p.fstype for p in target.partitions}
    layout = plan.current_layout
    if layout is None:
        return []
    return [
        LayoutRow(p.number, p.start * layout.sector_size, p.size * layout.sector_size, fstypes.get(p.number) or p.kind)
        for p in layout.partitions
        if not p.is_extended
    ]


def _new_rows(plan) -> list[LayoutRow]:
    sector = plan.target_layout.sector_size
    return [
        LayoutRow(a.number, a.target.start * sector, a.target.size * sector, a.fstype or a.mode, a.target.name, a.grows,
                  a.shrink is not None)
        for a in plan.actions
    ]
