"""The portfolio hash covers every security field that changes what the planner may do (issue 8
item 4): a change of min/max target or of an allow flag gives a new hash, so a plan cached for
the old state is never served the same day."""

from trader.data.v1 import data_pb2

from services.portfolio.hashing import portfolio_hash
from services.portfolio.server import universe_entry
from services.portfolio.valuation import Holding

HOLDINGS = [Holding("XOM.US", 3, 80.0, "USD")]


def hash_of(**fields) -> str:
    security = data_pb2.Security(symbol="XOM.US", allow_buy=True, allow_sell=True, country="United States",
                                 industry="Oil & Gas", **fields)
    return portfolio_hash(HOLDINGS, {"EUR": 1000.0}, [universe_entry(security)])


def test_targets_absent_stay_absent_not_zero():
    entry = universe_entry(data_pb2.Security(symbol="XOM.US"))
    assert (entry.min_target, entry.max_target) == (None, None)
    assert hash_of() != hash_of(min_portfolio_target=0) != hash_of(max_portfolio_target=0)


def test_every_target_and_allow_flag_changes_the_hash():
    variants = [hash_of(), hash_of(max_portfolio_target=5), hash_of(max_portfolio_target=6),
                hash_of(min_portfolio_target=5), hash_of(min_portfolio_target=5, max_portfolio_target=5)]
    assert len(set(variants)) == len(variants)
    security = data_pb2.Security(symbol="XOM.US", allow_buy=False, allow_sell=True, country="United States",
                                 industry="Oil & Gas")
    assert portfolio_hash(HOLDINGS, {"EUR": 1000.0}, [universe_entry(security)]) != hash_of()
    assert hash_of(max_portfolio_target=5) == hash_of(max_portfolio_target=5)
