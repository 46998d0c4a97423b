"""What a bootloader step reports, and what bootfix found on a disk."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from lifeboat.boot.probe import CrypttabEntry, FstabEntry, Volume
from lifeboat.devices import Partition
from lifeboat.events import LogLine, Outcome, ProgressSink, StepFinished, StepStarted, summarize

DONE, NOT_NEEDED, FAILED = Outcome.DONE, Outcome.NOT_NEEDED, Outcome.FAILED
NEEDS_PASSPHRASE = Outcome.NEEDS_PASSPHRASE  # a LUKS container left locked: no passphrase given (not a failure)


@dataclass(frozen=True)
class StepOutcome:
    step: str
    outcome: Outcome
    detail: str = ""

    def to_dict(self) -> dict:
        return asdict(self)

    def __str__(self) -> str:
        return f"{self.step}: {self.outcome}{' — ' + self.detail if self.detail else ''}"


def overall(outcomes: list[StepOutcome]) -> Outcome:
    """One word for a run of steps: failed if any failed (or none ran), not-needed if none was needed."""
    return summarize(o.outcome for o in outcomes)


@dataclass
class LinuxSystem:
    root: Partition | Volume  # a partition, an LVM logical volume (/dev/mapper/VG-LV) or an opened LUKS container
    name: str  # PRETTY_NAME from os-release, or the root's node
    efi_id: str  # directory under \EFI (Debian's grub-install --bootloader-id)
    fstab: list[FstabEntry] = field(default_factory=list)
    boot: Partition | Volume | None = None  # a separate /boot
    esp: Partition | None = None
    esp_mountpoint: str = "/boot/efi"
    bios: bool = False  # set up for BIOS (i386-pc)
    efi: bool = False  # set up for UEFI (x86_64-efi)
    why_not_bios: str = ""
    shim: str = ""  # why it boots through shim (boot.shim.shim_evidence), "" when it does not
    root_subvol: str = ""  # btrfs: the subvolume holding / ("@"); "" when / is the filesystem's default
    boot_subvol: str = ""  # btrfs: the subvolume a separate /boot is in
    crypttab: list[CrypttabEntry] = field(default_factory=list)  # its /etc/crypttab (names its LUKS mappings)

    @property
    def where(self) -> str:
        """The root as a person reads it: '/dev/sda3', or '/dev/sda3 (btrfs subvolume @)'."""
        return self.root.path + (f" (btrfs subvolume {self.root_subvol})" if self.root_subvol else "")

    @property
    def root_options(self) -> str | None:
        """Mount options that show this system's / (its btrfs subvolume), or None."""
        return f"subvol={self.root_subvol}" if self.root_subvol else None


@dataclass
class WindowsLoader:
    esp: Partition
    path: str = r"\EFI\Microsoft\Boot\bootmgfw.efi"


class Recorder:
    """Collects outcomes and mirrors them to the progress sink as StepStarted/StepFinished events."""

    def __init__(self, progress: ProgressSink):
        self.progress = progress
        self.outcomes: list[StepOutcome] = []

    def start(self, step: str, detail: str = "") -> None:
        self.progress(StepStarted(step, detail))

    def log(self, message: str, level: str = "info") -> None:
        self.progress(LogLine(message, level))

    def finish(self, step: str, outcome: Outcome, detail: str = "") -> StepOutcome:
        result = StepOutcome(step, outcome, detail)
        self.outcomes.append(result)
        self.progress(StepFinished(step, outcome, detail))
        return result
