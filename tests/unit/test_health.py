"""The SMART parser on real smartctl output (see tests/unit/smartctl/README.md for where each came from).
Loop devices, which every other test uses, have no SMART: they must read as UNKNOWN, not as healthy."""

import json
from pathlib import Path

from lifeboat.health import DiskHealth, HealthStatus, parse_smartctl, read_health

DATA = Path(__file__).parent / "smartctl"


def parsed(name: str) -> DiskHealth:
    return parse_smartctl(json.loads((DATA / name).read_text()))


def test_failing_ata_disk():
    h = parsed("ata-failing.json")
    assert h.status is HealthStatus.FAILING and h.needs_rescue
    assert (h.reallocated_sectors, h.pending_sectors, h.uncorrectable_sectors) == (1975, 8, 0)
    assert h.describe() == "SMART: FAILING (1975 reallocated sectors, 8 pending sectors)"


def test_nvme_with_media_errors_passes_but_needs_rescue():
    h = parsed("nvme-media-errors.json")
    assert h.status is HealthStatus.WARNING and h.needs_rescue
    assert (h.media_errors, h.percentage_used, h.critical_warning) == (7, 3, 0)
    assert h.describe() == "SMART passed, but 7 media errors, 3% used"


def test_healthy_ata_disk():
    h = parsed("ata-passed.json")
    assert h.status is HealthStatus.PASSED and not h.needs_rescue and h.describe() == "SMART passed"


def test_disks_without_smart_are_unknown():
    for name in ("loop-device.json", "virtio-disk.json"):
        h = parsed(name)
        assert h.status is HealthStatus.UNKNOWN and not h.needs_rescue
        assert "Unable to detect device type" in h.reason
    assert read_health("/dev/loop0").describe() == "health unknown (loop devices have no SMART)"


def test_nvme_critical_warning_is_failing():
    data = json.loads((DATA / "nvme-media-errors.json").read_text())
    data["nvme_smart_health_information_log"]["critical_warning"] = 4  # reliability degraded
    assert parse_smartctl(data).status is HealthStatus.FAILING
