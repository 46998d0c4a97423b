"""cryptsetup on the live system: open a LUKS container (read-only for a capture), close it, back up and
restore its header, test a passphrase against a header backup. The passphrase goes to cryptsetup on its
standard input (`--key-file=-`), never in argv, the environment, a file or a log line: cryptsetup reads
it byte for byte, no newline added, as a typed passphrase.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lifeboat.errors import CommandFailed, LifeboatError
from lifeboat.repo.credentials import check_private
from lifeboat.run import run

WRONG_PASSPHRASE = 2  # cryptsetup's exit code for "No key available with this passphrase"
MAPPER_PREFIX = "lifeboat-luks-"


class WrongLuksPassphrase(LifeboatError):
    exit_code = 2


@dataclass(frozen=True)
class LuksKey:
    """The passphrase that opens the source's (and the image's) LUKS containers; never shown."""

    passphrase: str = field(repr=False)

    def __post_init__(self) -> None:
        if not self.passphrase:
            raise LifeboatError("the LUKS passphrase is empty")

    def for_partition(self, number: int) -> LuksKey | None:
        """One passphrase (--luks-passphrase-file) is tried on every container."""
        return self


@dataclass(frozen=True)
class LuksKeys:
    """A passphrase for each container, by partition number (the TUI asks container by container); a
    container without one is copied whole. Never shown."""

    by_partition: tuple[tuple[int, LuksKey], ...] = field(default=(), repr=False)

    def for_partition(self, number: int) -> LuksKey | None:
        return next((key for n, key in self.by_partition if n == number), None)

    def __bool__(self) -> bool:
        return bool(self.by_partition)


def read_key_file(path: str | os.PathLike) -> LuksKey:
    """The passphrase on the first line of `path` (mode 0600 or stricter, like every secret file)."""
    check_private(Path(path), "LUKS passphrase file")
    with open(path, encoding="utf-8") as f:
        first = f.readline().rstrip("\r\n")
    if not first:
        raise LifeboatError(f"LUKS passphrase file {path} is empty")
    return LuksKey(first)


def device_mapper() -> bool:
    """Whether the kernel's device-mapper answers (opening its control node loads it where it can)."""
    try:
        os.close(os.open("/dev/mapper/control", os.O_RDWR))
    except OSError:
        return False
    return True


def mapper_name(node: str) -> str:
    """The device-mapper name Lifeboat opens `node` under: lifeboat-luks-sda2."""
    return MAPPER_PREFIX + os.path.basename(os.path.realpath(node))


def _cryptsetup(args: list[str], key: LuksKey | None = None, check: bool = True):
    return run(["cryptsetup", *args], input=key.passphrase if key else None, check=check, timeout=600)


def _wrong(proc, what: str) -> None:
    if proc.returncode == WRONG_PASSPHRASE:
        raise WrongLuksPassphrase(f"wrong passphrase for the LUKS container {what}: no key slot opens with it; "
                                  "nothing was written")
    if proc.returncode != 0:
        raise CommandFailed(list(proc.args), proc.returncode, (proc.stderr or proc.stdout)[-2000:])


def test_passphrase(device_or_header: str, key: LuksKey, what: str) -> None:
    """Raise WrongLuksPassphrase (naming `what`) unless `key` opens a key slot of the header."""
    proc = _cryptsetup(["open", "--test-passphrase", "--key-file=-", device_or_header], key, check=False)
    _wrong(proc, what)


def open_container(node: str, key: LuksKey, what: str, *, read_only: bool, name: str = "") -> str:
    """Open `node` as /dev/mapper/lifeboat-luks-NAME (or as /dev/mapper/`name`); returns that node.
    WrongLuksPassphrase names `what`."""
    name = name or mapper_name(node)
    args = ["open", "--type", "luks", "--key-file=-", *(["--readonly"] if read_only else []), node, name]
    _wrong(_cryptsetup(args, key, check=False), what)
    run(["udevadm", "settle", "--timeout=30"], check=False)
    return f"/dev/mapper/{name}"


def close_container(node: str, name: str = "") -> None:
    """Close the mapping open_container made of `node` (under `name` when it was given one)."""
    name = name or mapper_name(node)
    run(["udevadm", "settle", "--timeout=30"], check=False)  # udev may still be probing the mapping
    proc = _cryptsetup(["close", name], check=False)
    if proc.returncode != 0:
        run(["udevadm", "settle", "--timeout=30"], check=False)
        _cryptsetup(["close", name])


@contextlib.contextmanager
def opened(node: str, key: LuksKey, what: str, *, read_only: bool) -> Iterator[str]:
    """The container on `node` open for the block (its mapper node yielded), closed afterwards, on error too."""
    mapped = open_container(node, key, what, read_only=read_only)
    try:
        yield mapped
    finally:
        close_container(node)


def is_open(node: str) -> bool:
    return os.path.exists(f"/dev/mapper/{mapper_name(node)}")


def header_backup(node: str) -> bytes:
    """cryptsetup luksHeaderBackup of `node`: the header and key slots (wrapped keys only, no data)."""
    with tempfile.TemporaryDirectory(prefix="lifeboat-luks-") as tmp:
        path = os.path.join(tmp, "header")
        _cryptsetup(["luksHeaderBackup", node, "--header-backup-file", path])
        with open(path, "rb") as f:
            return f.read()


@contextlib.contextmanager
def header_file(data: bytes) -> Iterator[str]:
    """A header backup in a private temporary file for the block (cryptsetup reads headers from files)."""
    with tempfile.TemporaryDirectory(prefix="lifeboat-luks-") as tmp:
        path = os.path.join(tmp, "header")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        yield path


def header_restore(node: str, header_path: str) -> None:
    """Write the backed-up header onto `node` (same UUID, cipher and key slots); -q: no question asked."""
    _cryptsetup(["luksHeaderRestore", "-q", node, "--header-backup-file", header_path])


def data_offset(device_or_header: str) -> int:
    """Bytes before the encrypted data, from luksDump."""
    return parse_data_offset(_cryptsetup(["luksDump", device_or_header]).stdout)


def parse_data_offset(dump: str) -> int:
    """The first data segment's offset in bytes from `cryptsetup luksDump` (LUKS2 "offset: N [bytes]" under
    "Data segments", LUKS1 "Payload offset: N" in 512-byte sectors). Raises LifeboatError when absent."""
    luks1 = re.search(r"^Payload offset:\s*(\d+)", dump, re.M)
    if luks1:
        return int(luks1.group(1)) * 512
    segments = dump.partition("Data segments:")[2]
    found = re.search(r"^\s+offset:\s*(\d+) \[bytes\]", segments, re.M)
    if not found:
        raise LifeboatError("cryptsetup luksDump shows no data segment offset")
    return int(found.group(1))
