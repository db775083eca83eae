"""Helpers shared by the configuration tests."""

from __future__ import annotations

import sys
from pathlib import Path

_SCRIPT = Path(sys.executable).with_name("sonic")
# The installed console script when there is one (what users run), else the same entry point.
SONIC: list[str] = (
    [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-c", "from pipelines.cli import main; main()"]
)
