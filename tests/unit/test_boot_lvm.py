"""bootfix with a root on LVM (the Debian installer's guided LVM): fstab names, which volume is a root, two roots
on one /boot, a volume group of the same name active from another disk, and the activation / deactivation steps.

This host's kernel has no device-mapper, so lvm2 cannot activate anything here: where a test needs volume groups
activated, lifeboat.volumes.lvm's functions are replaced by fakes that record what they were asked (the real
activation is exercised in the live ISO by the vm layer). Everything else here is the real code.
"""

from __future__ import annotations

import contextlib
import os

import pytest

from lifeboat.boot import detect, fix, lvm_roots, probe
from lifeboat.boot.model import DONE, FAILED, NOT_NEEDED, LinuxSystem, Recorder
from lifeboat.devices import Disk, FsFacts, Partition
from lifeboat.errors import LifeboatError
from lifeboat.layout.model import GPT_BIOS_BOOT, GPT_ESP
from lifeboat.volumes.lvm_model import LogicalVolume, PhysicalVolume, VolumeGroup

S = 512
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
BIOS = Partition("/dev/vda1", 1, 2048 * S, 2048 * S, type=GPT_BIOS_BOOT)
ESP = Partition("/dev/vda2", 2, 4096 * S, 65536 * S, "vfat", "", "1B0D-0001", "4c1f-a2", type=GPT_ESP)
BOOT = Partition("/dev/vda3", 3, 69632 * S, 500000 * S, "ext4", "", "b0b0b0b0-0000-4000-8000-000000000003",
                 "4c1f-a3", type=LINUX)
PV = Partition("/dev/vda4", 4, 569632 * S, 4000000 * S, "LVM2_member", "", "pvuuid-4", "4c1f-a4", type=LINUX)
DISK = Disk("/dev/vda", "vda", 4 << 30, table="gpt", partitions=(BIOS, ESP, BOOT, PV))
ROOT_LV = probe.Volume("debian-vg", "root", "/dev/mapper/debian--vg-root", ("/dev/vda4",), "ext4",
                       "70070070-0000-4000-8000-00000000000a", "")
HOME_LV = probe.Volume("debian-vg", "home", "/dev/mapper/debian--vg-home", ("/dev/vda4",), "ext4",
                       "70070070-0000-4000-8000-00000000000b", "home")
VOLUMES = (ROOT_LV, HOME_LV)

# What the Debian 12 installer's guided LVM (separate /boot, UEFI) writes.
INSTALLER_FSTAB = """\
/dev/mapper/debian--vg-root /               ext4    errors=remount-ro 0       1
# /boot was on /dev/vda3 during installation
UUID=b0b0b0b0-0000-4000-8000-000000000003 /boot           ext2    defaults        0       2
# /boot/efi was on /dev/vda2 during installation
UUID=1B0D-0001  /boot/efi       vfat    umask=0077      0       1
/dev/mapper/debian--vg-home /home           ext4    defaults        0       2
/dev/mapper/debian--vg-swap_1 none            swap    sw              0       0
"""


def test_device_mapper_names_split_as_lvm2_escapes_them():
    assert probe.split_mapper("debian--vg-root") == ("debian-vg", "root")
    assert probe.split_mapper("vg0-swap_1") == ("vg0", "swap_1")
    assert probe.split_mapper("a--b-c--d--e") == ("a-b", "c-d-e")
    assert probe.split_mapper("sda3_crypt") is None  # a LUKS mapping, not VG-LV
    assert probe.split_mapper("-root") is None
    assert probe.split_mapper("vg-") is None


def test_fstab_names_of_logical_volumes():
    assert probe.lvm_names("/dev/mapper/debian--vg-root") == ("debian-vg", "root")
    assert probe.lvm_names("/dev/debian-vg/root") == ("debian-vg", "root")
    assert probe.lvm_names("/dev/sda3") is None
    assert probe.lvm_names("/dev/md/0") is None
    assert probe.lvm_names("/dev/disk/by-uuid/1B0D-0001") is None


