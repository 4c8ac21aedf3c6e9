"""Code version recorded in every result: package version plus git commit if known."""

from __future__ import annotations

import functools
import hashlib
import subprocess
from importlib import metadata
from pathlib import Path

PACKAGE = "compaction-sweep"


def package_version() -> str:
    """Installed version of the ``compaction-sweep`` distribution."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _git(*args: str, cwd: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


@functools.cache
def code_version() -> str:
    """``<version>`` or ``<version>+g<commit>[-dirty]`` when running from a git checkout."""
    version = package_version()
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return version
    commit = _git("rev-parse", "--short=12", "HEAD", cwd=root)
    if not commit:
        return f"{version}+uncommitted"
    dirty = _git("status", "--porcelain", "--untracked-files=no", cwd=root)
    return f"{version}+g{commit}" + ("-dirty" if dirty else "")


def cell_hash(config_yaml: str) -> str:
    """Content hash of one sweep cell: sha256 of its resolved config and the code version.

    ``config_yaml`` is the cell's task config resolved to YAML (no ``hydra`` node, so no
    run or sweep directories). A result whose hash matches was computed from the same
    inputs by the same code and is not recomputed when a sweep is run again.
    """
    digest = hashlib.sha256()
    digest.update(config_yaml.encode())
    digest.update(b"\0code_version=")
    digest.update(code_version().encode())
    return digest.hexdigest()
