"""Pure parts of lifeboat.boot: fstab, spec resolution, boot code states, efibootmgr output, detection rules."""

from __future__ import annotations

import os

from lifeboat.boot import detect, efi, probe
from lifeboat.boot.model import DONE, FAILED, NOT_NEEDED, StepOutcome
from lifeboat.boot.fix import exit_code
from lifeboat.devices import Disk, Partition
from lifeboat.layout.model import GPT_BIOS_BOOT, GPT_ESP

S = 512  # devices.Partition counts bytes
ESP = Partition("/dev/vda2", 2, 4096 * S, 65536 * S, "vfat", "ESP", "1B0D-0001", "4c1f-a2", type=GPT_ESP, partlabel="esp")
ROOT = Partition("/dev/vda3", 3, 69632 * S, 2000000 * S, "ext4", "debroot", "6c1f0b3e-1a2b-4c3d-8e4f-000000000d01",
                 "4c1f-a3", type="0FC63DAF-8483-4772-8E79-3D69D8477DE4", partlabel="root")
BIOS = Partition("/dev/vda1", 1, 2048 * S, 2048 * S, type=GPT_BIOS_BOOT)
GPT = Disk("/dev/vda", "vda", 4 << 30, table="gpt", partitions=(BIOS, ESP, ROOT))

FSTAB = """# /etc/fstab: static file system information.
UUID=6c1f0b3e-1a2b-4c3d-8e4f-000000000d01 /         ext4 errors=remount-ro 0 1
UUID=1B0D-0001  /boot/efi vfat umask=0077 0 1
/swapfile none swap sw 0 0
"""


def test_parse_fstab_skips_comments_and_keeps_fields():
    entries = probe.parse_fstab(FSTAB)
    assert [(e.mountpoint, e.fstype) for e in entries] == [("/", "ext4"), ("/boot/efi", "vfat"), ("none", "swap")]
    assert entries[0].options == "errors=remount-ro"


def test_resolve_spec_by_uuid_partuuid_label_and_device_number():
    assert probe.resolve_spec("UUID=1b0d-0001", GPT) is ESP  # FAT UUIDs compare case-insensitively
    assert probe.resolve_spec("PARTUUID=4C1F-A3", GPT) is ROOT
    assert probe.resolve_spec("LABEL=debroot", GPT) is ROOT
    assert probe.resolve_spec("/dev/disk/by-uuid/1B0D-0001", GPT) is ESP
    assert probe.resolve_spec("/dev/sda3", GPT) is ROOT  # old machine's name: partition number only
    assert probe.resolve_spec("UUID=0000-0000", GPT) is None


def test_mbr_boot_code_states():
    empty = bytes(510) + b"\x55\xaa"
    grub = b"\xeb\x63\x90" + bytes(0x180 - 3) + b"GRUB \0Geom\0" + bytes(440 - 0x180 - 11) + bytes(70) + b"\x55\xaa"
    other = b"\xfa\x33\xc0" + bytes(507) + b"\x55\xaa"
    assert probe.mbr_boot_code_state(empty) == "empty"
    assert probe.mbr_boot_code_state(grub) == "grub"
    assert probe.mbr_boot_code_state(other) == "other"
    assert probe.mbr_boot_code_state(grub[:510] + b"\0\0") == "empty"


def test_parse_efibootmgr_tab_and_space_forms():
    text = (
        "BootCurrent: 0001\nTimeout: 0 seconds\nBootOrder: 0004,0000,0001\n"
        "Boot0000* UiApp\tFvVol(7cb8bdc9-f8eb-4f34-aaea-3ee4af6516a1)/FvFile(462caa21-7614-4503-836e-8ab6f4662331)\n"
        "Boot0004* debian\tHD(2,GPT,4c1f-a2,0x1000,0x20000)/File(\\EFI\\debian\\grubx64.efi)\n"
        "Boot0005  Windows Boot Manager HD(2,GPT,4c1f-a2,0x1000,0x20000)/File(\\EFI\\Microsoft\\Boot\\bootmgfw.efi)\n"
    )
    entries = efi.parse_efibootmgr(text)
    assert [(e.num, e.active, e.label) for e in entries] == [
        ("0000", True, "UiApp"), ("0004", True, "debian"), ("0005", False, "Windows Boot Manager")]
    assert efi.entry_for("\\EFI\\debian\\grubx64.efi", entries, "4C1F-A2").num == "0004"
    assert efi.entry_for("/EFI/Microsoft/Boot/bootmgfw.efi", entries).num == "0005"
    assert efi.entry_for("\\EFI\\debian\\shimx64.efi", entries) is None


