"""LVM inside LUKS in the live ISO (issue #11), run inside test_luks's live boot on two disks of its own:
the Debian installer's "guided encrypted LVM" layout (an ESP, an ext4 /boot, then a LUKS2 container holding
the PV of debian-vg with root ext4 and swap_1). `lifeboat capture` with the passphrase opens the container
read-only, activates the group inside read-only and images root by its used blocks (swap recorded), the
header backup kept; `lifeboat restore` onto a disk twice the size re-creates the container from that header,
the PV, VG and LVs inside it, and grows the PV, root and its ext4 (swap kept). The guest then shows the same
LUKS, PV, VG and LV UUIDs, the files' hashes, fsck clean, and no mapping left after either job; the
repository grew by about root's used data and the header, not by the container's size.
"""

from __future__ import annotations

import json
import time

from iso_helpers import shell
from qemu import Drive, Machine

SRC, DST = "/dev/disk/by-id/virtio-LBLVSRC", "/dev/disk/by-id/virtio-LBLVDST"
SOURCE_MIB = 384
REPO = "/mnt/repo/images"
VG = "debian-vg"
MIB = 1 << 20
FORMAT = "cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000"  # TCG is slow
FIELDS = "--reportformat json --units b --nosuffix -o vg_uuid,lv_name,lv_uuid,lv_size"
SUMS = "(cd /mnt/lv && sha256sum a.bin etc/hostname)"


def drives(blank_disk, tmp_path) -> list[Drive]:
    return [Drive(blank_disk(tmp_path / "lvsrc.img", SOURCE_MIB), "virtio", serial="LBLVSRC"),
            Drive(blank_disk(tmp_path / "lvdst.img", 2 * SOURCE_MIB), "virtio", serial="LBLVDST")]


def _ok(vm: Machine, command: str, timeout: float = 300) -> str:
    rc, out = shell(vm, command, timeout)
    assert rc == 0, f"{command}\n-> rc {rc}:\n{out}"
    return out


def _build(vm: Machine, key: str) -> None:
    _ok(vm, f"sgdisk -n 1:2048:+16M -t 1:ef00 -n 2:0:+48M -t 2:8300 -n 3:0:0 -t 3:8309 {SRC} >/dev/null"
            f" && partx -u {SRC} && udevadm settle && mkfs.vfat -n ESP {SRC}-part1 >/dev/null"
            f" && mkfs.ext4 -q -L boot {SRC}-part2 && {FORMAT} --key-file={key} {SRC}-part3"
            f" && cryptsetup open --key-file={key} {SRC}-part3 lbsrc_crypt"
            f" && pvcreate -q /dev/mapper/lbsrc_crypt && vgcreate -q {VG} /dev/mapper/lbsrc_crypt"
            f" && lvcreate -q -y -n root -L 200M {VG} && lvcreate -q -y -n swap_1 -L 64M {VG}"
            f" && mkfs.ext4 -q -L root /dev/{VG}/root && mkswap -L swap /dev/{VG}/swap_1 >/dev/null"
            f" && mkdir -p /mnt/lv && mount /dev/{VG}/root /mnt/lv && head -c 24M /dev/urandom >/mnt/lv/a.bin"
            " && mkdir /mnt/lv/etc && echo lifeboat-lvm-in-luks >/mnt/lv/etc/hostname && sync")


def _ids(vm: Machine, pv: str) -> dict[str, dict]:
    """lvs of the group on `pv` (with the PV's and VG's UUIDs in each row), by LV name."""
    out = _ok(vm, f"lvs --devices {pv} {FIELDS}")
    pv_uuid = _ok(vm, f"pvs --devices {pv} --noheadings -o pv_uuid").strip()
    return {row["lv_name"]: {**row, "pv_uuid": pv_uuid} for row in json.loads(out[out.index("{"):])["report"][0]["lv"]}


def _closed(vm: Machine, when: str) -> None:
    out = _ok(vm, "dmsetup ls")
    assert "No devices found" in out, f"mappings left after {when}:\n{out}"


