"""The planner's conversions of its peers' replies (adapters/peers.py): a conversion kept is
reused only for a message whose bytes are those it was converted from."""

from __future__ import annotations

from trader.data.v1 import data_pb2

from services.planner.adapters.peers import _Converted, _fundamentals_view, _listings


def counted(convert):
    calls = []

    def wrapped(message):
        calls.append(message.SerializeToString())
        return convert(message)
    return wrapped, calls


def facts(symbol: str = "A.US", **fields) -> data_pb2.Fundamentals:
    message = data_pb2.Fundamentals(symbol=symbol, **{"trailing_pe": 15.0, "dividend_yield": 0.02, **fields})
    message.observed_on["trailing_pe"] = "2020-01-02"
    message.observed_on["dividend_yield"] = "2020-01-03"
    return message


def test_fundamentals_are_converted_again_when_a_value_or_an_observation_changes():
    convert, calls = counted(_fundamentals_view)
    fundamentals = _Converted(convert)
    first = fundamentals(facts())
    assert fundamentals(facts()) is first and len(calls) == 1
    changed = facts(dividend_yield=0.03)
    assert fundamentals(changed) == _fundamentals_view(changed) != first
    observed = facts(dividend_yield=0.03)
    observed.observed_on["dividend_yield"] = "2020-02-03"
    assert fundamentals(observed) == _fundamentals_view(observed)
    assert fundamentals(observed).key != fundamentals(changed).key and len(calls) == 4


def test_fundamentals_of_other_symbols_are_kept_apart():
    fundamentals = _Converted(_fundamentals_view)
    a, b = fundamentals(facts("A.US")), fundamentals(facts("B.US", trailing_pe=30.0))
    assert fundamentals(facts("A.US")) is a and fundamentals(facts("B.US", trailing_pe=30.0)) is b
    assert a.fundamentals.trailing_pe == 15.0 and b.fundamentals.trailing_pe == 30.0


def test_listings_are_converted_again_when_any_security_changes():
    def reply(allow_buy: bool) -> data_pb2.ListSecuritiesResponse:
        return data_pb2.ListSecuritiesResponse(securities=[
            data_pb2.Security(symbol="A.US", currency="USD", lot_size=1, allow_buy=True, allow_sell=True),
            data_pb2.Security(symbol="B.US", currency="USD", lot_size=1, allow_buy=allow_buy, allow_sell=True)])

    listings = _Converted(_listings)
    before = listings(reply(True))
    assert listings(reply(True)) is before and before[1].allow_buy
    after = listings(reply(False))
    assert after == _listings(reply(False)) and not after[1].allow_buy


def test_the_conversions_kept_are_bounded():
    fundamentals = _Converted(_fundamentals_view, capacity=3)
    for i in range(10):
        fundamentals(facts(f"S{i}.US"))
    assert len(fundamentals._kept) <= 3