def test_resolve_spec_finds_volumes_by_mapper_name_vg_path_uuid_and_label():
    assert probe.resolve_spec("/dev/mapper/debian--vg-root", DISK, VOLUMES) is ROOT_LV
    assert probe.resolve_spec("/dev/debian-vg/home", DISK, VOLUMES) is HOME_LV
    assert probe.resolve_spec("UUID=70070070-0000-4000-8000-00000000000A", DISK, VOLUMES) is ROOT_LV
    assert probe.resolve_spec("LABEL=home", DISK, VOLUMES) is HOME_LV
    assert probe.resolve_spec("/dev/disk/by-uuid/70070070-0000-4000-8000-00000000000a", DISK, VOLUMES) is ROOT_LV
    # partitions still come first and by their own keys
    assert probe.resolve_spec("UUID=b0b0b0b0-0000-4000-8000-000000000003", DISK, VOLUMES) is BOOT
    # an LV of a group that is not on this disk (or was renamed), or a LUKS mapping: nothing, never "partition 1"
    assert probe.resolve_spec("/dev/mapper/othervg-root1", DISK, VOLUMES) is None
    assert probe.resolve_spec("/dev/mapper/luks1", DISK, VOLUMES) is None
    assert probe.resolve_spec("/dev/debian-vg/swap_1", DISK, VOLUMES) is None
    assert probe.resolve_spec("/dev/mapper/debian--vg-root", DISK) is None  # no volume groups open


def test_a_volume_is_a_root_only_when_its_fstab_says_so():
    fstab = probe.parse_fstab(INSTALLER_FSTAB)
    assert detect.claims_root(fstab, ROOT_LV, DISK, VOLUMES)
    assert not detect.claims_root(fstab, HOME_LV, DISK, VOLUMES)  # a copy of the root kept in another LV
    renamed = probe.parse_fstab(INSTALLER_FSTAB.replace("debian--vg-root", "oldvg-root"))
    assert detect.claims_root(renamed, ROOT_LV, DISK, VOLUMES)  # names nothing here: taken as it is
    assert detect.claims_root(fstab, BOOT, DISK, VOLUMES)  # partitions are not second-guessed


