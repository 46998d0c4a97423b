"""The LUKS part of the serial-console TUI test (issue 11): a capture of a disk whose partition is a LUKS2
container, driven through the TUI in a real terminal, and what it must leave behind.

The source disk is made on the host without device-mapper: an ext4 with files (mke2fs -d) encrypted in place
by `cryptsetup reencrypt --encrypt` (offline LUKS2 encryption runs in userspace; no mapping is made), with
LUKS2's default argon2id made cheap (32 MiB, 4 iterations; pbkdf2 at 1000 iterations saved no measurable time)
and a fixed UUID and label. Inside the live ISO the TUI must show the container, ask its passphrase masked
(a wrong one first: said and asked again), show the plan (contents imaged by used blocks, the plaintext
warning), take `plaintext` typed, and end in "Done". Then, from the TUI's shell (`s` on the home screen): the TUI's log file names the
capture, the passphrase is in no file where a log, journal or temporary file could hold it, and no mapping is
left open. After power-off: the passphrase never went over the serial console, and the host reads the
repository: the partition's content is the LUKS container with the inner ext4 imaged by its used blocks, the
header backup a LUKS2 header with the container's UUID, and the passphrase in no file.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import bootdisk
from iso_helpers import gpt_disk_holding, partition_file, run
from serial_tui import SerialTerminal

from lifeboat.repo.manifest import ContentKind, load_manifest
from lifeboat.repo.store import Repository

SERIAL = "LBTUILUKS"
SECRET = "Lb-TuiSerial-Secret-4711"  # searched for on the screen, in the serial output, the log and the repository
WRONG = "not-the-passphrase"
LUKS_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000000d01"
FS_UUID = "6c1f0b3e-1a2b-4c3d-8e4f-000000000d02"
LABEL = "lbtuicrypt"
DISK_MIB = 48
REDUCE_MIB = 16  # room made for the header at the start (reencrypt puts an 8 MiB header there)
MIB = 1 << 20
DATA_MIB = 4  # random, so incompressible: the inner ext4 uses a little more than this
LOG = "/var/log/lifeboat/lifeboat.log"  # the TUI's log file in the live system (EngineBackend)


def source_disk(path: Path) -> tuple[Path, int]:
    """A GPT disk of DISK_MIB whose one partition is a LUKS2 container holding ext4 with files; returns it and
    the bytes the ext4 uses (what a capture by used blocks reads)."""
    content = path.with_name(path.name + ".content")
    (content / "etc").mkdir(parents=True)
    (content / "a.bin").write_bytes(os.urandom(DATA_MIB * MIB))
    (content / "etc/hostname").write_text("lifeboat-tui-luks\n")
    part = partition_file(path, DISK_MIB)
    run(["mkfs.ext4", "-q", "-F", "-L", "lbinner", "-U", FS_UUID, "-d", str(content), str(part),
         f"{DISK_MIB - 2 - REDUCE_MIB}M"])
    used = _ext4_used_bytes(part)
    key = path.with_name("luks.key")
    key.write_text(SECRET)
    key.chmod(0o600)
    run(["cryptsetup", "reencrypt", "--encrypt", "-q", "--type", "luks2", "--reduce-device-size", f"{REDUCE_MIB}M",
         "--uuid", LUKS_UUID, "--label", LABEL, "--pbkdf", "argon2id", "--pbkdf-memory", "32768",
         "--pbkdf-force-iterations", "4", "--key-file", str(key), str(part)])
    key.unlink()
    assert b"lifeboat-tui-luks" not in part.read_bytes(), "the container's contents were not encrypted"
    return gpt_disk_holding(path, part, DISK_MIB), used


def _ext4_used_bytes(fs: Path) -> int:
    out = run(["dumpe2fs", "-h", str(fs)]).stdout
    field = dict(re.findall(r"^(Block count|Free blocks|Block size):\s+(\d+)$", out, re.M))
    return (int(field["Block count"]) - int(field["Free blocks"])) * int(field["Block size"])


def flat(term: SerialTerminal) -> str:
    """The text of the dialog on top (the rows' parts between its side borders, █), or of the whole screen
    when none is shown, borders dropped and every run of blanks one space: lines a dialog wraps read as one."""
    rows = term.lines()
    inside = [row[row.index("█") + 1:row.rindex("█")] for row in rows if row.count("█") >= 2]
    text = "\n".join(inside) if inside else term.text()
    return " ".join(re.sub(r"[│┃║▌▐▊▎▀▄▔▁]", " ", text).split())


def _type_masked(term: SerialTerminal, phrase: str, timeout: float) -> None:
    """Type the passphrase, see it drawn as bullets only, then Enter."""
    term.keys(phrase)
    term.wait_for("•" * len(phrase), timeout)
    assert phrase not in term.text(), f"the passphrase is shown:\n{term.text()}"
    term.keys("Enter")


def capture(term: SerialTerminal, repo_path: str, timeout: float, job_timeout: float, step) -> str:
    """From the home screen (the repository chosen): capture the LUKS disk, a wrong passphrase first. Returns
    the image's name; ends back on the home screen."""
    term.keys("c")
    term.wait_for("Capture: choose the source disk", timeout)
    term.choose(f"s/n {SERIAL}", timeout)
    term.wait_for("Capture: name the image", timeout)
    term.settle(0.5)
    term.keys("Enter")  # the suggested name
    term.wait_for("Capture: where should the image go?", timeout)
    term.choose(repo_path, timeout)
    term.wait_for("Level 3: balanced", timeout)
    term.settle(0.5)
    term.keys("Enter")

    term.wait_for("Encrypted partition", timeout)
    term.wait_for("F2 = copy it whole", timeout)
    term.wait_for("Esc = cancel", timeout)  # the dialog's last line: the whole dialog fits 80x24
    shown = flat(term)
    container = re.search(rf"partition 1 \(/dev/(\w+)\): LUKS2 container, UUID {LUKS_UUID}, label '{LABEL}'", shown)
    assert container, f"the container is not shown as the plan shows it:\n{term.text()}"
    step(f"passphrase asked for {container.group(1)}")
    _type_masked(term, WRONG, timeout)
    term.wait_for("Try again (attempt 2)", timeout)
    # The dialog grew by the message's lines and is drawn again over a 115200-baud line: read the whole
    # frame, not its top half (a read right after the message once found the rows below it not yet drawn).
    term.settle(1.0)
    assert "wrong passphrase for the LUKS container on partition 1" in flat(term), term.text()
    assert "Esc = cancel" in term.text(), f"the dialog no longer fits the screen:\n{term.text()}"
    step("wrong passphrase said, asked again")
    _type_masked(term, SECRET, timeout)

    term.wait_for("Capture: check the plan", timeout)
    term.wait_for("Enter to go on", job_timeout)  # the container opened, its used blocks read
    term.wait_for("to read in all", timeout)  # the plan's lines come in a redraw of their own
    term.settle(1.0)
    plan = flat(term)
    print(term.text())
    for line in ("partition 1: crypto_LUKS", "opened with the passphrase", "opened read-only; its ext4",
                 "imaged by used-blocks", "a backup of its header is kept", "the repository is not encrypted"):
        assert line in plan, f"{line!r} is not in the plan:\n{term.text()}"
    step("plan")
    term.keys("Enter")
    term.wait_for("plaintext", timeout)
    term.wait_for(re.compile(r"Type\s+plaintext\s+and press Enter"), timeout)
    term.keys("plaintext", "Enter")
    source, name = term.wait_for(re.compile(r"Capturing (\w+) as ([\w.+-]+)"), timeout).groups()
    step(f"capturing {source} as {name}")
    verdict = term.wait_for(re.compile(rf"(\w[\w ,]*): Capturing {source} as {re.escape(name)}\n"),
                            job_timeout).group(1)
    term.wait_for("back to the start", timeout)
    term.settle(1.5)
    result = term.text()
    print(result)
    assert verdict == "Done", f"the capture did not end well:\n{result}"
    assert SECRET not in result
    step(f"capture result: {verdict}")
    term.keys("Enter")
    return name


def check_guest(term: SerialTerminal, home: str, image: str, timeout: float) -> None:
    """From the home screen: the TUI's shell (`s`) looks for the passphrase (typed split in two, so that the
    shell's echo of the command does not hold it) in the TUI's log file and in every file under the places a
    log, a journal or a temporary file could hold it, checks that the log holds the capture, and that no
    mapping is left open; `exit` comes back to the TUI's home screen."""
    term.wait_for(home, timeout)
    term.settle(0.5)
    term.keys("s")
    term.settle(1.0)
    split = f'"{SECRET[:6]}""{SECRET[6:]}"'
    places = "/var/log /run/log /run/lifeboat /tmp /root"
    term.keys(f"echo LB''CHECK logged=$(grep -c -F -e {image} {LOG}) secret=$(grep -c -F -e {split} {LOG})"
              f" files=$(grep -r -l -F -e {split} {places} 2>/dev/null | wc -l)"
              f" mappings=$(dmsetup ls | grep -c -v 'No devices')", "Enter")
    found = term.expect_raw(re.compile(rb"LBCHECK logged=(\d+) secret=(\d+) files=(\d+) mappings=(\d+)"), timeout)
    logged, secret, files, mappings = (int(x) for x in re.findall(rb"=(\d+)", found))
    print(f"guest: {logged} lines of {LOG} name {image}; the passphrase in {secret} of its lines and in {files} "
          f"files under {places}; {mappings} mappings open")
    assert logged > 0, f"the capture is not in {LOG}: not the TUI's log file"
    assert secret == 0 and files == 0, "the passphrase is in the TUI's log file or in a file of the live system"
    assert mappings == 0, "the capture left a mapping open"
    term.keys("clear; exit", "Enter")  # a blank screen first: then the home screen is the TUI's redraw
    term.wait_for(home, timeout)


def check_repository(repo_disk: Path, repo_dir: str, name: str, used: int) -> None:
    """After the guest is off: the repository partition (from 1 MiB) mounted read-only on the host."""
    with tempfile.TemporaryDirectory() as mnt:
        bootdisk.sh("mount", "-o", f"loop,ro,offset={MIB}", repo_disk, mnt)
        try:
            root = Path(mnt) / repo_dir
            leaked = [p for p in root.rglob("*") if p.is_file() and SECRET.encode() in p.read_bytes()]
            assert not leaked, f"the passphrase is in {leaked}"
            _check_image(Repository.open(root), name, used)
        finally:
            bootdisk.sh("umount", mnt)


def _check_image(repo: Repository, name: str, used: int) -> None:
    manifest = load_manifest(repo, name)
    (part,) = manifest.partitions
    luks = part.content
    assert luks.kind is ContentKind.LUKS and (luks.version, luks.uuid, luks.label) == (2, LUKS_UUID, LABEL), luks
    header = repo.get_chunk(luks.header.digest, luks.header.length)
    assert header[:6] == b"LUKS\xba\xbe" and header[168:168 + 36].decode() == LUKS_UUID, header[:256]
    assert luks.data_offset == luks.header.length >= MIB, luks  # the whole header, up to the data
    inner = luks.inner
    assert inner is not None and inner.kind is ContentKind.FILESYSTEM, inner
    assert (inner.fstype, inner.uuid) == ("ext4", FS_UUID), inner
    stream = inner.stream
    print(f"container {part.size} bytes, header backup {luks.header.length}, ext4 used {used}, "
          f"imaged {stream.used_bytes}")
    # by used blocks: what the ext4 uses plus the area's first and last MiB (usedmap.with_edges: +1 MiB here, the
    # first is in use anyway), not the container's 38 MiB of data area
    assert used <= stream.used_bytes <= used + 2 * MIB, (stream.used_bytes, used)
    assert stream.used_bytes < part.size // 4


def check_serial_output(log: Path) -> None:
    """Every byte the guest sent over the serial console: neither passphrase typed is there."""
    sent = log.read_bytes()
    assert b"LIFEBOAT-READY" in sent
    for phrase in (SECRET, WRONG):
        assert phrase.encode() not in sent, f"{phrase!r} went over the serial console"
