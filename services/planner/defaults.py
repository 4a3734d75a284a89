"""Planner defaults, in one place (decisions.md rule 20): the settings come from the default
preset (services/planner/presets/default.toml, read by config.py); what stays here are the
constants of the original's formulas (planner.md sections 3-6, trading-portfolio-jobs.md
section 9), which no configuration changes."""

from services.planner.config import preset

DEFAULT_CONFIG = preset("default")

COMMISSION_FIXED_BASE = DEFAULT_CONFIG.planner.transaction_cost_fixed  # per trade (the broker's real fee)
COMMISSION_RATE = DEFAULT_CONFIG.planner.transaction_cost_percent       # of the trade value
# The smallest trade whose fixed fee stays under 1%: 2 / (0.01 - 0.002) = 250 EUR.
MIN_TRADE_BASE = COMMISSION_FIXED_BASE / (0.01 - COMMISSION_RATE)
MIN_CASH_RESERVE_BASE = DEFAULT_CONFIG.optimizer.min_cash_reserve  # cash never spent, whatever the regime
MAX_STEPS = DEFAULT_CONFIG.planner.max_depth  # steps of a plan (max_plan_depth)
MAX_PLAN_DEPTH = 10                           # the largest max_depth a configuration may set

LOOKBACK_BARS = 365            # daily closes the optimiser sees (covariance window of the original)
TARGETS_TTL_HOURS = 48         # optimiser targets are reused for the same state this long (the original's
                               # recommendation cache per portfolio hash, planner.md section 6)
MIN_HISTORY_BARS = 60          # a security with fewer closes is left out of the optimisation
MAX_WEIGHT = 0.20              # optimiser upper bound per security
WEIGHT_CUTOFF = 0.005          # weights below this are dropped

# Holding rules and scores the settings hash covers (planner.md section 6).
MAX_LOSS_THRESHOLD = DEFAULT_CONFIG.planner.max_loss_threshold
MIN_HOLD_DAYS = DEFAULT_CONFIG.planner.min_hold_days
SELL_COOLDOWN_DAYS = DEFAULT_CONFIG.planner.sell_cooldown_days
MIN_SECURITY_SCORE = DEFAULT_CONFIG.planner.min_security_score

# Optimiser (planner.md section 3).
OPTIMIZER_BLEND = DEFAULT_CONFIG.optimizer.blend                  # HRP's share; the rest is mean-variance
OPTIMIZER_TARGET_RETURN = DEFAULT_CONFIG.optimizer.target_return  # efficient_return's target
TARGET_ANNUAL_RETURN = DEFAULT_CONFIG.optimizer.target_annual_return  # the return a neutral score stands for
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
