"""Expected annual returns per security (planner.md section 3 "Expected return" and "Cost
haircut"). Pure.

    total return TRc = CAGR (5 years, else 10) + dividend yield
    score factor sf  = total_score / 0.5      (a missing score is neutral 0.5: sf = 1; <= 0: 0)
    base             = 0.7 TRc + 0.3 target sf  (bull 0.8 / 0.2; bear the default weights x 0.75)
    mu               = clamp(base (1 + fwd), -0.10, 0.30) - min(0.02, cost of a typical trade)

The original also multiplied by a per-security priority multiplier and added a pending dividend
reinvestment bonus; this build has neither (multiplier 1, bonus 0). An unknown dividend yield
adds nothing: the CAGR alone is the total return (the reply says so). The forward-looking term
`fwd` needs the VIX, the yield-curve slope and the market P/E; each missing input counts 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.planner import defaults

NEUTRAL_SCORE = 0.5


@dataclass(frozen=True)
class MarketOutlook:
    """The forward-looking inputs; None where no source provides them (the bundled data has none)."""

    vix: float | None = None
    curve_slope: float | None = None   # long minus short government yield, as a fraction (0.01 = 1 point)
    market_pe: float | None = None

    @property
    def known(self) -> bool:
        return any(value is not None for value in (self.vix, self.curve_slope, self.market_pe))


def score_factor(total_score: float | None) -> float:
    """total_score / 0.5: 1 for a missing (neutral) score, 0 for a score at or below 0."""
    score = NEUTRAL_SCORE if total_score is None else total_score
    return max(0.0, score) / NEUTRAL_SCORE


def forward_adjustment(outlook: MarketOutlook) -> float:
    """VIX + curve + market P/E terms, clamped to +-0.2; each term 0 without its input or inside
    its neutral band."""
    vix, slope, pe = outlook.vix, outlook.curve_slope, outlook.market_pe
    total = 0.0
    if vix is not None:
        if vix >= 30:
            total -= 0.1 * min(1.0, (vix - 30) / 20)
        elif vix <= 15:
            total += 0.05 * (1 - vix / 15)
    if slope is not None:
        if slope <= -0.01:
            total -= 0.15 * min(1.0, abs(slope) / 0.02)
        elif slope >= 0.01:
            total += 0.045 * min(1.0, (slope - 0.01) / 0.02)
    if pe is not None:
        if pe >= 26:
            total -= 0.1 * min(1.0, (pe - 26) / 13)
        elif pe <= 18:
            total += 0.05 * (1 - (pe - 18) / 4)
    return max(-0.2, min(0.2, total))


def regime_base(total_return: float, factor: float, regime: str,
                target_return: float = defaults.TARGET_ANNUAL_RETURN) -> float:
    """0.7 TRc + 0.3 target sf; bull 0.8 / 0.2; bear the default weights times 0.75."""
    history, score = (0.8, 0.2) if regime == "bull" else (0.7, 0.3)
    base = history * total_return + score * target_return * factor
    return base * 0.75 if regime == "bear" else base


def expected_return(cagr: float | None, dividend_yield: float | None, total_score: float | None, regime: str,
                    outlook: MarketOutlook = MarketOutlook(),
                    target_return: float = defaults.TARGET_ANNUAL_RETURN) -> float | None:
    """mu before the cost haircut, clamped to [-0.10, 0.30]; None without a CAGR (the original
    leaves such a security out)."""
    if cagr is None:
        return None
    base = regime_base(cagr + (dividend_yield or 0.0), score_factor(total_score), regime, target_return)
    low, high = defaults.EXPECTED_RETURN_RANGE
    return max(low, min(high, base * (1 + forward_adjustment(outlook))))


def cost_haircut(held_value_base: float, portfolio_value_base: float,
                 fixed: float = defaults.COMMISSION_FIXED_BASE, rate: float = defaults.COMMISSION_RATE) -> float:
    """min(0.02, commission / V) for the trade V a change of weight would take: the minimum
    economical trade fixed / (0.01 - rate) for a new position, else min(5% of the portfolio,
    half the position)."""
    if held_value_base > 0:
        trade = min(defaults.NEW_POSITION_TRADE_SHARE * portfolio_value_base,
                    defaults.HELD_POSITION_TRADE_SHARE * held_value_base)
    else:
        trade = fixed / (0.01 - rate) if rate < 0.01 else 0.0
    if trade <= 0:
        return 0.01  # the original's default when no trade size can be estimated
    return min(defaults.MAX_COST_HAIRCUT, (fixed + rate * trade) / trade)
