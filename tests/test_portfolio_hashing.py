"""The allocations hash (planner.md section 6): stable under reordering, changed by any value that
matters, the original's empty value."""

from services.portfolio.allocations import hash_inputs
from services.portfolio.hashing import EMPTY_ALLOCATIONS_HASH, allocations_hash


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


