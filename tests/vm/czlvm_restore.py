"""Issue #12's LVM proof, sharing test_lvm.py's live-ISO boot: the Clonezilla image of a disk holding a volume
group, made by the REAL Clonezilla (ocs-sr savedisk inside the live ISO, see czlvm_fixture.py), is listed,
verified and restored by Lifeboat from the Clonezilla directory onto a blank disk twice the source's size,
and imported into a native repository. The guest then shows: the PV, VG and LV UUIDs and tags as the source
had them, the data volumes grown, the swap volume's UUID kept, fsck clean, every file's hash equal (in the
plain partition and in both data volumes), and the imported image holding the same volume group.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from iso_helpers import run
from qemu import Drive

import czlvm_fixture

SERIAL = "LBCZLVMT"
T = f"/dev/disk/by-id/virtio-{SERIAL}"
CZ = "/mnt/repo/cz"
VG = czlvm_fixture.VG
REPORT = czlvm_fixture.REPORT


def repo_disk(path: Path, size_mib: int, label: str, live_iso: Path, work: Path) -> Path:
    """An ext4 whole-disk repository holding cz/<the Clonezilla LVM image> (made once by the real
    Clonezilla, cached)."""
    fixture = czlvm_fixture.fixture(live_iso)
    staging = work / "repo-staging"
    shutil.copytree(fixture / czlvm_fixture.NAME, staging / "cz" / czlvm_fixture.NAME)
    with open(path, "wb") as f:
        f.truncate(size_mib << 20)
    run(["mkfs.ext4", "-q", "-F", "-L", label, "-d", str(staging), str(path)])
    shutil.rmtree(staging)
    return path


def target_drive(tmp_path: Path) -> Drive:
    path = tmp_path / "cz-lvm-target.img"
    with open(path, "wb") as f:
        f.truncate(2 * czlvm_fixture.SOURCE_MIB << 20)
    return Drive(path, "virtio", serial=SERIAL)


def expectations(live_iso: Path) -> dict:
    root = czlvm_fixture.fixture(live_iso)
    return json.loads((root / f"{czlvm_fixture.NAME}.expect.json").read_text())


def _blkid(export: str) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for block in export.strip().split("\n\n"):
        keys = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        name = keys.get("DEVNAME", "").rsplit("/", 1)[-1]
        out["part1" if name.endswith("-part1") else name] = keys
    return out


def restore_in_live(vm, ok, expect: dict) -> None:
    """In the live system (the repository disk mounted at /mnt/repo): list, verify, restore, check, import."""
    name = czlvm_fixture.NAME
    listing = json.loads((lambda o: o[o.index("["):])(ok(vm, f"lifeboat images --repo {CZ} --json")))
    (image,) = listing
    assert image["origin"] == "clonezilla", image
    (group,) = image["volume_groups"]
    src = expect["lvs"]
    assert group["uuid"] == src["root"]["vg_uuid"] and group["partitions"] == [2], group
    assert {lv["name"]: lv["uuid"] for lv in group["lvs"]} == {n: lv["lv_uuid"] for n, lv in src.items()}, group
    out = ok(vm, f"lifeboat verify {name} --repo {CZ} 2>&1 | tail -3", timeout=600)
    print(f"verify of the Clonezilla LVM image:\n{out}")

    started = time.monotonic()
    out = ok(vm, f"lifeboat restore {name} {T} --repo {CZ} --yes --no-bootloader >/tmp/czlvm.log 2>&1; rc=$?; "
                 "grep -v '%' /tmp/czlvm.log | grep -v 'time per stage' | tail -40; (exit $rc)", timeout=900)
    print(f"Clonezilla LVM image restored in the guest: {time.monotonic() - started:.0f} s\n{out}")
    assert f"LVM volume group {VG} (476.0 MiB, grows to" in out and f"LVM {VG}: done" in out, out

    rows = json.loads((lambda o: o[o.index("{"):])(ok(vm, f"lvs --devices {T}-part2 {REPORT}")))["report"][0]["lv"]
    after = {row["lv_name"]: row for row in rows}
    assert set(after) == set(src) == {"root", "data", "swap"}, after
    for lv, before in src.items():
        for field in ("vg_name", "vg_uuid", "vg_tags", "lv_uuid", "lv_tags"):
            assert after[lv][field] == before[field], (lv, field, before, after[lv])
    assert ok(vm, f"pvs --devices {T}-part2 --noheadings -o pv_uuid").strip() == expect["pv_uuid"]
    assert int(after["swap"]["lv_size"]) == int(src["swap"]["lv_size"])
    for lv in ("root", "data"):
        assert int(after[lv]["lv_size"]) > 1.5 * int(src[lv]["lv_size"]), (lv, src[lv], after[lv])

    ok(vm, f"vgchange -ay {VG} && e2fsck -fn /dev/{VG}/root && xfs_repair -n /dev/{VG}/data && e2fsck -fn {T}-part1")
    ids = _blkid(ok(vm, f"blkid -p -o export {T}-part1 /dev/{VG}/root /dev/{VG}/data /dev/{VG}/swap"))
    was = _blkid(expect["blkid"])
    for dev in ("part1", "root", "data", "swap"):
        assert ids[dev]["UUID"] == was[dev]["UUID"], (dev, was[dev], ids[dev])
    ok(vm, f"mkdir -p /mnt/b /mnt/r /mnt/d && mount {T}-part1 /mnt/b && mount /dev/{VG}/root /mnt/r"
           f" && mount /dev/{VG}/data /mnt/d")
    sums = [line.split() for line in ok(vm, czlvm_fixture.SUMS).splitlines() if line.strip()]
    assert sorted(sums) == sorted([s["where"], s["sha256"], s["file"]] for s in expect["sums"]), sums
    ok(vm, f"umount /mnt/b /mnt/r /mnt/d && vgchange -an {VG}")

    started = time.monotonic()
    ok(vm, f"lifeboat import {CZ}/{name} czimported --repo /mnt/repo/images 2>&1 | tail -3", timeout=600)
    print(f"Clonezilla LVM image imported in the guest: {time.monotonic() - started:.0f} s")
    native = json.loads((lambda o: o[o.index("["):])(ok(vm, "lifeboat images --repo /mnt/repo/images --json")))
    (imported,) = [i for i in native if i["name"] == "czimported"]
    assert imported["volume_groups"] == image["volume_groups"], (imported, image)
