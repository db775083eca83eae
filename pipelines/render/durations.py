"""Durations as the rendered formats want them (Go/Prometheus style ``90s``, ``5m``; whole seconds)."""

from __future__ import annotations

import math


def go_duration(seconds: float) -> str:
    """``90.0`` -> ``"90s"``, ``300.0`` -> ``"5m"``, ``0.25`` -> ``"250ms"`` (Prometheus and Go both parse these)."""
    if seconds > 0 and seconds == int(seconds):
        s = int(seconds)
        if s % 3600 == 0:
            return f"{s // 3600}h"
        if s % 60 == 0:
            return f"{s // 60}m"
        return f"{s}s"
    return f"{round(seconds * 1000)}ms"


def whole_seconds(seconds: float, minimum: int = 0) -> int:
    """Seconds rounded up (a timeout is never shortened), at least ``minimum``."""
    return max(minimum, math.ceil(seconds - 1e-9))
