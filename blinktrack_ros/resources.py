"""Find the package's shared files (weights/, config/, launch/) in every install layout."""

from __future__ import annotations

import os
from pathlib import Path
import sys

PACKAGE = "blinktrack_ros"


def share_dirs() -> list[Path]:
    """Candidate share directories, most specific first.

    1. $BLINKTRACK_SHARE; 2. the ament index (colcon install: <prefix>/share/blinktrack_ros);
    3. the source tree (editable install or running from a checkout); 4. pip's data_files
    (<sys.prefix>/share/blinktrack_ros).
    """
    dirs: list[Path] = []
    if os.environ.get("BLINKTRACK_SHARE"):
        dirs.append(Path(os.environ["BLINKTRACK_SHARE"]))
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        if prefix:
            dirs.append(Path(prefix) / "share" / PACKAGE)
    dirs.append(Path(__file__).resolve().parent.parent)
    dirs.append(Path(sys.prefix) / "share" / PACKAGE)
    return dirs


def find_share_file(relative: str) -> Path:
    """Return the first existing <share>/<relative>; FileNotFoundError lists where it looked."""
    tried = []
    for base in share_dirs():
        candidate = base / relative
        if candidate.exists():
            return candidate
        tried.append(str(candidate))
    raise FileNotFoundError(f"{relative} not found; looked in: " + ", ".join(tried))
