"""Hierarchical risk parity weights (planner.md section 3 "HRP"; Lopez de Prado 2016, PyPortfolioOpt
`HRPOpt`). Pure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # at run time pandas comes with the returns (bench/footprint.py: it is heavy)
    import pandas as pd


def hrp_weights(returns: pd.DataFrame) -> dict[str, float] | None:
    """Weights summing to 1 from daily returns (single linkage, HRPOpt's default), or None with
    fewer than 2 securities or when the clustering cannot be built (a series without variance)."""
    if returns.shape[1] < 2 or len(returns) < 2 or not np.isfinite(returns.corr().to_numpy()).all():
        return None
    from pypfopt import HRPOpt  # noqa: PLC0415 - heavy: loaded on first use, not at start (bench/footprint.py)

    try:
        optimiser = HRPOpt(returns)
        optimiser.optimize()
    except (ValueError, ArithmeticError, np.linalg.LinAlgError):
        return None
    return dict(optimiser.clean_weights(rounding=None))
