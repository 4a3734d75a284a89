"""The one Timestamp converter: an invalid or out-of-range Timestamp is INVALID_ARGUMENT naming
the field (issue 9: `ApplyBrokerState.synced_at` with nanos -1 gave INTERNAL ValueError)."""

from datetime import UTC, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from services.common import clock
from services.common.errors import InvalidArgument
from services.common.timestamps import from_timestamp, to_timestamp


def test_round_trip():
    moment = datetime(2018, 1, 2, 22, 0, 0, 123456, tzinfo=UTC)
    assert from_timestamp(to_timestamp(moment), "synced_at") == moment


@pytest.mark.parametrize(("seconds", "nanos"), [
    (0, -1),                      # nanos below 0
    (0, 1_000_000_000),           # nanos above 999,999,999
    (253402300800, 0),            # 10000-01-01: beyond the Timestamp range
    (-62135596801, 0),            # before 0001-01-01
    (2**63 - 1, 0), (-2**63, 0),
    (-62135596800, 0),            # 0001-01-01: a valid Timestamp, outside the supported range
    (4102444800, 0),              # 2100-01-01
])
def test_invalid_or_out_of_range_timestamps_name_the_field(seconds, nanos):
    with pytest.raises(InvalidArgument) as caught:
        from_timestamp(Timestamp(seconds=seconds, nanos=nanos), "synced_at")
    assert caught.value.field == "synced_at"


@given(st.integers(-2**63, 2**63 - 1), st.integers(-2**31, 2**31 - 1))
def test_any_timestamp_converts_or_is_refused(seconds, nanos):
    try:
        value = from_timestamp(Timestamp(seconds=seconds, nanos=nanos), "at")
    except InvalidArgument as exc:
        assert exc.field == "at"
        return
    assert clock.EARLIEST <= value < clock.LATEST
