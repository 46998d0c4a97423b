"""Unattended jobs from kernel parameters (Clonezilla's ocs_live_run is the model).

    lifeboat.job=capture lifeboat.source=/dev/sda lifeboat.image=NAME lifeboat.repo=LABEL=LIFEBOAT-DATA
    lifeboat.job=restore lifeboat.image=NAME lifeboat.target=/dev/nvme0n1 lifeboat.after=poweroff
    lifeboat.job=verify  lifeboat.image=NAME
    lifeboat.job=file    (the parameters are read from lifeboat-job.conf at the top of the repository)

lifeboat.repo= may also be a network repository (ssh://, smb://, nfs://, s3://; https:// for restore and
verify), on the command line or in the job file. Nothing is ever asked: secrets come from files beside the
job file (lifeboat-credentials, mode 0600, which may name an ssh identity_file; lifeboat-passphrase for an
encrypted repository; lifeboat-luks-passphrase for the disk's LUKS containers, also read at the top of a
disk repository without a job file), and an ssh:// server's host key must be in lifeboat-known_hosts there: an unknown
key is refused, naming its fingerprint. A network repository on the command line alone gets none of these
(an nfs:// export or a guest smb:// share needs none).

The job runs headless through the engine, logs plain lines to the console, prints one result line

    LIFEBOAT-RESULT: OK job=capture image=NAME seconds=42
    LIFEBOAT-RESULT: FAILED job=capture reason=...

and then powers off, reboots or leaves a shell (lifeboat.after / lifeboat.onfail). Every parameter is
documented in live-build/README.md. `parse_cmdline` is pure; everything touching disks is below it.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from lifeboat.errors import CommandFailed, LifeboatError
from lifeboat.mounts import mount, mount_point_of, unmount
from lifeboat.run import run as run_command
from lifeboat.terminal import ConsoleProgress

PREFIX = "lifeboat."
JOBS = ("capture", "restore", "verify", "file")
AFTER = ("poweroff", "reboot", "shell")
DEFAULT_REPO = "LABEL=LIFEBOAT-DATA"
JOB_FILE = "lifeboat-job.conf"
# beside the job file, for a network repository
KNOWN_HOSTS_FILE = "lifeboat-known_hosts"
CREDENTIALS_FILE = "lifeboat-credentials"
PASSPHRASE_FILE = "lifeboat-passphrase"
LUKS_PASSPHRASE_FILE = "lifeboat-luks-passphrase"  # opens the disk's LUKS containers (capture and restore)
MOUNT_BASE = "/run/lifeboat/unattended"
RESULT = "LIFEBOAT-RESULT:"
WAIT_FOR_DEVICES = 30.0  # seconds a named disk or partition may take to appear
PROGRESS_INTERVAL = 10.0  # seconds between byte-progress lines on the console
_YES = ("1", "yes", "true", "on")
_NO = ("0", "no", "false", "off")


class UnattendedError(LifeboatError):
    """Bad or missing lifeboat.* parameters, or a repository/disk that cannot be found."""


@dataclass(frozen=True)
class Job:
    job: str  # capture | restore | verify | file
    image: str = ""
    repo: str = DEFAULT_REPO  # LABEL=… | UUID=… | PARTUUID=… | PARTLABEL=… | /dev/… | a directory | a URL
    repodir: str = ""  # the repository's directory inside that filesystem ("" = its top)
    source: str = ""  # capture: the disk to read (/dev/…, /dev/disk/by-id/…, SERIAL=…)
    target: str = ""  # restore: the disk to write
    after: str = "shell"  # after success: poweroff | reboot | shell
    onfail: str = "shell"  # after a failure
    level: int = 3  # capture: zstd level
    verify: bool = True  # capture: verify the image afterwards
    bootloader: bool = True  # restore: reinstall/repair the bootloader
    rescue: bool = False  # capture: read around unreadable sectors (lifeboat capture --rescue)
    rescue_timeout: int = 0  # capture with rescue: seconds of retrying at most (0: no limit)
    allow_failing_target: bool = False  # restore: write even to a disk whose SMART health is failing
    allow_plaintext: bool = False  # capture: an opened LUKS container's contents into an unencrypted repository


_FIELDS = {
    "job",
    "image",
    "repo",
    "repodir",
    "source",
    "target",
    "after",
    "onfail",
    "level",
    "verify",
    "bootloader",
    "rescue",
    "rescue_timeout",
    "allow_failing_target",
    "allow_plaintext",
}


# ---------------------------------------------------------------- parsing (pure)


def split_cmdline(text: str) -> list[str]:
    """Words of a kernel command line: whitespace separates, double quotes group (and are dropped)."""
    words: list[str] = []
    current: list[str] = []
    quoted = False
    in_word = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            in_word = True
        elif ch.isspace() and not quoted:
            if in_word:
                words.append("".join(current))
                current, in_word = [], False
        else:
            current.append(ch)
            in_word = True
    if in_word:
        words.append("".join(current))
    return words


def lifeboat_params(text: str) -> dict[str, str]:
    """The lifeboat.* parameters of a command line (or job file: '#' starts a comment), later wins."""
    lines = [line.split("#", 1)[0] for line in text.splitlines()]
    params: dict[str, str] = {}
    for word in split_cmdline(" ".join(lines)):
        if not word.startswith(PREFIX):
            continue
        key, _, value = word[len(PREFIX) :].partition("=")
        params[key] = value
    return params


def job_requested(cmdline: str) -> bool:
    return "job" in lifeboat_params(cmdline)


def _flag(key: str, value: str) -> bool:
    if value.lower() in _YES:
        return True
    if value.lower() in _NO:
        return False
    raise UnattendedError(f"lifeboat.{key}={value}: say yes or no")


def job_from_params(params: dict[str, str]) -> Job:
    """A checked Job from lifeboat.* parameters (keys without the prefix)."""
    unknown = sorted(set(params) - _FIELDS)
    if unknown:
        raise UnattendedError(f"unknown parameter lifeboat.{unknown[0]} (known: {', '.join(sorted(_FIELDS))})")
    kind = params.get("job", "")
    if kind not in JOBS:
        raise UnattendedError(f"lifeboat.job={kind}: must be one of {', '.join(JOBS)}")
    job = Job(job=kind, repo=params.get("repo") or DEFAULT_REPO)
    values: dict[str, object] = {}
    for key in ("image", "repodir", "source", "target"):
        if key in params:
            values[key] = params[key]
    for key in ("after", "onfail"):
        if key in params:
            if params[key] not in AFTER:
                raise UnattendedError(f"lifeboat.{key}={params[key]}: must be one of {', '.join(AFTER)}")
            values[key] = params[key]
    if "level" in params:
        try:
            level = int(params["level"])
        except ValueError:
            level = 0
        if not 1 <= level <= 22:
            raise UnattendedError(f"lifeboat.level={params['level']}: must be a number from 1 to 22")
        values["level"] = level
    for key in ("verify", "bootloader", "rescue", "allow_failing_target", "allow_plaintext"):
        if key in params:
            values[key] = _flag(key, params[key])
    if "rescue_timeout" in params:
        if not params["rescue_timeout"].isdigit():
            raise UnattendedError(f"lifeboat.rescue_timeout={params['rescue_timeout']}: must be a number of seconds")
        values["rescue_timeout"] = int(params["rescue_timeout"])
    job = replace(job, **values)
    _check_network_repo(job)
    if kind == "file":
        return job
    _check_complete(job)
    return job


def is_network(repo: str) -> bool:
    return "://" in repo and not repo.lower().startswith("file://")


def _check_network_repo(job: Job) -> None:
    """A lifeboat.repo URL must be one Lifeboat knows, hold no password, and be writable for a capture."""
    if "://" not in job.repo:
        return
    from lifeboat.repo.location import BadLocation, Scheme, parse_location

    try:
        location = parse_location(job.repo)
    except BadLocation as e:
        raise UnattendedError(f"lifeboat.repo: {e}") from None
    if not location.is_network:
        raise UnattendedError(f"lifeboat.repo={job.repo}: name the repository's filesystem (LABEL=, UUID=, /dev/…) "
                              "and its directory with lifeboat.repodir=")
    if job.repodir:
        raise UnattendedError(f"lifeboat.repodir={job.repodir} is for a repository on a disk: put the path into "
                              f"the URL ({location.display()})")
    if job.job == "capture" and location.scheme in (Scheme.HTTP, Scheme.HTTPS):
        raise UnattendedError(f"lifeboat.repo={location.display()} is read-only (a web server): a capture needs "
                              "ssh://, smb://, nfs://, s3:// or a disk")


def _check_complete(job: Job) -> None:
    if not job.image:
        raise UnattendedError(f"lifeboat.job={job.job} needs lifeboat.image=NAME")
    if "/" in job.image or job.image in (".", ".."):  # the repository applies the full rule (check_image_name)
        raise UnattendedError(f"lifeboat.image={job.image}: an image name has no '/'")
    if job.job == "capture" and not job.source:
        raise UnattendedError("lifeboat.job=capture needs lifeboat.source=DISK")
    if job.job == "restore" and not job.target:
        raise UnattendedError("lifeboat.job=restore needs lifeboat.target=DISK")


def parse_cmdline(cmdline: str) -> Job | None:
    """The unattended job a kernel command line asks for, or None when it asks for none.

    Raises UnattendedError (one line, naming the parameter) when the lifeboat.* parameters are wrong.
    """
    params = lifeboat_params(cmdline)
    if "job" not in params:
        return None
    return job_from_params(params)


def merge_job_file(job: Job, cmdline: str, file_text: str) -> Job:
    """lifeboat.job=file: the job file's parameters, overridden by any given on the command line."""
    params = lifeboat_params(file_text)
    if params.get("job") == "file":
        raise UnattendedError(f"{JOB_FILE}: lifeboat.job=file cannot name itself")
    # the command line's repo/repodir say where the job file is: they do not override the file's repository
    overrides = {k: v for k, v in lifeboat_params(cmdline).items() if k not in ("job", "repo", "repodir")}
    params.update(overrides)
    if "job" not in params:
        raise UnattendedError(f"{JOB_FILE} has no lifeboat.job=")
    return job_from_params(params)


