"""Planner defaults, in one place (decisions.md rule 20). Values are the original's
(planner.md sections 3-4, trading-portfolio-jobs.md section 9) unless noted."""

COMMISSION_FIXED_BASE = 2.00   # EUR per trade (the broker's real fee)
COMMISSION_RATE = 0.002        # 0.2% of the trade value
# The smallest trade whose fixed fee stays under 1%: 2 / (0.01 - 0.002) = 250 EUR.
MIN_TRADE_BASE = COMMISSION_FIXED_BASE / (0.01 - COMMISSION_RATE)
MIN_CASH_RESERVE_BASE = 500.0  # cash the plan never spends
MAX_STEPS = 5                  # at most this many buy steps per plan
LOOKBACK_BARS = 365            # daily closes the optimiser sees (covariance window of the original)
MIN_HISTORY_BARS = 60          # a security with fewer closes is left out of the optimisation
MAX_WEIGHT = 0.20              # optimiser upper bound per security
WEIGHT_CUTOFF = 0.005          # weights below this are dropped
