"""Scoring on the bundled history through the running services (issue 13, "done when"): every
sample security is scored with neutral fundamentals (the sample has none), and imported
fundamentals change the fundamentals-based groups of that security only."""

from __future__ import annotations

import pytest
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.planner.v1 import planner_pb2, planner_pb2_grpc

from tests.helpers import TOKEN

AUTH = [("authorization", f"Bearer {TOKEN}"), ("x-trader-as-of", "2018-01-02T22:00:00+00:00")]


def test_scoring_the_bundled_history_then_with_imported_fundamentals(running_suite):
    planner = planner_pb2_grpc.PlannerStub(running_suite.channel("planner"))
    data = data_pb2_grpc.MarketDataStub(running_suite.channel("data"))
    sample = planner.ScoreSecurities(planner_pb2.ScoreSecuritiesRequest(), metadata=AUTH, timeout=120).scores
    assert len(sample) == 20 and all(s.scored and s.inputs_as_of == "2018-01-02" for s in sample)
    for item in sample:  # no fundamentals: each part that needs them is neutral, never 0
        assert item.fundamentals_as_of == ""
        assert item.groups["dividends"].score == 0.5 and item.groups["opinion"].score == 0.5
        assert item.groups["fundamentals"].components["financial_strength"] == 0.5
        assert 0 < item.total < 1
    assert len({round(s.total, 3) for s in sample}) > 5  # the prices still tell them apart
    facts = data.GetFundamentals(data_pb2.GetFundamentalsRequest(symbols=["KO.US"]), metadata=AUTH).fundamentals
    assert [f.name for f, _ in facts[0].ListFields()] == ["symbol"]

    data.ImportFundamentals(data_pb2.ImportFundamentalsRequest(content=(
        "symbol,date,trailing_pe,forward_pe,profit_margin,debt_to_equity,current_ratio,dividend_yield,"
        "payout_ratio,five_year_avg_dividend_yield,recommendation_key,target_mean_price\n"
        "KO.US,2017-12-01,25.4,22.1,0.23,1.67,1.13,0.032,0.73,0.031,buy,49.5\n")), metadata=AUTH)
    after = {s.symbol: s for s in planner.ScoreSecurities(planner_pb2.ScoreSecuritiesRequest(
        symbols=["KO.US", "PG.US"]), metadata=AUTH, timeout=60).scores}
    before = {s.symbol: s for s in sample}
    ko = after["KO.US"]
    assert ko.fundamentals_as_of == "2017-12-01" and set(ko.recomputed) == {"fundamentals", "opportunity",
                                                                             "dividends", "opinion"}
    assert ko.groups["dividends"].components["yield"] == pytest.approx(0.72)
    assert ko.groups["opinion"].components["recommendation"] == 0.8
    assert ko.groups["long_term"] == before["KO.US"].groups["long_term"]
    assert list(after["PG.US"].recomputed) == [] and after["PG.US"].total == before["PG.US"].total