# ---------------------------------------------------------------- console output


def say(message: str) -> None:
    print(f"lifeboat: {message}", flush=True)


def result_line(job: Job, ok: bool, reason: str = "", seconds: float | None = None, facts: tuple[str, ...] = ()) -> str:
    """The one result line; `facts` are key=value words a job adds (a restore: bootloader=not-needed)."""
    parts = [RESULT, "OK" if ok else "FAILED", f"job={job.job}"]
    if job.image:
        parts.append(f"image={job.image}")
    if seconds is not None:
        parts.append(f"seconds={seconds:.0f}")
    parts += facts
    if not ok:
        parts.append(f"reason={' '.join(reason.split()) or 'unknown'}")
    return " ".join(parts)


# ---------------------------------------------------------------- devices and the repository


def _settle() -> None:
    run_command(["udevadm", "settle", "--timeout=10"], check=False)


def find_device(spec: str, what: str, timeout: float | None = None) -> str:
    """A block device node for LABEL=/UUID=/PARTUUID=/PARTLABEL=/SERIAL=/a path, waiting for it."""
    deadline = time.monotonic() + (WAIT_FOR_DEVICES if timeout is None else timeout)
    while True:
        node = _lookup_device(spec)
        if node:
            return node
        if time.monotonic() > deadline:
            raise UnattendedError(f"{what} {spec} not found")
        _settle()
        time.sleep(1)


