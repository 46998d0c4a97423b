"""bootfix with LUKS containers (issue 9): needs-passphrase without one, a wrong one stops before anything is
written, the right one opens each container under its crypttab name and closes it afterwards. cryptsetup and lvm2
are replaced here (no device-mapper in unit tests); the real ones run in tests/vm/test_boot_luks_lvm.py."""

from __future__ import annotations

import contextlib

import pytest

from lifeboat.boot import detect, fix, luks_roots, lvm_roots, probe
from lifeboat.boot.model import DONE, FAILED, NEEDS_PASSPHRASE, LinuxSystem, Recorder
from lifeboat.devices import Disk, FsFacts, Partition
from lifeboat.events import Outcome, summarize
from lifeboat.layout.model import GPT_ESP
from lifeboat.volumes.luks import LuksKey, WrongLuksPassphrase

S = 512
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
ESP = Partition("/dev/vda1", 1, 2048 * S, 65536 * S, "vfat", "", "1B0C-0011", "p1", type=GPT_ESP)
BOOT = Partition("/dev/vda2", 2, 67584 * S, 262144 * S, "ext4", "", "b0000000-0000-4000-8000-000000000002", "p2",
                 type=LINUX)
CRYPT = Partition("/dev/vda3", 3, 329728 * S, 2000000 * S, "crypto_LUKS", "", "c0000000-0000-4000-8000-000000000013",
                  "p3", type=LINUX)
DISK = Disk("/dev/vda", "vda", 2 << 30, table="gpt", partitions=(ESP, BOOT, CRYPT))
ROOT_LV = probe.Volume("debian-vg", "root", "/dev/mapper/debian--vg-root", ("/dev/mapper/vda3_crypt",), "ext4", "r")
KEY = LuksKey("correct horse")


def test_crypttab_lines_and_an_opened_containers_mapper_name_resolve():
    entries = probe.parse_crypttab("# comment\nvda3_crypt UUID=c0 none luks,discard\n\nbad\nx /dev/sda4\n")
    assert entries == [probe.CrypttabEntry("vda3_crypt", "UUID=c0", "luks,discard"), probe.CrypttabEntry("x", "/dev/sda4")]
    plain = probe.Volume("", "luks-c0", "/dev/mapper/luks-c0", ("/dev/vda3",), "ext4", "u1")
    assert probe.resolve_spec("/dev/mapper/luks-c0", DISK, [plain]) is plain


def test_needs_passphrase_is_neither_failed_nor_done():
    assert summarize([Outcome.DONE, Outcome.NEEDS_PASSPHRASE]) == Outcome.NEEDS_PASSPHRASE
    assert summarize([Outcome.FAILED, Outcome.NEEDS_PASSPHRASE]) == Outcome.FAILED
    assert fix.exit_code([fix.StepOutcome("unlock /dev/vda3", NEEDS_PASSPHRASE)]) == 0


def test_the_crypttab_name_of_a_container_is_the_one_its_system_gives(monkeypatch):
    monkeypatch.setattr(luks_roots.os.path, "exists", lambda p: False)
    system = LinuxSystem(ROOT_LV, "Debian", "debian", crypttab=[
        probe.CrypttabEntry("other", "UUID=ffff"), probe.CrypttabEntry("vda3_crypt", f"UUID={CRYPT.uuid}")])
    assert luks_roots.crypttab_names([system], DISK, lambda *a: None) == {"/dev/vda3": "vda3_crypt"}
    monkeypatch.setattr(luks_roots.os.path, "exists", lambda p: p == "/dev/mapper/vda3_crypt")
    said = []
    assert luks_roots.crypttab_names([system], DISK, lambda m, level: said.append(m)) == {}
    assert "in use" in said[0] and "lifeboat-luks-vda3" in said[0]


class FakeCrypt:
    """cryptsetup and blkid as far as luks_roots uses them; records open/close with their names."""

    def __init__(self, monkeypatch, passphrase="correct horse", content="LVM2_member"):
        self.calls: list[str] = []
        self.passphrase = passphrase
        monkeypatch.setattr(luks_roots.luks, "device_mapper", lambda: True)
        monkeypatch.setattr(luks_roots.luks, "open_container", self.open)
        monkeypatch.setattr(luks_roots.luks, "close_container", lambda node, name="": self.calls.append(
            f"close {name or 'lifeboat-luks-vda3'}"))
        monkeypatch.setattr(luks_roots, "holder", lambda part: "")
        monkeypatch.setattr(luks_roots, "filesystem_facts", lambda node: FsFacts(content, "u"))

    def open(self, node, key, what, *, read_only, name=""):
        if key.passphrase != self.passphrase:
            raise WrongLuksPassphrase(f"wrong passphrase for the LUKS container {what}: no key slot opens with it; "
                                      "nothing was written")
        self.calls.append(f"open {node} as {name or 'lifeboat-luks-vda3'}")
        return f"/dev/mapper/{name or 'lifeboat-luks-vda3'}"


def _no_lvm(monkeypatch, seen):
    @contextlib.contextmanager
    def opened(disk, rec, more_pvs=()):
        seen.append(list(more_pvs))
        yield lvm_roots.OpenGroups(volumes=[ROOT_LV] if more_pvs else [])
    monkeypatch.setattr(lvm_roots, "opened", opened)


def test_without_a_passphrase_each_container_needs_it_and_nothing_is_opened(monkeypatch):
    fake = FakeCrypt(monkeypatch)
    seen = []
    _no_lvm(monkeypatch, seen)
    monkeypatch.setattr(detect, "find_systems", lambda disk, log, volumes=(): detect.Findings())
    outcomes = fix._fix(DISK, Recorder(lambda e: None), no_system=FAILED)
    assert [(o.step, o.outcome) for o in outcomes] == [("unlock /dev/vda3", NEEDS_PASSPHRASE),
                                                       ("detect", NEEDS_PASSPHRASE)]
    assert "--luks-passphrase-file" in outcomes[0].detail and "/dev/vda3" in outcomes[1].detail
    assert fake.calls == [] and fix.exit_code(outcomes) == 0


