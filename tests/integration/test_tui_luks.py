"""The TUI's LUKS side on the real engine (EngineBackend), a real LUKS2 container on a loop disk: the container
is listed with its version, UUID and label, a passphrase is checked by cryptsetup (right and wrong), the capture
plan and the capture run with the answer, and the passphrase is in neither the log file, the logbook nor the
repository. This host has no device-mapper, so the container cannot be opened here: the plan says so and copies
it whole (tests/vm/test_luks.py opens one inside the live ISO with the CLI; tests/vm/test_tui_serial.py captures
one through the TUI on the live ISO's serial console, its contents by used blocks: tui_luks.py)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from diskbuilder import MiB, loop_disk, sh

from lifeboat.tui.backend import LuksAnswer
from lifeboat.tui.engine_backend import EngineBackend
from lifeboat.tui.logbook import LogBook, attach_logging, log_event
from lifeboat.volumes import luks

pytestmark = pytest.mark.integration

SECRET = "Lb-Tui-Engine-Secret-2718"


def _files(root: Path) -> str:
    return "".join(p.read_bytes().decode("latin-1") for p in root.rglob("*") if p.is_file())


def test_luks_container_listed_checked_and_planned_on_the_engine(workdir: Path, lifeboat_env, monkeypatch):
    monkeypatch.setenv("LIFEBOAT_SANDBOX", str(workdir))
    log, book = workdir / "tui.log", LogBook()
    detach = attach_logging(str(log), book)
    logging.getLogger("lifeboat").setLevel(logging.DEBUG)  # every command into the file, as with -v
    try:
        with loop_disk(workdir, "crypt", 64 * MiB) as src:
            sh("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", src.path,
               input="label: gpt\n\nsize=16MiB, type=L\nsize=24MiB, type=L\n")
            src.refresh()
            sh("mkfs.ext4", "-q", "-F", "-L", "plain", src.node(1))
            sh("cryptsetup", "luksFormat", "--type", "luks2", "-q", "--pbkdf", "pbkdf2", "--pbkdf-force-iterations",
               "1000", "--label", "cryptroot", "--key-file=-", src.node(2), input=SECRET)
            uuid = sh("cryptsetup", "luksUUID", src.node(2)).stdout.strip()
            sh("udevadm", "settle")
            src.refresh()
            backend = EngineBackend(log_path=str(log), include_loop=True)
            disk = next(d for d in backend.list_disks() if d.path == src.path)

            (container,) = backend.luks_containers(disk)
            assert (container.partition, container.version, container.uuid, container.label, container.size) == (
                2, "2", uuid, "cryptroot", 24 * MiB)
            assert container.describe().startswith(f"partition 2 ({src.node(2)}): LUKS2 container, UUID {uuid}")
            assert ("device-mapper" in container.unavailable) == (not luks.device_mapper())
            backend.check_luks_passphrase(container, SECRET)
            with pytest.raises(luks.WrongLuksPassphrase, match="partition 2"):
                backend.check_luks_passphrase(container, "not-it")

            repo = str(workdir / "repo")
            plan = backend.plan_capture(disk, repo, (LuksAnswer(2, SECRET),))
            text = "\n".join(plan.lines)
            if not luks.device_mapper():  # this host: copied whole, the reason said
                assert "partition 2: crypto_LUKS 24.0 MiB, raw" in text and "copied whole (24.0 MiB)" in text, text
                assert "no device-mapper" in text and not plan.plaintext, text
            outcome = backend.run_capture(disk, "crypt", repo, 3, log_event, threading.Event(), plan=plan)
            assert "Image crypt" in outcome.lines[0]
            assert backend.image_luks_containers(repo, "crypt") == ()  # nothing opened: no passphrase to restore
    finally:
        detach()
    lines, logged = book.since(0)[0], log.read_text()
    assert "cryptsetup open --test-passphrase --key-file=- " in logged  # the commands are logged...
    assert any("inspect source" in line for line in lines)
    assert SECRET not in logged and SECRET not in "\n".join(lines)  # ...the passphrase is not
    assert SECRET not in _files(workdir / "repo")
