"""Windows-only disk: bootfix installs no GRUB; it writes the removable fallback from the Windows boot
manager and recreates the firmware entry for \\EFI\\Microsoft\\Boot\\bootmgfw.efi.

What this does NOT prove: that Windows boots. The ESP here is synthetic (the layout of a Windows install,
with a stand-in bootmgfw.efi that is not a program and a stand-in BCD); nothing checks that the BCD's
device references still match the restored disk (restore keeps the disk signature, partition GUIDs and
offsets for that), nor Secure Boot, nor BIOS-booted Windows (MBR boot code and bootmgr are restored as
captured and not touched by bootfix).
"""

from __future__ import annotations


import pytest

import bootdisk
import bootvm
import qemu

pytestmark = qemu.vm_marks("needs root")


@pytest.mark.timeout(2400)  # a cold cache builds the rescue guest (debootstrap) first
def test_bootfix_recreates_windows_boot_manager_entry(tmp_path):
    disk = bootdisk.windows_disk(tmp_path / "windows.img")
    assert "BOOTX64" not in bootvm.esp_listing(disk, 1).upper()
    job = bootvm.run_bootfix_in_guest(disk, "nvme", "uefi", tmp_path, vars_file=tmp_path / "nvram.fd")
    print(f"bootfix in the rescue guest (UEFI): {job.seconds:.0f}s")
    assert job.exit == 0, job.output[-4000:]
    steps = {s["step"]: (s["outcome"], s["detail"]) for s in job.result["steps"]}
    assert list(steps) == ["detect", "removable fallback \\EFI\\BOOT\\BOOTX64.EFI", "NVRAM entry"], steps
    assert steps["detect"] == ("done", "Windows boot manager on /dev/nvme0n1p1")
    assert steps["removable fallback \\EFI\\BOOT\\BOOTX64.EFI"][0] == "done"
    assert steps["NVRAM entry"][0] == "done"
    assert not any("GRUB" in step for step in steps)
    line = next(l for l in job.efibootmgr.splitlines() if "Windows Boot Manager" in l)
    assert "\\EFI\\Microsoft\\Boot\\bootmgfw.efi" in line, job.efibootmgr
    assert "EFI/Boot/bootx64.efi".lower() in bootvm.esp_listing(disk, 1).lower()
