"""The benchmark lines on a tiny hand-made universe (two securities, three months): every value,
fill and fee below was worked out by hand from the rules in gateway/benchmarks.py, and the
figures (TWR, XIRR) are checked against a plain computation of their definitions."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from gateway.benchmarks import Market, Session, equal_weight_dca, index_dca
from gateway.report import figures_of

USD = 1.25  # units of USD per EUR, at every instant
A, B = "A.US", "B.DE"  # A trades in USD, B in EUR
DAYS = [date(2024, 1, 2), date(2024, 1, 3), date(2024, 2, 1), date(2024, 2, 2), date(2024, 3, 1), date(2024, 3, 4)]
DEPOSITS = {date(2024, 1, 2): 1000.0, date(2024, 2, 1): 1000.0, date(2024, 3, 1): 1000.0}
CLOSES = {
    A: {date(2023, 12, 29): 100, date(2024, 1, 2): 100, date(2024, 1, 3): 110, date(2024, 2, 1): 120,
        date(2024, 2, 2): 90, date(2024, 3, 1): 92, date(2024, 3, 4): 105},
    B: {date(2023, 12, 29): 50, date(2024, 1, 2): 50, date(2024, 1, 3): 52, date(2024, 2, 1): 48,
        date(2024, 2, 2): 50, date(2024, 3, 1): 51, date(2024, 3, 4): 55},
}


def cycle(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 20, 30, tzinfo=UTC)


CLOSE_OUT = datetime(2024, 3, 5, 14, 30, tzinfo=UTC)


def fee(value: float, currency: str) -> float:
    """The paper broker's: 2 EUR (in the order's currency) + 0.2%."""
    return (2 * USD if currency == "USD" else 2.0) + 0.002 * value


MARKET = Market([Session(d, cycle(d), DEPOSITS.get(d, 0.0)) for d in DAYS], CLOSE_OUT,
                {s: {d: float(c) for d, c in closes.items()} for s, closes in CLOSES.items()},
                {A: "USD", B: "EUR"}, {moment: {"USD": USD} for moment in [cycle(d) for d in DAYS] + [CLOSE_OUT]},
                "EUR", fee)


def values(line) -> list[tuple[date, float, float]]:
    return [(p.day, round(p.value, 4), p.flow) for p in line.points]


def test_monthly_dca_into_one_security_by_hand():
    line = index_dca(MARKET, A)
    # 01-02: 11 units ordered (limit 105; (1250 - 2.5) / (105 * 1.002) = 11.86), filled at the 100 close:
    #        1,100 USD + 4.70 USD fee = 883.76 EUR, booked at 01-03's cycle.
    # 02-01: 12 ordered at limit 115.50 (110 + 5%): the 120 close lies beyond it, it expires.
    # 03-01: 27 ordered at limit 94.50, filled at 92: 2,484 USD + 7.468 USD = 1,993.1744 EUR.
    assert values(line) == [
        (date(2024, 1, 2), 1000.0, 1000.0),     # the deposit, nothing held yet
        (date(2024, 1, 3), 996.24, 0.0),        # 116.24 cash + 11 x 100 / 1.25
        (date(2024, 2, 1), 2084.24, 1000.0),    # 1,116.24 + 11 x 110 / 1.25
        (date(2024, 2, 2), 2172.24, 0.0),       # 1,116.24 + 11 x 120 / 1.25
        (date(2024, 3, 1), 2908.24, 1000.0),    # 2,116.24 + 11 x 90 / 1.25
        (date(2024, 3, 4), 3315.0656, 0.0),     # close-out: 123.0656 + 38 x 105 / 1.25
    ]
    assert (line.trades, line.expired) == (2, 1)
    assert line.fees_base == pytest.approx(4.7 / USD + 7.468 / USD)
    assert line.traded_base == pytest.approx(1100 / USD + 2484 / USD)


def test_monthly_dca_into_an_equal_weight_basket_by_hand():
    line = equal_weight_dca(MARKET, [A, B])
    # 01-02: target 500 each: A 5 (limit 105), B 9 (limit 52.50); both fill at the 01-02 closes.
    # 02-01: target 1,026.15: A 6 at limit 115.50 expires (close 120), B 10 fills at 48.
    # 03-01: target 1,485.67: A 14 fills at 92, B 10 fills at 51.
    assert values(line) == [
        (date(2024, 1, 2), 1000.0, 1000.0),
        (date(2024, 1, 3), 994.3, 0.0),         # 144.30 + 5 x 100 / 1.25 + 9 x 50
        (date(2024, 2, 1), 2052.3, 1000.0),     # 1,144.30 + 5 x 110 / 1.25 + 9 x 52
        (date(2024, 2, 2), 2053.34, 0.0),       # 661.34 + 5 x 120 / 1.25 + 19 x 48
        (date(2024, 3, 1), 2971.34, 1000.0),    # 1,661.34 + 5 x 90 / 1.25 + 19 x 50
        (date(2024, 3, 4), 3304.8592, 0.0),     # close-out: 113.8592 + 19 x 105 / 1.25 + 29 x 55
    ]
    assert (line.trades, line.expired) == (5, 1)
    assert line.fees_base == pytest.approx(3.5 / USD + 2.9 + 2.96 + 5.076 / USD + 3.02)


def test_the_figures_follow_their_definitions():
    line = index_dca(MARKET, A)
    figures = figures_of(line)
    by_hand = [996.24 / 1000, (2084.24 - 1000) / 996.24, 2172.24 / 2084.24, (2908.24 - 1000) / 2172.24,
               3315.0656 / 2908.24]
    growth = 1.0
    for ratio in by_hand:
        growth *= ratio
    assert figures["time_weighted_return"] == pytest.approx(growth - 1, rel=1e-9)
    assert (figures["final_value"], figures["net_deposits"], figures["trades"]) == (pytest.approx(3315.0656), 3000.0,
                                                                                    2)
    rate = figures["money_weighted_return"]  # XIRR: the deposits in, the final value out, per 365 days
    present = sum(-amount / (1 + rate) ** ((day - DAYS[0]).days / 365) for day, amount in DEPOSITS.items())
    assert present + 3315.0656 / (1 + rate) ** ((DAYS[-1] - DAYS[0]).days / 365) == pytest.approx(0, abs=1e-6)
    days = (DAYS[-1] - DAYS[0]).days
    assert figures["cagr"] == pytest.approx(growth ** (365.25 / days) - 1, rel=1e-9)
    assert figures["max_drawdown"] == pytest.approx(by_hand[3] - 1, rel=1e-9)  # the one fall after a peak


def test_both_benchmarks_get_the_same_deposits():
    lines = [index_dca(MARKET, A), equal_weight_dca(MARKET, [A, B])]
    assert [[p.flow for p in line.points] for line in lines] == [[1000.0, 0, 1000.0, 0, 1000.0, 0]] * 2