def _lookup_device(spec: str) -> str:
    key, sep, value = spec.partition("=")
    if not sep:
        return spec if Path(spec).is_block_device() else ""
    key = key.upper()
    if key == "SERIAL":
        from lifeboat.devices import list_disks

        for disk in list_disks():
            if disk.serial == value:
                return disk.path
        return ""
    if key in ("LABEL", "UUID", "PARTUUID", "PARTLABEL"):
        proc = run_command(["blkid", "-l", "-o", "device", "-t", f"{key}={value}"], check=False)
        return proc.stdout.strip().splitlines()[0] if proc.returncode == 0 and proc.stdout.strip() else ""
    raise UnattendedError(f"{spec}: say LABEL=, UUID=, PARTUUID=, PARTLABEL=, SERIAL= or give a /dev path")


class RepoMount:
    """The repository's filesystem, mounted for the job (or used where it already is)."""

    def __init__(self, spec: str, repodir: str):
        self.spec = spec
        self.repodir = repodir
        self.mountpoint = ""
        self._ours = False

    def __enter__(self) -> str:
        if self.spec.startswith("/") and Path(self.spec).is_dir():
            self.mountpoint = self.spec
        else:
            node = find_device(self.spec, "repository")
            self.mountpoint = mount_point_of(node)
            if not self.mountpoint:
                self.mountpoint = os.path.join(MOUNT_BASE, "repo")
                try:
                    mount(node, self.mountpoint)
                except CommandFailed as err:
                    raise UnattendedError(f"cannot mount {node}: {err}") from None
                self._ours = True
            say(f"repository filesystem {node} at {self.mountpoint}")
        path = os.path.join(self.mountpoint, self.repodir.strip("/")) if self.repodir else self.mountpoint
        return path

    def __exit__(self, *exc: object) -> None:
        os.sync()
        if self._ours:
            unmount(self.mountpoint)