def test_a_wrong_passphrase_fails_naming_the_partition_and_stops_before_any_system(monkeypatch):
    fake = FakeCrypt(monkeypatch)
    _no_lvm(monkeypatch, [])
    monkeypatch.setattr(detect, "find_systems", lambda *a, **k: pytest.fail("looked for systems"))
    monkeypatch.setattr(fix, "_fix_linux", lambda *a: pytest.fail("wrote something"))
    (out,) = fix._fix(DISK, Recorder(lambda e: None), no_system=FAILED, key=LuksKey("wrong"))
    assert out.step == "unlock /dev/vda3" and out.outcome == FAILED
    assert "wrong passphrase" in out.detail and "/dev/vda3" in out.detail
    assert fake.calls == [] and fix.exit_code([out]) == 1


def test_the_right_passphrase_looks_then_opens_under_the_crypttab_name_and_closes(monkeypatch):
    fake = FakeCrypt(monkeypatch)
    seen_pvs = []
    _no_lvm(monkeypatch, seen_pvs)
    monkeypatch.setattr(luks_roots.os.path, "exists", lambda p: False)
    system = LinuxSystem(ROOT_LV, "Debian GNU/Linux 12 (bookworm)", "debian", boot=BOOT,
                         crypttab=[probe.CrypttabEntry("vda3_crypt", f"UUID={CRYPT.uuid}", "luks,discard")])
    monkeypatch.setattr(detect, "find_systems", lambda disk, log, volumes=(): detect.Findings(
        linux=[system] if ROOT_LV in volumes else []))
    fixed = []
    monkeypatch.setattr(fix, "_fix_linux", lambda disk, s, rec, windows_present: fixed.append(s.where))
    outcomes = fix._fix(DISK, Recorder(lambda e: None), no_system=FAILED, key=KEY)
    assert fake.calls == ["open /dev/vda3 as lifeboat-luks-vda3", "close lifeboat-luks-vda3",
                          "open /dev/vda3 as vda3_crypt", "close vda3_crypt"]
    assert seen_pvs == [["/dev/mapper/lifeboat-luks-vda3"], ["/dev/mapper/vda3_crypt"]]
    assert [(o.step, o.outcome) for o in outcomes] == [("unlock /dev/vda3", DONE), ("detect", DONE),
                                                       ("close LUKS container /dev/vda3", DONE)]
    assert "opened as /dev/mapper/vda3_crypt (the name its system's /etc/crypttab gives)" in outcomes[0].detail
    assert fixed == ["/dev/mapper/debian--vg-root"]


def test_a_filesystem_straight_in_a_container_is_a_root_candidate(monkeypatch):
    FakeCrypt(monkeypatch, content="ext4")
    with luks_roots.opened(DISK, KEY, Recorder(lambda e: None), {"/dev/vda3": "cryptroot"}) as sealed:
        assert sealed.pvs == [] and [v.path for v in sealed.volumes] == ["/dev/mapper/cryptroot"]
        assert sealed.volumes[0].fstype == "ext4" and not sealed.failed


def _run_command(monkeypatch, capsys, outcomes, *extra):
    from lifeboat.boot import command

    seen = {}

    def fake_bootfix(disk, progress, key):
        seen["key"] = key
        return outcomes

    monkeypatch.setattr(command, "bootfix", fake_bootfix)
    code = command.main(["bootfix", "/dev/vda", "--yes", *extra])
    return code, capsys.readouterr().out, seen


def test_the_cli_says_needs_passphrase_with_exit_0_and_a_json_field_a_script_can_test(monkeypatch, capsys):
    locked = [fix.StepOutcome("unlock /dev/vda3", NEEDS_PASSPHRASE, "needs its passphrase"),
              fix.StepOutcome("detect", NEEDS_PASSPHRASE, "no system outside")]
    code, out, seen = _run_command(monkeypatch, capsys, locked, "--json")
    import json

    result = json.loads(out)
    assert code == 0 and seen["key"] is None
    assert result["outcome"] == "needs-passphrase" and result["needs_passphrase"] == ["/dev/vda3"]
    code, out, _ = _run_command(monkeypatch, capsys, locked)
    assert code == 0 and out.splitlines()[0].startswith("?? unlock /dev/vda3: needs-passphrase")
    assert "need the passphrase: run again with --luks-passphrase-file FILE" in out.splitlines()[-1]


def test_the_cli_reads_the_passphrase_file_and_never_prints_it(monkeypatch, capsys, tmp_path):
    secret = tmp_path / "luks"
    secret.write_text("correct horse\n")
    secret.chmod(0o600)
    code, out, seen = _run_command(monkeypatch, capsys, [fix.StepOutcome("detect", DONE, "Debian")],
                                   "--luks-passphrase-file", str(secret))
    assert code == 0 and seen["key"] == LuksKey("correct horse") and "correct horse" not in out


def test_the_restores_bootloader_step_gets_the_restores_passphrase(monkeypatch):
    seen = {}
    monkeypatch.setattr(fix, "target_disk", lambda path, layout=None: DISK)
    monkeypatch.setattr(fix, "_fix", lambda disk, rec, no_system, key=None: seen.update(key=key, no=no_system) or [])
    fix.after_restore("/dev/vda", layout=None, key=KEY)
    assert seen == {"key": KEY, "no": fix.NOT_NEEDED}
