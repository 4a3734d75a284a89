"""The settings and allocations hashes (planner.md section 6): stable under reordering, changed
by any value that matters, the original's empty value."""

from services.portfolio.allocations import hash_inputs
from services.portfolio.hashing import EMPTY_ALLOCATIONS_HASH, SETTINGS_KEYS, allocations_hash, settings_hash

SETTINGS = {"max_loss_threshold": -0.2, "max_plan_depth": 5, "min_cash_reserve": 500.0, "min_hold_days": 90,
            "min_security_score": 0.5, "optimizer_blend": 0.5, "optimizer_target_return": 0.11,
            "sell_cooldown_days": 180, "target_annual_return": 0.11, "transaction_cost_fixed": 2.0,
            "transaction_cost_percent": 0.002}


def test_allocations_hash_is_the_originals():
    assert allocations_hash({}) == EMPTY_ALLOCATIONS_HASH == "00000000"
    one = allocations_hash(hash_inputs({"US": 0.6, "EU": 0.4}, {"Technology": 0.3}))
    assert one == allocations_hash(hash_inputs({"EU": 0.4, "US": 0.6}, {"Technology": 0.3}))
    assert one == allocations_hash(hash_inputs({"EU": 0.40001, "US": 0.6}, {"Technology": 0.3}))  # 4 decimals
    assert one != allocations_hash(hash_inputs({"EU": 0.41, "US": 0.6}, {"Technology": 0.3}))
    assert one != allocations_hash(hash_inputs({"US": 0.6, "EU": 0.4}, {"Tech": 0.3}))
    # the same name as a country group and as an industry group are different keys
    assert allocations_hash(hash_inputs({"OTHER": 0.1}, {})) != allocations_hash(hash_inputs({}, {"OTHER": 0.1}))
    assert len(one) == 8 and int(one, 16) >= 0


def test_settings_hash_covers_the_eleven_keys_only():
    assert len(SETTINGS_KEYS) == 11
    base = settings_hash(SETTINGS)
    assert base == settings_hash(dict(reversed(list(SETTINGS.items()))))
    assert base == settings_hash({**SETTINGS, "unrelated": 1})
    for key in SETTINGS_KEYS:
        assert settings_hash({**SETTINGS, key: 7}) != base, key
    assert settings_hash({k: v for k, v in SETTINGS.items() if k != "min_cash_reserve"}) != base  # missing: "key:"
