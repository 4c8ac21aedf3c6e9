"""Run ``python -m sweep`` in a subprocess, as a user would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def run_sweep(cwd: Path, *overrides: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sweep", *overrides],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