# ---------------------------------------------------------------- running a job


def _check_not_boot_medium(node: str) -> None:
    from lifeboat.devices import disk_info

    disk = disk_info(node)
    if disk.is_boot_medium:
        raise UnattendedError(f"{node} is the disk Lifeboat runs from")


def _suggest_rescue(source: str) -> None:
    from lifeboat.health import read_health

    health = read_health(source)
    if health.needs_rescue:
        say(f"warning: {source}: {health.describe()}; a capture with lifeboat.rescue=yes reads around damage "
            "and records what could not be read")


def _rescue(job: Job):
    from lifeboat.engine.rescue import RescueOptions

    return RescueOptions(timeout=job.rescue_timeout or None) if job.rescue else None


def run_job(job: Job, repo_path: str, cancel: threading.Event, credentials=None, luks_key=None) -> tuple[str, ...]:
    """Run a complete job against a mounted repository or a network one (repo_path is then its URL). Raises
    LifeboatError on failure; returns the key=value facts the result line carries (a restore's bootloader
    outcome)."""
    from lifeboat.repo.store import Repository

    sink = ConsoleProgress(sys.stdout, interval=PROGRESS_INTERVAL, prefix="lifeboat: ")
    if job.job == "capture":
        from lifeboat.engine.capture import capture, inspect_source
        from lifeboat.engine.luks_capture import check_plaintext_allowed

        source = find_device(job.source, "source disk")
        _check_not_boot_medium(source)
        if not job.rescue:
            _suggest_rescue(source)
        repo = Repository.open(repo_path, create=True, credentials=credentials)
        say(f"capturing {source} as {job.image} into {repo_path} (zstd level {job.level}"
            f"{', rescue' if job.rescue else ''})")
        info = inspect_source(source, sink, rescue=job.rescue, luks_key=luks_key)
        check_plaintext_allowed(info.partitions, repo, job.allow_plaintext)
        capture(source, job.image, repo, level=job.level, progress=sink, cancel=cancel, info=info, rescue=_rescue(job))
        if job.verify:
            from lifeboat.engine.verify import verify

            say(f"verifying {job.image}")
            verify(repo, job.image, progress=sink)
    elif job.job == "restore":
        from lifeboat.engine.plan import plan_restore
        from lifeboat.engine.restore import bootloader_outcome, restore
        from lifeboat.health import HealthStatus, read_health

        target = find_device(job.target, "target disk")
        repo = Repository.open(repo_path, credentials=credentials)
        plan = plan_restore(repo, job.image, target, luks_key=luks_key)
        health = read_health(target)
        if health.status is HealthStatus.FAILING and not job.allow_failing_target:
            raise UnattendedError(f"{target}: {health.describe()}; set lifeboat.allow_failing_target=yes to "
                                  "restore onto it anyway")
        say(f"restoring {job.image} onto {target}")
        say(f"plan: {plan}")
        result = restore(plan, progress=sink, cancel=cancel, bootloader=job.bootloader)
        failed = result.failed_steps()
        if failed:  # never an OK line for a disk that may not boot
            raise UnattendedError("restored, but " + "; ".join(f"{s.step} failed: {s.detail}" for s in failed))
        bootloader = bootloader_outcome(result)
        return (f"bootloader={bootloader}",) if bootloader else ()
    elif job.job == "verify":
        from lifeboat.engine.verify import verify

        repo = Repository.open(repo_path, credentials=credentials)
        say(f"verifying {job.image} in {repo_path}")
        verify(repo, job.image, progress=sink)
    else:  # pragma: no cover - parse_cmdline never lets another kind through
        raise UnattendedError(f"unknown job {job.job}")
    return ()


