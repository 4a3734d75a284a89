"""The cash reserve the targets leave aside (planner.md section 4, step 5). Pure."""

from __future__ import annotations

from services.planner import defaults

REGIMES = tuple(defaults.REGIME_RESERVE)  # bull, bear, sideways


def regime_reserve(portfolio_value_base: float, regime: str,
                   minimum_base: float = defaults.MIN_CASH_RESERVE_BASE) -> float:
    """max(value x share, minimum): 2% in a bull market, 5% in a bear market, 3% sideways; an
    unknown regime counts as sideways. Base currency."""
    share = defaults.REGIME_RESERVE.get(regime, defaults.REGIME_RESERVE["sideways"])
    return max(portfolio_value_base * share, minimum_base)