def _installed_root(tmp_path, fstab: str = INSTALLER_FSTAB) -> str:
    root = tmp_path / "root"
    (root / "etc/default").mkdir(parents=True)
    (root / "etc/fstab").write_text(fstab)
    (root / "etc/default/grub").write_text('GRUB_DEFAULT=0\n')
    (root / "etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')
    (root / "boot").mkdir()
    return str(root)


def test_the_installers_guided_lvm_root_with_its_boot_and_esp(tmp_path):
    system = detect.describe_linux(_installed_root(tmp_path), ROOT_LV, DISK, VOLUMES)
    assert system is not None
    assert system.root is ROOT_LV and system.boot is BOOT and system.esp is ESP
    assert system.esp_mountpoint == "/boot/efi" and system.efi and system.bios  # GPT with a BIOS boot partition
    assert f"{system.name} on {system.where}" == "Debian GNU/Linux 12 (bookworm) on /dev/mapper/debian--vg-root"
    assert detect.describe_linux(_installed_root(tmp_path / "h"), HOME_LV, DISK, VOLUMES) is None


def test_an_lvm_root_without_a_separate_boot(tmp_path):
    fstab = "\n".join(line for line in INSTALLER_FSTAB.splitlines() if " /boot " not in line) + "\n"
    root = _installed_root(tmp_path, fstab)
    os.makedirs(os.path.join(root, "boot/grub"))
    system = detect.describe_linux(root, ROOT_LV, DISK, VOLUMES)
    assert system is not None and system.boot is None and system.esp is ESP


def test_a_boot_on_a_logical_volume_is_mounted_from_it(tmp_path):
    boot_lv = probe.Volume("debian-vg", "boot", "/dev/mapper/debian--vg-boot", ("/dev/vda4",), "ext4", "b00710", "")
    fstab = INSTALLER_FSTAB.replace("UUID=b0b0b0b0-0000-4000-8000-000000000003", "/dev/debian-vg/boot")
    system = detect.describe_linux(_installed_root(tmp_path, fstab), ROOT_LV, DISK, (*VOLUMES, boot_lv))
    assert system is not None and system.boot is boot_lv


def _system(root, boot, name="Debian GNU/Linux 12 (bookworm)") -> LinuxSystem:
    return LinuxSystem(root=root, name=name, efi_id="debian", boot=boot)


def test_two_roots_that_claim_one_boot_are_both_refused_naming_it():
    other = Partition("/dev/vda5", 5, 9 << 30, 1 << 30, "ext4", "", "5555", type=LINUX)
    refused = detect.shared_boots([_system(ROOT_LV, BOOT), _system(other, BOOT, "Ubuntu 24.04 LTS"),
                                   _system(HOME_LV, None)])
    assert set(refused) == {"/dev/mapper/debian--vg-root", "/dev/vda5"}
    for why in refused.values():
        assert "/dev/vda3 is the /boot of Debian GNU/Linux 12 (bookworm) on /dev/mapper/debian--vg-root and " \
               "Ubuntu 24.04 LTS on /dev/vda5" in why
        assert "nothing written" in why
    assert detect.shared_boots([_system(ROOT_LV, BOOT), _system(other, None)]) == {}


def _group(name="debian-vg", active=False) -> VolumeGroup:
    pv = PhysicalVolume("/dev/vda4", "pvuuid-4", 1 << 30, 1 << 30, 1 << 20, 255, 200)
    lvs = tuple(LogicalVolume(n, f"lv-{n}", 1 << 28, "-wi-a-----" if active else "-wi-------", active=active)
                for n in ("root", "swap_1", "home"))
    return VolumeGroup(name, "vguuid", 4 << 20, 255, 55, pvs=(pv,), lvs=lvs, pv_count=1)


def test_a_group_of_the_same_name_active_from_another_disk_is_refused_by_name():
    why = lvm_roots.name_clash(_group(), {"debian-vg": ["/dev/sdb3"]}, ["control", "debian--vg-root"])
    assert why.startswith("volume group debian-vg on /dev/vda4 not activated: a volume group of the same name is "
                          "active from /dev/sdb3 (another disk; /dev/mapper/debian--vg-root)")
    assert "vgchange -an debian-vg" in why and "--rename-vg" in why
    assert lvm_roots.name_clash(_group(), {"debian-vg": ["/dev/sdb3"]}, ["control"]) == ""  # there but inactive
    assert lvm_roots.name_clash(_group(), {"other": ["/dev/sdb3"]}, ["other-root"]) == ""
    assert lvm_roots.name_clash(_group(active=True), {"debian-vg": ["/dev/sdb3"]}, ["debian--vg-root"]) == ""


class FakeLvm:
    """lifeboat.volumes.lvm as seen from bootfix, recording activations (no device-mapper on this host)."""

    def __init__(self, monkeypatch, groups, elsewhere=None, dm=True, fail_deactivate=False):
        self.calls: list[str] = []
        self.fail_deactivate = fail_deactivate
        lvm = lvm_roots.lvm
        monkeypatch.setattr(lvm, "device_mapper", lambda: dm)
        monkeypatch.setattr(lvm, "read_groups", lambda devices: groups)
        monkeypatch.setattr(lvm, "groups_elsewhere", lambda exclude: elsewhere or {})
        monkeypatch.setattr(lvm, "activated", self.activated)
        monkeypatch.setattr(lvm_roots, "_mapper_entries", lambda: ["control"])
        monkeypatch.setattr(lvm_roots, "filesystem_facts",
                            lambda node: FsFacts("swap" if "swap" in node else "ext4", "u-" + node[-4:], ""))

    @contextlib.contextmanager
    def activated(self, vg, devices, *, read_only):
        self.calls.append(f"activate {vg} {','.join(devices)} ro={read_only}")
        try:
            yield False
        finally:
            self.calls.append(f"deactivate {vg}")
            if self.fail_deactivate:
                raise LifeboatError(f"vgchange -an {vg}: Logical volume {vg}/root in use")


def _recorder():
    rec = Recorder(lambda event: None)
    return rec


def test_the_disks_group_is_active_inside_and_deactivated_after_as_a_step(monkeypatch):
    fake = FakeLvm(monkeypatch, [_group()])
    rec = _recorder()
    with lvm_roots.opened(DISK, rec) as groups:
        assert fake.calls == ["activate debian-vg /dev/vda4 ro=False"]
        assert [v.path for v in groups.volumes] == ["/dev/mapper/debian--vg-root", "/dev/mapper/debian--vg-swap_1",
                                                   "/dev/mapper/debian--vg-home"]
        assert groups.volumes[0].fstype == "ext4" and groups.volumes[1].fstype == "swap"
        assert groups.unreadable == [] and rec.outcomes == []
    assert fake.calls[-1] == "deactivate debian-vg"
    assert [(o.step, o.outcome) for o in rec.outcomes] == [("deactivate volume group debian-vg", DONE)]


def test_deactivation_happens_on_error_too_and_its_failure_is_a_failed_step(monkeypatch):
    fake = FakeLvm(monkeypatch, [_group()], fail_deactivate=True)
    rec = _recorder()
    with pytest.raises(RuntimeError), lvm_roots.opened(DISK, rec):
        raise RuntimeError("grub-install crashed")
    assert fake.calls[-1] == "deactivate debian-vg"
    (out,) = rec.outcomes
    assert out.outcome == FAILED and "in use" in out.detail and "vgchange -an debian-vg" in out.detail


def test_a_clashing_group_is_not_activated_and_said_so(monkeypatch):
    fake = FakeLvm(monkeypatch, [_group()], elsewhere={"debian-vg": ["/dev/sdb3"]})
    monkeypatch.setattr(lvm_roots, "_mapper_entries", lambda: ["control", "debian--vg-root"])
    rec = _recorder()
    with lvm_roots.opened(DISK, rec) as groups:
        assert groups.volumes == []
        assert "active from /dev/sdb3" in groups.unreadable[0]
    assert fake.calls == [] and rec.outcomes == []


def test_no_device_mapper_is_said_not_attempted(monkeypatch):
    fake = FakeLvm(monkeypatch, [_group()], dm=False)
    with lvm_roots.opened(DISK, _recorder()) as groups:
        assert groups.volumes == [] and "no device-mapper" in groups.unreadable[0] and "/dev/vda4" in groups.unreadable[0]
    assert fake.calls == []


def test_a_disk_without_physical_volumes_asks_lvm2_nothing(monkeypatch):
    monkeypatch.setattr(lvm_roots.lvm, "device_mapper", lambda: pytest.fail("lvm2 asked"))
    plain = Disk("/dev/vda", "vda", 4 << 30, table="gpt", partitions=(BIOS, ESP, BOOT))
    with lvm_roots.opened(plain, _recorder()) as groups:
        assert groups.volumes == [] and groups.unreadable == []


def test_bootfix_reports_the_lvm_root_fixes_it_and_refuses_two_roots_on_one_boot(monkeypatch):
    """The whole run with detection and the per-system work replaced: what is reported, in which order."""
    fake = FakeLvm(monkeypatch, [_group()])
    other = Partition("/dev/vda5", 5, 9 << 30, 1 << 30, "ext4", "", "5555", type=LINUX)
    seen_volumes = []

    def find(disk, log, volumes=()):
        seen_volumes.extend(volumes)
        return detect.Findings(linux=[_system(ROOT_LV, None), _system(other, BOOT, "Ubuntu 24.04 LTS"),
                                      _system(HOME_LV, BOOT, "Debian GNU/Linux 13 (trixie)")])

    fixed = []
    monkeypatch.setattr(detect, "find_systems", find)
    monkeypatch.setattr(fix, "_fix_linux", lambda disk, system, rec, windows_present: fixed.append(system.where))
    outcomes = fix._fix(DISK, _recorder(), no_system=FAILED)
    assert [v.lv for v in seen_volumes] == ["root", "swap_1", "home"]
    assert fixed == ["/dev/mapper/debian--vg-root"]
    steps = [(o.step, o.outcome) for o in outcomes]
    assert steps == [("detect", DONE), ("mount /dev/vda5", FAILED), ("mount /dev/mapper/debian--vg-home", FAILED),
                     ("deactivate volume group debian-vg", DONE)]
    assert outcomes[0].detail.startswith("Debian GNU/Linux 12 (bookworm) on /dev/mapper/debian--vg-root; "
                                         "Ubuntu 24.04 LTS on /dev/vda5; ")
    assert "/dev/vda3 is the /boot of" in outcomes[1].detail and fix.exit_code(outcomes) == 1
    assert fake.calls[-1] == "deactivate debian-vg"


def test_a_refused_group_alone_fails_detect_naming_it(monkeypatch):
    FakeLvm(monkeypatch, [_group()], elsewhere={"debian-vg": ["/dev/sdb3"]})
    monkeypatch.setattr(lvm_roots, "_mapper_entries", lambda: ["debian--vg-root"])
    monkeypatch.setattr(detect, "find_systems", lambda disk, log, volumes=(): detect.Findings())
    (out,) = fix._fix(DISK, _recorder(), no_system=NOT_NEEDED)
    assert out.step == "detect" and out.outcome == FAILED
    assert out.detail.startswith("could not look into volume group debian-vg on /dev/vda4 not activated")


def test_a_group_spanning_another_disk_is_not_activated_from_this_one(monkeypatch):
    spanning = _group()
    spanning = VolumeGroup(spanning.name, spanning.uuid, spanning.extent_size, spanning.extents, spanning.free,
                           pvs=spanning.pvs, lvs=spanning.lvs, pv_count=2)
    fake = FakeLvm(monkeypatch, [spanning])
    with lvm_roots.opened(DISK, _recorder()) as groups:
        assert groups.unreadable == ["volume group debian-vg has 2 physical volumes, 1 of them found: "
                                     "not activated from /dev/vda alone"]
    assert fake.calls == []