def test_detect_linux_root_and_firmwares(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/fstab").write_text(FSTAB)
    (tmp_path / "etc/os-release").write_text('PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\n')
    (tmp_path / "boot/grub").mkdir(parents=True)
    system = detect.describe_linux(str(tmp_path), ROOT, GPT)
    assert system is not None
    assert (system.name, system.efi_id, system.esp, system.esp_mountpoint) == (
        "Debian GNU/Linux 12 (bookworm)", "debian", ESP, "/boot/efi")
    assert system.bios and system.efi
    no_bios = Disk("/dev/vda", "vda", 4 << 30, table="gpt", partitions=(ESP, ROOT))
    system = detect.describe_linux(str(tmp_path), ROOT, no_bios)
    assert not system.bios and "BIOS boot partition" in system.why_not_bios


def test_detect_ignores_a_data_partition(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/fstab").write_text(FSTAB)  # fstab but no GRUB anywhere
    assert detect.describe_linux(str(tmp_path), ROOT, GPT) is None
    assert detect.describe_linux(str(tmp_path / "nothing"), ROOT, GPT) is None


def test_find_ci(tmp_path):
    (tmp_path / "EFI/Microsoft/Boot").mkdir(parents=True)
    (tmp_path / "EFI/Microsoft/Boot/BOOTMGFW.EFI").write_bytes(b"MZ")
    found = probe.find_ci(str(tmp_path), detect.WINDOWS_LOADER)
    assert found == os.path.join(tmp_path, "EFI/Microsoft/Boot/BOOTMGFW.EFI")
    assert probe.find_ci(str(tmp_path), "EFI/BOOT/BOOTX64.EFI") is None


def test_exit_code():
    assert exit_code([]) == 1
    assert exit_code([StepOutcome("a", DONE), StepOutcome("b", NOT_NEEDED)]) == 0
    assert exit_code([StepOutcome("a", DONE), StepOutcome("b", FAILED, "why")]) == 1


def test_bootfix_command_refuses_without_terminal_or_yes(capsys, monkeypatch):
    import io

    from lifeboat.boot import command

    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert command.main(["bootfix", "/dev/does-not-exist"]) == 2
    assert "--yes" in capsys.readouterr().err


def test_bootfix_command_reports_an_unsafe_target(capsys, tmp_path):
    from lifeboat.boot import command

    plain = tmp_path / "disk.img"
    plain.write_bytes(b"")
    code = command.main(["bootfix", str(plain), "--yes", "--json"])
    assert code == 1
    assert "is not a block device" in capsys.readouterr().err


def _fake_efibootmgr(tmp_path, monkeypatch, hangs: int):
    """An efibootmgr on PATH that hangs on its first `hangs` runs, then behaves; it logs its arguments."""
    state = tmp_path / "runs"
    script = tmp_path / "bin" / "efibootmgr"
    script.parent.mkdir()
    script.write_text(f"""#!/bin/sh
n=$(($(cat {state} 2>/dev/null || echo 0) + 1)); echo $n > {state}
echo "$*" >> {tmp_path}/args
[ $n -le {hangs} ] && exec sleep 30
printf 'BootOrder: 0001\\nBoot0001* debian\\tHD(2,GPT,4c1f-a2,0x1000,0x10000)/File(\\\\EFI\\\\debian\\\\grubx64.efi)\\n'
""")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{script.parent}:{os.environ['PATH']}")
    monkeypatch.setattr(efi, "EFIBOOTMGR_TIMEOUT", 0.5)
    return tmp_path / "args"


def test_efibootmgr_that_hangs_once_is_stopped_and_run_again(tmp_path, monkeypatch):
    args = _fake_efibootmgr(tmp_path, monkeypatch, hangs=1)
    entries = efi.list_entries()
    assert [e.num for e in entries] == ["0001"]
    assert args.read_text().splitlines() == ["-v", "-v"]


def test_efibootmgr_that_keeps_hanging_is_a_failure_not_a_wait(tmp_path, monkeypatch):
    from lifeboat.errors import CommandTimedOut
    import pytest

    _fake_efibootmgr(tmp_path, monkeypatch, hangs=99)
    with pytest.raises(CommandTimedOut, match="did not finish within"):
        efi.create_entry("/dev/vda", 2, "debian", "\\EFI\\debian\\grubx64.efi")
