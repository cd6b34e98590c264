"""How many requests the soak tests send: their full size times SOAK_SCALE.

``make test`` runs them small (the default share) so every run still kills a worker under
load and watches memory; ``make soak`` sets SOAK_SCALE=1, their full size.
"""

from __future__ import annotations

import os

SCALE_ENV = "SOAK_SCALE"
DEFAULT_SCALE = 0.2


def soak_scale() -> float:
    raw = os.environ.get(SCALE_ENV, "").strip()
    if not raw:
        return DEFAULT_SCALE
    try:
        scale = float(raw)
    except ValueError:
        raise ValueError(f"{SCALE_ENV}={raw!r} is not a number (1 is the full size)") from None
    if not 0 < scale <= 10:
        raise ValueError(f"{SCALE_ENV}={raw!r} is outside (0, 10] (1 is the full size)")
    return scale


def scaled(full: int, least: int = 1) -> int:
    """``full`` requests at the current scale, never fewer than ``least``."""
    return max(least, round(full * soak_scale()))
