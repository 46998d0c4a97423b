"""Which chain a restore's bootloader step will install, told before anything is written.

The image's ESPs (FAT partitions captured with their data) are read from the repository: only the chunks
that hold their data are written, at their offsets, into a sparse scratch file that mtools lists (no mount:
the live system may lack nothing here, and a plan must not touch the target). An ESP with shimx64.efi next
to grubx64.efi means the bootloader step installs shim + signed GRUB; GRUB alone means unsigned GRUB, which
does not start on a machine with Secure Boot on.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass

from lifeboat import secureboot
from lifeboat.boot.shim import Chain, esp_chain
from lifeboat.errors import LifeboatError
from lifeboat.imagefs.view import SpaceReader, WindowCache, address_spaces_of
from lifeboat.repo.manifest import CHUNK_SIZE, ImageManifest
from lifeboat.repo.store import Repository
from lifeboat.run import run

FAT_TYPES = ("vfat", "fat", "msdos")
SKIPPED = "Bootloader step: skipped (--no-bootloader)."  # the plan's line when the restore will not run it


@dataclass(frozen=True)
class PlannedChain:
    chain: Chain | None  # None: no GRUB on the image's ESPs (a Windows or data disk, or no ESP)
    secure_boot: secureboot.SecureBoot  # how this machine booted

    def describe(self) -> str:
        """The plan's line about the bootloader step ("" when there is no GRUB to speak of)."""
        if self.chain is None:
            return ""
        line = f"Bootloader step installs: {self.chain}."
        if self.chain is Chain.UNSIGNED and self.secure_boot is secureboot.SecureBoot.ON:
            line += (" This machine has Secure Boot on: the restored system will not start here until Secure Boot is "
                     "turned off (the fallback loader is still written).")
        return line


def listing(text: str) -> dict[str, set[str]]:
    """`mdir -/ -b ::/EFI` output (one path a line, "::/EFI/debian/shimx64.efi") -> {"EFI/debian": {names}}."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        path = line.strip().removeprefix("::").strip("/")
        if not path:
            continue
        directory, _, name = path.rpartition("/")
        out.setdefault(directory, set()).add(name.lower())
    return out


def _scratch_copy(repo: Repository, part, dest: str) -> None:
    """The partition's stored windows written at their offsets into a sparse file of the partition's size."""
    space = address_spaces_of(part)[0]
    reader = SpaceReader(repo, space, WindowCache(repo, capacity=2))
    with open(dest, "wb") as f:
        f.truncate(space.size)
        for ref in space.stream.chunks:
            f.seek(ref.window * CHUNK_SIZE)
            f.write(reader.read(ref.window * CHUNK_SIZE, CHUNK_SIZE))


def esp_listing(repo: Repository, part) -> dict[str, set[str]]:
    with tempfile.TemporaryDirectory(prefix="lifeboat-esp-") as tmp:
        scratch = os.path.join(tmp, "esp.img")
        _scratch_copy(repo, part, scratch)
        proc = run(["mdir", "-/", "-b", "-i", scratch, "::/EFI"], env={"MTOOLS_SKIP_CHECK": "1"}, check=False)
    return listing(proc.stdout)


def planned_chain(repo: Repository, manifest: ImageManifest) -> PlannedChain:
    """The chain the bootloader step will install for this image (read from its ESPs), never raising: a plan
    is not stopped by an ESP that cannot be read (it says nothing then)."""
    chain = None
    for part in manifest.partitions:
        if part.fstype not in FAT_TYPES or part.stream is None or not address_spaces_of(part):
            continue
        try:
            found = esp_chain(esp_listing(repo, part))
        except (LifeboatError, OSError, ValueError):  # an unreadable ESP: the plan says nothing about it
            continue
        if found is Chain.SHIM:
            chain = found
            break
        chain = chain or found
    return PlannedChain(chain, secureboot.state())

