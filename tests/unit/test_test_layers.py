"""scripts/test-layers: the closing table of `make test` and its exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "test-layers"


def layers(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def junit(path: Path, tests: int, failures: int = 0, errors: int = 0, skipped: int = 0) -> None:
    path.write_text(
        f'<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="{tests}" failures="{failures}" '
        f'errors="{errors}" skipped="{skipped}"/></testsuites>'
    )


def test_all_layers_passing_exit_0_with_a_closing_count(tmp_path):
    assert layers("run", str(tmp_path), "unit", "--", "true").returncode == 0
    junit(tmp_path / "unit.xml", tests=5, skipped=1)
    (tmp_path / "iso.log").write_text("build-iso: lifeboat.iso is up to date (400 MB)\n")
    assert layers("run", str(tmp_path), "iso", "--", "true").returncode == 0
    out = layers("summary", str(tmp_path), "unit", "iso")
    assert out.returncode == 0, out.stdout
    assert "is up to date" in out.stdout
    assert out.stdout.splitlines()[-1] == "total: 5 passed, 0 failed, 1 skipped"


def test_failed_empty_and_missing_layers_fail_the_run(tmp_path):
    assert layers("run", str(tmp_path), "unit", "--", "false").returncode == 1
    junit(tmp_path / "unit.xml", tests=3, failures=1, errors=1)
    assert layers("run", str(tmp_path), "integration", "--", sys.executable, "-c", "raise SystemExit(5)"
                  ).returncode == 5
    junit(tmp_path / "integration.xml", tests=0)
    out = layers("summary", str(tmp_path), "unit", "integration", "vm")
    assert out.returncode == 1, out.stdout
    assert "no tests ran (pytest exit 5)" in out.stdout
    assert "did not run" in out.stdout
    assert "FAILED layers: unit, integration, vm" in out.stdout
    # 1 passed; 2 failed in unit, plus one each for the empty and the missing layer
    assert out.stdout.splitlines()[-1] == "total: 1 passed, 4 failed, 0 skipped"


def test_a_pytest_crash_without_failed_tests_still_fails(tmp_path):
    layers("run", str(tmp_path), "vm", "--", sys.executable, "-c", "raise SystemExit(3)")
    junit(tmp_path / "vm.xml", tests=2)
    out = layers("summary", str(tmp_path), "vm")
    assert out.returncode == 1 and "exit 3" in out.stdout, out.stdout
