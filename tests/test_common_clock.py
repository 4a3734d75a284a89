"""The as-of clock: read from x-trader-as-of per call, propagated to outgoing calls."""

from datetime import UTC, datetime, timedelta

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common import clock
from services.common.client import open_channel
from services.common.errors import InvalidArgument
from tests.helpers import TOKEN, call_raw, make_config, raw_methods, serving


def test_parse_accepts_offsets_and_treats_naive_as_utc():
    assert clock.parse_as_of("2020-03-16T15:00:00-04:00") == datetime(2020, 3, 16, 19, tzinfo=UTC)
    assert clock.parse_as_of("2020-03-16T19:00:00") == datetime(2020, 3, 16, 19, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["", "yesterday", "2020-13-01T00:00:00", "2020-02-30"])
def test_parse_rejects_garbage_naming_the_header(bad):
    with pytest.raises(InvalidArgument) as caught:
        clock.parse_as_of(bad)
    assert caught.value.field == clock.METADATA_KEY


@given(st.datetimes(timezones=st.just(UTC), min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1)))
def test_format_parse_round_trip(moment):
    assert clock.parse_as_of(clock.format_as_of(moment)) == moment


def test_now_falls_back_to_wall_clock_and_use_as_of_overrides():
    assert clock.as_of() is None
    before = datetime.now(UTC)
    assert before - timedelta(seconds=1) <= clock.now() <= datetime.now(UTC) + timedelta(seconds=1)
    moment = datetime(2019, 5, 1, 22, tzinfo=UTC)
    with clock.use_as_of(moment):
        assert clock.now() == moment
    assert clock.as_of() is None


def test_naive_as_of_refused_when_formatting():
    with pytest.raises(ValueError):
        clock.format_as_of(datetime(2020, 1, 1))


@pytest.fixture
def two_servers():
    """Server B answers its "now"; server A asks B through the client factory and relays it."""
    config_b = make_config("data")
    config_a = make_config("portfolio")

    def b_now(request, context):
        return clock.now().isoformat().encode()

    def a_relay(request, context):
        with open_channel(config_b.listen_address, TOKEN, 5) as channel:
            return call_raw(channel, "/trader.data.v1.MarketData/GetNow")

    with serving(config_b, raw_methods("trader.data.v1.MarketData", {"GetNow": b_now})), \
            serving(config_a, raw_methods("trader.portfolio.v1.Portfolio", {"GetRelayedNow": a_relay})):
        with grpc.insecure_channel(config_a.listen_address) as channel:
            yield channel


def test_as_of_is_read_and_propagated(two_servers):
    metadata = [("authorization", f"Bearer {TOKEN}"), (clock.METADATA_KEY, "2001-09-10T22:00:00+00:00")]
    relayed = call_raw(two_servers, "/trader.portfolio.v1.Portfolio/GetRelayedNow", metadata=metadata)
    assert datetime.fromisoformat(relayed.decode()) == datetime(2001, 9, 10, 22, tzinfo=UTC)


def test_without_as_of_downstream_uses_wall_clock(two_servers):
    relayed = call_raw(two_servers, "/trader.portfolio.v1.Portfolio/GetRelayedNow",
                       metadata=[("authorization", f"Bearer {TOKEN}")])
    assert abs(datetime.fromisoformat(relayed.decode()) - datetime.now(UTC)) < timedelta(seconds=10)


def test_malformed_as_of_is_invalid_argument(two_servers):
    with pytest.raises(grpc.RpcError) as caught:
        call_raw(two_servers, "/trader.portfolio.v1.Portfolio/GetRelayedNow",
                 metadata=[("authorization", f"Bearer {TOKEN}"), (clock.METADATA_KEY, "soon")])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert clock.METADATA_KEY in caught.value.details()
