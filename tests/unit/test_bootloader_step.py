"""The bootloader step's outcome, with boot's disk reading and mounting replaced by fakes (they need root,
loop devices and a FAT-capable kernel; the real path is tests/integration/test_data_disk.py and the vm layer)."""

from __future__ import annotations

import pytest

from lifeboat.boot import detect, fix
from lifeboat.boot.model import LinuxSystem, StepOutcome, overall
from lifeboat.devices import Disk, FsFacts, Partition, with_layout
from lifeboat.engine import restore as restore_module
from lifeboat.engine.restore import RestoreResult, StepRecord, bootloader_outcome
from lifeboat.errors import CommandFailed
from lifeboat.events import Outcome, StepFinished, StepStarted, summarize
from lifeboat.layout.model import GPT_ESP, DiskLayout, PartitionEntry

DATA = Partition("/dev/loop9p1", 1, 1 << 20, 60 << 20, "ext4", "data", "u-1", "p-1", type="0FC63DAF-8483-4772-8E79-3D69D8477DE4")
DATA_DISK = Disk("/dev/loop9", "loop9", 64 << 20, table="gpt", partitions=(DATA,))
LAYOUT = DiskLayout("gpt", "D1", 512, 131072, (PartitionEntry(1, 2048, 122880, "0FC63DAF-8483-4772-8E79-3D69D8477DE4"),))


@pytest.fixture
def disk_is(monkeypatch):
    def use(disk: Disk, findings: detect.Findings):
        monkeypatch.setattr(fix, "target_disk", lambda path, layout=None: disk)
        monkeypatch.setattr(fix, "disk_info", lambda path: disk)
        monkeypatch.setattr(fix.locks, "holding_disk", lambda path: __import__("contextlib").nullcontext())
        monkeypatch.setattr(detect, "find_systems", lambda d, log, volumes=(): findings)
    return use


def test_a_data_disk_needs_no_bootloader_after_a_restore(disk_is):
    disk_is(DATA_DISK, detect.Findings())
    outcomes = fix.after_restore(DATA_DISK.path, LAYOUT)
    assert [(o.step, o.outcome) for o in outcomes] == [("detect", Outcome.NOT_NEEDED)]
    assert "a data disk needs no bootloader" in outcomes[0].detail
    assert fix.exit_code(outcomes) == 0 and overall(outcomes) == Outcome.NOT_NEEDED


def test_bootfix_of_a_data_disk_is_a_failure_nothing_was_repaired(disk_is):
    disk_is(DATA_DISK, detect.Findings())
    outcomes = fix.bootfix(DATA_DISK.path)
    assert [(o.step, o.outcome) for o in outcomes] == [("detect", Outcome.FAILED)]
    assert fix.exit_code(outcomes) == 1


def test_a_partition_that_could_not_be_looked_into_is_not_a_data_disk(disk_is):
    disk_is(DATA_DISK, detect.Findings(unreadable=["/dev/loop9p1 (ext4): mount failed"]))
    outcomes = fix.after_restore(DATA_DISK.path, LAYOUT)
    assert [(o.step, o.outcome) for o in outcomes] == [("detect", Outcome.FAILED)]
    assert "could not look into /dev/loop9p1" in outcomes[0].detail


def test_a_system_found_whose_loader_cannot_be_installed_stays_a_failure(disk_is, monkeypatch):
    system = LinuxSystem(root=DATA, name="Debian", efi_id="debian")
    disk_is(DATA_DISK, detect.Findings(linux=[system]))

    def refuse(argv, **kw):
        if argv[0] == "mount":
            raise CommandFailed(argv, 32, "wrong fs type")

    monkeypatch.setattr("lifeboat.mounts.run", refuse)
    outcomes = fix.after_restore(DATA_DISK.path, LAYOUT)
    assert outcomes[0] == StepOutcome("detect", Outcome.DONE, "Debian on /dev/loop9p1")
    assert (outcomes[1].step, outcomes[1].outcome) == (f"mount {DATA.path}", Outcome.FAILED)
    assert fix.exit_code(outcomes) == 1 and overall(outcomes) == Outcome.FAILED