def execute(job: Job, cmdline: str) -> tuple[Job, bool, str, float, tuple[str, ...]]:
    """Mount, run, unmount. Returns (the job as run, ok, reason, seconds, facts for the result line).
    Never raises LifeboatError."""
    start = time.monotonic()
    facts: tuple[str, ...] = ()
    try:
        from lifeboat.repo.credentials import forbid_prompts

        forbid_prompts(f"an unattended job asks nothing: put a repository's passphrase into {PASSPHRASE_FILE}, "
                       f"network credentials into {CREDENTIALS_FILE} (each mode 0600) beside {JOB_FILE}")
        if job.job != "file" and is_network(job.repo):
            _secrets_beside(None)
            say(f"repository {job.repo}")
            facts = run_job(job, job.repo, threading.Event())
        else:
            with RepoMount(job.repo, job.repodir) as repo_path:
                credentials, luks_key = None, _luks_key(Path(repo_path))
                if job.job == "file":
                    job = _read_job_file(job, cmdline, Path(repo_path))
                    # the job file's directory stays mounted: the files beside it (a passphrase, for an
                    # encrypted repository on a disk as on a network)
                    credentials = _secrets_beside(Path(repo_path))
                    if is_network(job.repo):
                        say(f"repository {job.repo}")
                        repo_path = job.repo
                facts = run_job(job, repo_path, threading.Event(), credentials, luks_key)
    except LifeboatError as e:
        return job, False, str(e), time.monotonic() - start, ()
    except Exception as e:  # noqa: BLE001 - an unattended run must always end with a result line
        return job, False, f"internal error: {type(e).__name__}: {e}", time.monotonic() - start, ()
    return job, True, "", time.monotonic() - start, facts


def _luks_key(beside: Path):
    """The LUKS passphrase from lifeboat-luks-passphrase beside the job file (mode 0600), or None."""
    from lifeboat.volumes.luks import read_key_file

    if not (beside / LUKS_PASSPHRASE_FILE).exists():
        return None
    say(f"LUKS passphrase from {beside / LUKS_PASSPHRASE_FILE}")
    return read_key_file(beside / LUKS_PASSPHRASE_FILE)


