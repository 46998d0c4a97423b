"""The restore plan says which chain the bootloader step will install, read from the image's ESP in the
repository (no mount, no write): shim + signed GRUB when the ESP has shimx64.efi next to grubx64.efi, unsigned
GRUB when it has GRUB alone, nothing for a disk without GRUB. Real loop devices, a real capture, mtools on the
ESP (this host has no vfat); the loaders are synthetic PE files (only their names matter to the plan)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from diskbuilder import MiB, PartSpec, build_disk, loop_disk, sh

from lifeboat.engine.capture import capture
from lifeboat.repo.store import Repository

pytestmark = pytest.mark.integration

ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


def dry_run(repo: Repository, name: str, target: str, *extra: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "lifeboat", "restore", name, target, "--repo", str(repo.root),
                           "--dry-run", *extra], capture_output=True, text=True, stdin=subprocess.DEVNULL, env=dict(os.environ))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.mark.parametrize("loaders, line", [
    (("shimx64.efi", "grubx64.efi", "mmx64.efi"), "Bootloader step installs: shim + signed GRUB (Secure Boot)."),
    (("grubx64.efi",), "Bootloader step installs: GRUB (unsigned: will not boot with Secure Boot on)."),
    ((), None),
])
def test_the_plan_names_the_chain_from_the_images_esp(workdir, lifeboat_env, loaders, line):
    with loop_disk(workdir, "src", 80 * MiB) as src, loop_disk(workdir, "target", 96 * MiB) as target:
        build_disk(src, "gpt", [PartSpec(32, "vfat", gpt_type=ESP_TYPE, name="esp"), PartSpec(0, "ext4", name="root")],
                   workdir)
        env = dict(os.environ, MTOOLS_SKIP_CHECK="1")
        for d in ("::/EFI", "::/EFI/debian"):
            subprocess.run(["mmd", "-i", src.node(1), d], check=True, env=env, capture_output=True)
        for name in loaders:
            blob = workdir / name
            blob.write_bytes(b"MZ" + bytes(8190))
            subprocess.run(["mcopy", "-i", src.node(1), str(blob), f"::/EFI/debian/{name}"], check=True, env=env,
                           capture_output=True)
        sh("sync")
        repo = Repository.open(workdir / "repo", create=True)
        capture(src.path, "img", repo)
        out = dry_run(repo, "img", target.path)
        skipped = dry_run(repo, "img", target.path, "--no-bootloader")
    if line is None:
        assert "Bootloader step installs" not in out, out
        assert "Bootloader step" not in skipped, skipped
    else:
        assert line in out, out
        assert "Bootloader step installs" not in skipped and "Bootloader step: skipped (--no-bootloader)." in skipped
