"""Disk health from SMART (smartmontools' `smartctl --json`).

A dying disk is the one a technician most needs to image, and the last one to restore onto. `read_health`
asks smartctl for the overall verdict and the counters that predict lost data: reallocated, pending and
offline-uncorrectable sectors (ATA), media errors, critical warnings and wear (NVMe). Loop devices and
virtio disks have no SMART; they get UNKNOWN with the reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import StrEnum

from lifeboat.errors import LifeboatError
from lifeboat.run import missing_tools, run

SMARTCTL_DISK_FAILING = 0x08  # exit status bit: "SMART status check returned DISK FAILING"
_ATA_REALLOCATED, _ATA_PENDING, _ATA_UNCORRECTABLE = 5, 197, 198


class HealthStatus(StrEnum):
    PASSED = "passed"
    WARNING = "warning"  # SMART passes, but sectors are pending/reallocated or media errors were logged
    FAILING = "failing"  # SMART's own verdict, or an NVMe critical warning
    UNKNOWN = "unknown"  # no SMART (loop, virtio, some USB bridges), or smartctl missing


@dataclass(frozen=True)
class DiskHealth:
    status: HealthStatus
    reallocated_sectors: int | None = None
    pending_sectors: int | None = None
    uncorrectable_sectors: int | None = None
    media_errors: int | None = None  # NVMe
    percentage_used: int | None = None  # NVMe wear
    critical_warning: int | None = None  # NVMe bit field, 0 when none
    reason: str = ""  # why UNKNOWN

    @property
    def needs_rescue(self) -> bool:
        """Capture this disk with --rescue: it is failing, or already has sectors it cannot read."""
        return self.status in (HealthStatus.FAILING, HealthStatus.WARNING)

    def describe(self) -> str:
        if self.status is HealthStatus.UNKNOWN:
            return f"health unknown ({self.reason})" if self.reason else "health unknown"
        counters = [(self.reallocated_sectors, "reallocated"), (self.pending_sectors, "pending"),
                    (self.uncorrectable_sectors, "uncorrectable")]
        parts = [f"{n} {what} sectors" for n, what in counters if n]
        if self.media_errors:
            parts.append(f"{self.media_errors} media errors")
        if self.critical_warning:
            parts.append(f"critical warning 0x{self.critical_warning:02x}")
        if self.percentage_used is not None:
            parts.append(f"{self.percentage_used}% used")
        detail = ", ".join(parts)
        if self.status is HealthStatus.FAILING:
            return "SMART: FAILING" + (f" ({detail})" if detail else "")
        if self.status is HealthStatus.WARNING:
            return f"SMART passed, but {detail}"
        return "SMART passed" + (f" ({detail})" if detail else "")

    def to_json(self) -> dict:
        return {"status": str(self.status), "reallocated_sectors": self.reallocated_sectors,
                "pending_sectors": self.pending_sectors, "uncorrectable_sectors": self.uncorrectable_sectors,
                "media_errors": self.media_errors, "percentage_used": self.percentage_used,
                "critical_warning": self.critical_warning, "reason": self.reason, "summary": self.describe()}


def parse_smartctl(data: dict) -> DiskHealth:
    """DiskHealth from smartctl's JSON (any of -H, -A, -a, -x)."""
    smartctl = data.get("smartctl") or {}
    verdict = data.get("smart_status")
    if not isinstance(verdict, dict) or "passed" not in verdict:
        errors = [m.get("string", "") for m in smartctl.get("messages", ()) if m.get("severity") == "error"]
        return DiskHealth(HealthStatus.UNKNOWN, reason=errors[0] if errors else "the disk reports no SMART status")
    attrs = {a.get("id"): a for a in (data.get("ata_smart_attributes") or {}).get("table", ())}
    nvme = data.get("nvme_smart_health_information_log") or {}
    health = DiskHealth(
        HealthStatus.PASSED,
        reallocated_sectors=_raw(attrs.get(_ATA_REALLOCATED)),
        pending_sectors=_raw(attrs.get(_ATA_PENDING)),
        uncorrectable_sectors=_raw(attrs.get(_ATA_UNCORRECTABLE)),
        media_errors=nvme.get("media_errors"),
        percentage_used=nvme.get("percentage_used"),
        critical_warning=nvme.get("critical_warning"),
    )
    failing = verdict["passed"] is False or bool(smartctl.get("exit_status", 0) & SMARTCTL_DISK_FAILING) \
        or bool(health.critical_warning)
    damaged = any(n for n in (health.pending_sectors, health.uncorrectable_sectors, health.media_errors,
                              health.reallocated_sectors))
    status = HealthStatus.FAILING if failing else HealthStatus.WARNING if damaged else HealthStatus.PASSED
    return DiskHealth(status, health.reallocated_sectors, health.pending_sectors, health.uncorrectable_sectors,
                      health.media_errors, health.percentage_used, health.critical_warning)


def _raw(attr: dict | None) -> int | None:
    if not attr:
        return None
    value = (attr.get("raw") or {}).get("value")
    return value & 0xFFFFFFFF if isinstance(value, int) else None  # the low 32 bits are the count


def read_health(path: str) -> DiskHealth:
    """Ask smartctl about the disk at `path`. Never raises: a disk without SMART is UNKNOWN."""
    name = os.path.basename(os.path.realpath(path))
    if name.startswith(("loop", "ram", "zram", "dm-", "md", "sr")):
        return DiskHealth(HealthStatus.UNKNOWN, reason=f"{name[:4].rstrip('-')} devices have no SMART")
    if missing_tools(["smartctl"]):
        return DiskHealth(HealthStatus.UNKNOWN, reason="smartctl is not installed (Debian package smartmontools)")
    try:
        proc = run(["smartctl", "--json", "-H", "-A", path], check=False, timeout=30)
        return parse_smartctl(json.loads(proc.stdout))
    except (LifeboatError, ValueError) as exc:
        return DiskHealth(HealthStatus.UNKNOWN, reason=f"smartctl: {exc}")
