"""The as-of clock: read from x-trader-as-of per call, propagated to outgoing calls."""

from datetime import UTC, date, datetime, timedelta

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common import clock
from services.common.client import open_channel
from services.common.errors import InvalidArgument
from services.common.validate import parse_day
from services.data.adapters.csv_import import parse_yahoo_csv
from tests.helpers import TOKEN, call_raw, make_config, raw_methods, serving


def test_parse_accepts_offsets_and_treats_naive_as_utc():
    assert clock.parse_as_of("2020-03-16T15:00:00-04:00") == datetime(2020, 3, 16, 19, tzinfo=UTC)
    assert clock.parse_as_of("2020-03-16T19:00:00") == datetime(2020, 3, 16, 19, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["", "yesterday", "2020-13-01T00:00:00", "2020-02-30"])
def test_parse_rejects_garbage_naming_the_header(bad):
    with pytest.raises(InvalidArgument) as caught:
        clock.parse_as_of(bad)
    assert caught.value.field == clock.METADATA_KEY


@given(st.datetimes(timezones=st.just(UTC), min_value=clock.EARLIEST.replace(tzinfo=None),
                    max_value=clock.LATEST.replace(tzinfo=None) - timedelta(microseconds=1)))
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


# --- the supported range (issue 9: out-of-range headers gave INTERNAL OverflowError) ---

@pytest.mark.parametrize("extreme", ["0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59.999999-23:59",
                                     "0001-01-01T00:00:00Z", "1899-12-31T23:59:59Z", "2100-01-01T00:00:00Z"])
def test_out_of_range_as_of_is_refused_with_the_range(extreme):
    with pytest.raises(InvalidArgument) as caught:
        clock.parse_as_of(extreme)
    assert caught.value.field == clock.METADATA_KEY
    assert clock.SUPPORTED_RANGE in caught.value.message


def test_range_edges_and_other_fields():
    assert clock.parse_as_of("1900-01-01T00:00:00Z") == clock.EARLIEST
    assert clock.parse_as_of("2099-12-31T23:59:59.999999Z") < clock.LATEST
    with pytest.raises(InvalidArgument) as caught:
        clock.parse_as_of("0001-01-01T00:00:00Z", field="as_of")
    assert caught.value.field == "as_of"


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.integers(-(24 * 60 - 1), 24 * 60 - 1))
def test_any_instant_is_accepted_in_range_or_refused_naming_the_header(moment, offset_minutes):
    text = moment.isoformat() + ("-" if offset_minutes < 0 else "+") + \
        f"{abs(offset_minutes) // 60:02d}:{abs(offset_minutes) % 60:02d}"
    try:
        parsed = clock.parse_as_of(text)
    except InvalidArgument as exc:
        assert exc.field == clock.METADATA_KEY
        return
    assert clock.EARLIEST <= parsed < clock.LATEST and parsed.tzinfo == UTC


def test_out_of_range_as_of_is_invalid_argument_over_grpc(two_servers):
    for extreme in ("0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59.999999-23:59", "0001-01-01T00:00:00Z"):
        with pytest.raises(grpc.RpcError) as caught:
            call_raw(two_servers, "/trader.portfolio.v1.Portfolio/GetRelayedNow",
                     metadata=[("authorization", f"Bearer {TOKEN}"), (clock.METADATA_KEY, extreme)])
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details().startswith(f"{clock.METADATA_KEY}: ")
        assert clock.SUPPORTED_RANGE in caught.value.details()


def test_dates_have_a_century_more_room_than_instants():
    assert parse_day("start", "1850-06-30") == date(1850, 6, 30)
    assert parse_day("end", "2199-12-31") == clock.LAST_DAY
    for bad in ("1799-12-31", "2200-01-01", "0001-01-01", "9999-12-31"):
        with pytest.raises(InvalidArgument) as caught:
            parse_day("start", bad)
        assert caught.value.field == "start" and clock.SUPPORTED_DAYS in caught.value.message


@pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31"])
def test_imported_bars_share_the_date_range(day):
    with pytest.raises(InvalidArgument) as caught:
        parse_yahoo_csv(f"Date,Open,High,Low,Close\n2018-01-02,1,2,0.5,1.5\n{day},1,2,0.5,1.5\n")
    assert caught.value.field == "csv" and "line 3" in caught.value.message
