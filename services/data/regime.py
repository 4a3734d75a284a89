"""Market regime from the index's distance to its 200-day simple average (planner.md section 5)."""

from __future__ import annotations

import numpy as np

BULL, BEAR, SIDEWAYS = "bull", "bear", "sideways"
WINDOW = 200
THRESHOLD = 0.05


def market_regime(index_closes: np.ndarray) -> tuple[str, float | None]:
    """(regime, distance): bull at >= +5% above the 200-day average, bear at <= -5%, else
    sideways; sideways with no distance when fewer than 200 closes exist."""
    if len(index_closes) < WINDOW:
        return SIDEWAYS, None
    distance = float(index_closes[-1] / np.mean(index_closes[-WINDOW:]) - 1)
    if distance >= THRESHOLD:
        return BULL, distance
    if distance <= -THRESHOLD:
        return BEAR, distance
    return SIDEWAYS, distance
