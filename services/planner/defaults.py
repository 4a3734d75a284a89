"""Planner defaults, in one place (decisions.md rule 20). Values are the original's
(planner.md sections 3-6, trading-portfolio-jobs.md section 9) unless noted."""

COMMISSION_FIXED_BASE = 2.00   # EUR per trade (the broker's real fee)
COMMISSION_RATE = 0.002        # 0.2% of the trade value
# The smallest trade whose fixed fee stays under 1%: 2 / (0.01 - 0.002) = 250 EUR.
MIN_TRADE_BASE = COMMISSION_FIXED_BASE / (0.01 - COMMISSION_RATE)
MIN_CASH_RESERVE_BASE = 500.0  # cash the plan never spends, whatever the regime
MAX_STEPS = 5                  # at most this many buy steps per plan (max_plan_depth)
LOOKBACK_BARS = 365            # daily closes the optimiser sees (covariance window of the original)
TARGETS_TTL_HOURS = 48         # optimiser targets are reused for the same state this long (the original's
                               # recommendation cache per portfolio hash, planner.md section 6)
MIN_HISTORY_BARS = 60          # a security with fewer closes is left out of the optimisation
MAX_WEIGHT = 0.20              # optimiser upper bound per security
WEIGHT_CUTOFF = 0.005          # weights below this are dropped

# Holding rules and scores the settings hash covers (planner.md section 6).
MAX_LOSS_THRESHOLD = -0.20
MIN_HOLD_DAYS = 90
SELL_COOLDOWN_DAYS = 180
MIN_SECURITY_SCORE = 0.5

# Optimiser (planner.md section 3).
OPTIMIZER_BLEND = 0.5              # weight of HRP in the blend; the rest is mean-variance
OPTIMIZER_TARGET_RETURN = 0.11     # efficient_return's target
TARGET_ANNUAL_RETURN = 0.11        # the return a neutral score stands for in the expected return
TARGET_VOLATILITY = 0.15           # efficient_risk's target
EXPECTED_RETURN_RANGE = (-0.10, 0.30)
MAX_COST_HAIRCUT = 0.02
NEW_POSITION_TRADE_SHARE = 0.05    # a rebalancing trade of a held position: at most 5% of the portfolio
HELD_POSITION_TRADE_SHARE = 0.50   # ... and at most half the position
GRADUAL_THRESHOLD = 0.30           # a move larger than this is taken halfway
GRADUAL_STEP = 0.50
CORRELATION_THRESHOLD = 0.80       # pairs reported at or above this |rho|
TOP_CORRELATIONS = 5

# Sector constraints (planner.md section 3): tolerance around a group's target and the caps.
COUNTRY_TOLERANCE = 0.10
MAX_COUNTRY_SHARE = 0.35
INDUSTRY_TOLERANCE = 0.15
INDUSTRY_CAPS = ((1, 0.70), (2, 0.50), (4, 0.40))  # (up to this many groups, cap); more: the last
MAX_INDUSTRY_SHARE = 0.30
SECTOR_MINIMUMS_LIMIT = 0.70       # country + industry minimums above this are scaled to ...
SECTOR_MINIMUMS_SCALED = 0.60      # ... this
ALL_MINIMUMS_LIMIT = 0.80          # security + sector minimums above this are scaled down
SECURITY_MINIMUMS_LIMIT = 0.70     # security minimums above this are scaled first
RELAXED_SECTOR_MINIMUMS = 0.50     # the second relaxation level keeps this share of the minimums

# Cash reserve by market regime (planner.md section 4), at least MIN_CASH_RESERVE_BASE.
REGIME_RESERVE = {"bull": 0.02, "bear": 0.05, "sideways": 0.03}