def scenario(vm: Machine, lifeboat: str, key: str, wrong: str) -> None:
    """The repository (LABEL=LBREPO) is mounted on /mnt/repo by the caller; `key`, `wrong`: passphrase files."""
    started = time.monotonic()
    _build(vm, key)
    sums = _ok(vm, SUMS)
    root_used = int(_ok(vm, "df -B1 --output=used /mnt/lv | tail -1"))
    before = _ids(vm, "/dev/mapper/lbsrc_crypt")
    swap_uuid = _ok(vm, f"blkid -p -o value -s UUID /dev/{VG}/swap_1").strip()
    _ok(vm, f"umount /mnt/lv && vgchange -an {VG} >/dev/null && cryptsetup close lbsrc_crypt")
    luks_uuid = _ok(vm, f"cryptsetup luksUUID {SRC}-part3").strip()
    container = int(_ok(vm, f"blockdev --getsize64 {SRC}-part3"))
    chunks = int(_ok(vm, f"(du -sb {REPO}/chunks 2>/dev/null || echo 0) | cut -f1"))
    phases = [("build", time.monotonic())]

    out = _ok(vm, f"{lifeboat} capture {SRC} lvmluks --repo {REPO} --luks-passphrase-file {key} --allow-plaintext "
                  "2>&1 | grep -v '%' | tail -25", timeout=900)
    assert "LVM physical volume" in out and f"LVM volume group {VG}" in out and "root" in out, out
    _closed(vm, "the capture")
    phases.append(("capture", time.monotonic()))
    grew = int(_ok(vm, f"du -sb {REPO}/chunks | cut -f1")) - chunks
    manifest = json.loads(_ok(vm, f"cat {REPO}/images/lvmluks/manifest.json"))
    content = manifest["partitions"][2]["content"]
    assert content["kind"] == "luks" and content["uuid"] == luks_uuid, content
    inner = content["inner"]
    assert inner == {"kind": "lvm-pv", "vg_name": VG, "pv_uuid": before["root"]["pv_uuid"]}, inner
    (group,) = manifest["volume_groups"]
    assert group["uuid"] == before["root"]["vg_uuid"] and [pv["partition"] for pv in group["pvs"]] == [3], group
    lvs = {lv["name"]: lv for lv in group["lvs"]}
    assert lvs["swap_1"]["content"]["kind"] == "swap" and lvs["root"]["content"]["kind"] == "filesystem", lvs
    used = lvs["root"]["content"]["stream"]["used_bytes"]  # ext4's allocated blocks: files, journal, tables
    data = used + sum(p["content"].get("stream", {}).get("used_bytes", 0) for p in manifest["partitions"])
    print(f"LVM in LUKS: container {container} bytes, root LV df-used {root_used}, imaged {used}; all data {data}, "
          f"header {content['header']['length']}, repository +{grew}")
    assert root_used < used < 200 * MIB // 3, (root_used, used)  # by used blocks, not the LV's 200 MiB
    # the used data (random: it does not compress) and the header, not the container's 319 MiB
    assert grew < data + content["header"]["length"] + 4 * MIB and grew < container // 4, (data, grew)

    rc, out = shell(vm, f"{lifeboat} restore lvmluks {DST} --repo {REPO} --luks-passphrase-file {wrong} --yes "
                        f"--no-bootloader 2>&1 | tail -3; cmp -n 4194304 {DST} /dev/zero && echo TARGET-UNTOUCHED",
                    timeout=300)
    assert "wrong passphrase" in out and "TARGET-UNTOUCHED" in out, out
    out = _ok(vm, f"{lifeboat} restore lvmluks {DST} --repo {REPO} --luks-passphrase-file {key} --yes "
                  "--no-bootloader 2>&1 | grep -v '%' | tail -40", timeout=900)
    assert f"LVM volume group {VG}" in out and "LVM physical volume of debian-vg" in out, out
    _closed(vm, "the restore")
    phases.append(("restore (a wrong passphrase refused first)", time.monotonic()))
    _check_restored(vm, key, luks_uuid, before, swap_uuid, sums)
    phases.append(("checks", time.monotonic()))
    spent = ", ".join(f"{name} {end - start:.0f} s" for (_, start), (name, end) in zip([("", started)] + phases, phases))
    print(f"LVM in LUKS: {time.monotonic() - started:.0f} s of guest time: {spent}")


def _check_restored(vm: Machine, key: str, luks_uuid: str, before: dict, swap_uuid: str, sums: str) -> None:
    assert _ok(vm, f"cryptsetup luksUUID {DST}-part3").strip() == luks_uuid
    _ok(vm, f"cryptsetup open --key-file={key} {DST}-part3 lbdst_crypt && vgchange -ay {VG} >/dev/null")
    after = _ids(vm, "/dev/mapper/lbdst_crypt")
    for name in ("root", "swap_1"):
        for field in ("pv_uuid", "vg_uuid", "lv_uuid"):
            assert after[name][field] == before[name][field], (name, field, before, after)
    assert int(after["swap_1"]["lv_size"]) == int(before["swap_1"]["lv_size"]), after
    assert int(after["root"]["lv_size"]) > 2 * int(before["root"]["lv_size"]), (before, after)
    assert _ok(vm, f"blkid -p -o value -s UUID /dev/{VG}/swap_1").strip() == swap_uuid
    _ok(vm, f"e2fsck -fn /dev/{VG}/root && mount /dev/{VG}/root /mnt/lv")
    assert _ok(vm, SUMS) == sums
    assert int(_ok(vm, "df -B1 --output=size /mnt/lv | tail -1")) > 2 * 190 * MIB  # the ext4 grew with its LV
    _ok(vm, f"umount /mnt/lv && vgchange -an {VG} >/dev/null && cryptsetup close lbdst_crypt")
    _closed(vm, "the checks")