def test_restore_records_each_boot_step_and_ends_the_bootloader_step_with_one_word(monkeypatch):
    note = "no GRUB-booted Linux root and no Windows boot manager found on this disk: a data disk needs no bootloader"
    seen = []
    monkeypatch.setattr(restore_module, "after_restore",
                        lambda target, layout, progress, key: seen.append((layout, key))
                        or [StepOutcome("detect", Outcome.NOT_NEEDED, note)])
    events, steps, key = [], [], object()  # stands for the restore's LuksKey
    restore_module._bootloader("/dev/loop9", LAYOUT, events.append, lambda *step: steps.append(StepRecord(*step)), key)
    assert seen == [(LAYOUT, key)]  # boot works from the layout the restore wrote, with the restore's passphrase
    assert steps == [StepRecord("bootloader: detect", Outcome.NOT_NEEDED, note)]
    assert events == [StepStarted("bootloader"), StepFinished("bootloader", Outcome.NOT_NEEDED, note)]
    result = RestoreResult("img", "/dev/loop9", steps=steps)
    assert bootloader_outcome(result) == "not-needed" and result.failed_steps() == []


def test_bootloader_outcome_words():
    def result(*outcomes):
        return RestoreResult("i", "t", steps=[StepRecord("partition table", Outcome.DONE)]
                             + [StepRecord(f"bootloader: s{i}", Outcome(o)) for i, o in enumerate(outcomes)])
    assert bootloader_outcome(result("done", "not-needed")) == Outcome.DONE
    assert bootloader_outcome(result("done", "failed")) == Outcome.FAILED
    skipped = StepRecord("bootloader", Outcome.SKIPPED, "--no-bootloader")
    assert bootloader_outcome(RestoreResult("i", "t", steps=[skipped])) == "skipped"
    assert bootloader_outcome(RestoreResult("i", "t")) is None
    assert summarize([]) == Outcome.FAILED


def test_boot_sees_the_layout_the_restore_wrote(monkeypatch):
    """devices.with_layout: partitions (and their boot identities) from the layout, filesystems probed once:
    on the partition's node, or where the table puts it on the whole disk when udev dropped the node."""
    probed, nodes = [], {"/dev/loop9p1"}
    monkeypatch.setattr("lifeboat.devices.filesystem_facts",
                        lambda node, **window: probed.append((node, window)) or FsFacts("vfat", "AB-CD", "EFI"))
    monkeypatch.setattr("lifeboat.devices.os.path.exists", lambda path: path in nodes)
    gpt = DiskLayout("gpt", "D1", 512, 131072, (PartitionEntry(1, 2048, 4096, GPT_ESP, uuid="4C1F-A2", name="esp"),))
    disk = with_layout(Disk("/dev/loop9", "loop9", 64 << 20), gpt)
    (esp,) = disk.partitions
    assert (esp.path, esp.start, esp.size, esp.fstype, esp.uuid, esp.partuuid, esp.partlabel) == (
        "/dev/loop9p1", 2048 * 512, 4096 * 512, "vfat", "AB-CD", "4c1f-a2", "esp")
    assert esp.is_esp and disk.esps == [esp] and disk.table == "gpt" and probed == [("/dev/loop9p1", {})]
    nodes.clear()
    assert with_layout(Disk("/dev/loop9", "loop9", 64 << 20), gpt).partitions[0].fstype == "vfat"
    assert probed[-1] == ("/dev/loop9", {"offset": 2048 * 512, "size": 4096 * 512})
    mbr = DiskLayout("dos", "0x5d8a4b3c", 512, 131072, (PartitionEntry(2, 2048, 4096, "83"),))
    assert with_layout(Disk("/dev/sdb", "sdb", 64 << 20), mbr).partitions[0].partuuid == "5d8a4b3c-02"


def test_the_unattended_result_line_says_not_needed_for_a_data_disk(tmp_path, monkeypatch, capsys):
    """The job as the live system runs it, the engine's restore replaced by a result with the data disk's steps."""
    from lifeboat import unattended
    from lifeboat.engine import plan as plan_module
    from lifeboat.repo.store import Repository

    Repository.open(tmp_path / "repo", create=True)
    steps = [StepRecord("partition table", Outcome.DONE),
             StepRecord("bootloader: detect", Outcome.NOT_NEEDED, "a data disk needs no bootloader")]
    monkeypatch.setattr(unattended, "find_device", lambda spec, what: "/dev/fake-target")
    monkeypatch.setattr(plan_module, "plan_restore", lambda repo, image, target, **kw: "a plan")
    monkeypatch.setattr(restore_module, "restore", lambda plan, **kw: RestoreResult("data", "/dev/fake-target", steps=steps))
    cmdline = (f"lifeboat.job=restore lifeboat.image=data lifeboat.target=/dev/vdb lifeboat.repo={tmp_path / 'repo'}")
    assert unattended.run(cmdline, act=False) == 0
    line = next(l for l in capsys.readouterr().out.splitlines() if l.startswith("LIFEBOAT-RESULT:"))
    assert line.startswith("LIFEBOAT-RESULT: OK job=restore image=data seconds=") and line.endswith(" bootloader=not-needed")
