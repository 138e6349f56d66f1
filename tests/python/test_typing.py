"""The package type-checks under mypy --strict (the configuration is in pyproject.toml), so the type
hints users rely on (py.typed) are checked, not decorative."""

from __future__ import annotations

import subprocess
import sys

import pytest

from naming import REPO


@pytest.mark.timeout(300)
def test_package_passes_mypy_strict() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                           str(REPO / "python" / "shmcomm")], capture_output=True, text=True, timeout=280,
                          cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Success: no issues found" in proc.stdout