def _read_job_file(job: Job, cmdline: str, where: Path) -> Job:
    job_file = where / JOB_FILE
    try:
        text = job_file.read_text()
    except OSError as e:
        raise UnattendedError(f"cannot read {job_file}: {e.strerror}") from None
    job = merge_job_file(job, cmdline, text)
    if not is_network(job.repo) and (job.repo != DEFAULT_REPO or job.repodir):
        say("note: a disk lifeboat.repo/repodir in the job file is ignored: the file's repository is used")
    say(f"job from {job_file}: {job.job} {job.image}")
    return job


def _secrets_beside(beside: Path | None):
    """Where a repository's passphrase, a network repository's credentials and its known host keys come from:
    the files beside the job file (none for a repository on the command line alone: the live system has no
    known hosts, so ssh:// is refused). Returns the credentials from lifeboat-credentials, or None."""
    from lifeboat.repo.credentials import read_credentials_file

    os.environ["LIFEBOAT_KNOWN_HOSTS"] = str(beside / KNOWN_HOSTS_FILE) if beside else "/nonexistent/known_hosts"
    os.environ.pop("LIFEBOAT_CREDENTIALS_FILE", None)
    os.environ.pop("LIFEBOAT_PASSPHRASE_FILE", None)
    if beside is None:
        return None
    if (beside / PASSPHRASE_FILE).exists():
        os.environ["LIFEBOAT_PASSPHRASE_FILE"] = str(beside / PASSPHRASE_FILE)
    if (beside / CREDENTIALS_FILE).exists():
        creds = read_credentials_file(beside / CREDENTIALS_FILE)
        say(f"credentials from {beside / CREDENTIALS_FILE}")
        return creds
    return None


def in_live_system() -> bool:
    return Path("/etc/lifeboat-release").exists() and Path("/run/live").is_dir()


def finish(action: str, really: bool) -> None:
    """poweroff | reboot | shell. Only acts in the live system on its real command line."""
    if action == "shell":
        return
    if not really:
        say(f"lifeboat.after={action} not carried out (not the live system's own command line)")
        return
    say(f"{action} in 5 seconds")
    time.sleep(5)
    os.sync()
    run_command(["systemctl", action, "--no-block"], check=False)
    time.sleep(60)  # systemd stops us


def run(cmdline: str, act: bool) -> int:
    """Parse, run, print the result line, then the `after` action. Returns the exit status."""
    try:
        job = parse_cmdline(cmdline)
    except UnattendedError as e:
        print(f"{RESULT} FAILED job=? reason={e}", flush=True)
        finish("shell", act)
        return 1
    if job is None:
        say("no lifeboat.job= on the command line: nothing to do")
        return 0
    say(f"unattended {job.job} starting")
    job, ok, reason, seconds, facts = execute(job, cmdline)
    print(result_line(job, ok, reason, seconds, facts), flush=True)
    finish(job.after if ok else job.onfail, act)
    return 0 if ok else 1


# ---------------------------------------------------------------- command line


def add_subcommand(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Registers `lifeboat unattended [--cmdline FILE]`; the handler is `args.func(args) -> int`."""
    parser = subparsers.add_parser(
        "unattended",
        help="run the job given by lifeboat.* kernel parameters (see live-build/README.md)",
        description="Run the job given by lifeboat.* kernel parameters, headless, and print a "
        "LIFEBOAT-RESULT line. lifeboat.after is carried out only on the live system's own /proc/cmdline.",
    )
    parser.add_argument("--cmdline", metavar="FILE", help="read the parameters from FILE instead of /proc/cmdline")
    parser.set_defaults(func=command)
    return parser


def command(args: argparse.Namespace) -> int:
    if args.cmdline:
        return run(Path(args.cmdline).read_text(), act=False)
    return run(Path("/proc/cmdline").read_text(), act=in_live_system())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lifeboat")
    sub = parser.add_subparsers(dest="command", required=False)
    add_subcommand(sub)
    args = parser.parse_args(["unattended", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
