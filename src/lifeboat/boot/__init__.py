"""Bootloader detection and reinstall: `bootfix(disk)` and the restore's bootloader step `after_restore(disk)`.

Each step reports done / not-needed / failed with the reason (StepOutcome); nothing is reported done
without checking it on the disk afterwards.
"""

from lifeboat.boot.fix import after_restore, bootfix, exit_code
from lifeboat.boot.model import StepOutcome

__all__ = ["after_restore", "bootfix", "exit_code", "StepOutcome"]
