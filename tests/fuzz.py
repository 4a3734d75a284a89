"""Requests generated from the proto descriptors, for fuzzing every RPC of the six services.

`request_strategy(method)` builds a hypothesis strategy for a method's request message from its
descriptor: every field may be missing; strings come from a pool of meaningful values (symbols,
dates, instants, currencies, exchanges, CSV) mixed with huge strings, emoji and random text;
numbers include 0, -1, the type's limits, NaN and infinities; enums include unknown values;
google.protobuf.Timestamp includes invalid ones (nanos -1, seconds beyond year 9999).
`as_of_strategy` gives odd `x-trader-as-of` headers. `State` reads what the services store, to
show that a refused write changed nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import grpc
from google.protobuf import descriptor as pb_descriptor
from google.protobuf import message_factory
from google.protobuf.message import Message
from hypothesis import strategies as st
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.display.v1 import display_pb2, display_pb2_grpc
from trader.gateway.v1 import gateway_pb2
from trader.planner.v1 import planner_pb2
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common.client import is_read

FieldDescriptor = pb_descriptor.FieldDescriptor

# service key (as in SERVICES) -> generated module
MODULES = {"data": data_pb2, "portfolio": portfolio_pb2, "planner": planner_pb2, "trading": trading_pb2,
           "display": display_pb2, "gateway": gateway_pb2}

# What a generated request may get back: an answer or a precise refusal. INTERNAL, UNKNOWN,
# DATA_LOSS (our bugs), UNAVAILABLE (nothing is down here) and RESOURCE_EXHAUSTED (a status that
# did not fit its header) are failures.
ACCEPTED_CODES = frozenset({
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.OUT_OF_RANGE,
})


@dataclass(frozen=True)
class Method:
    service: str             # key in SERVICES: "data", ...
    full_service: str        # trader.data.v1.MarketData
    name: str                # GetQuotes
    descriptor: pb_descriptor.MethodDescriptor

    @property
    def path(self) -> str:
        return f"/{self.full_service}/{self.name}"

    @property
    def mutates(self) -> bool:
        return not is_read(self.path) and self.name not in ("Convert", "WatchDisplay")

    def __str__(self) -> str:
        return f"{self.full_service.rsplit('.', 1)[-1]}/{self.name}"


def all_methods() -> list[Method]:
    methods = []
    for service, module in MODULES.items():
        for svc in module.DESCRIPTOR.services_by_name.values():
            methods.extend(Method(service, svc.full_name, m.name, m) for m in svc.methods)
    return methods


def message_class(descriptor: pb_descriptor.Descriptor):
    return message_factory.GetMessageClass(descriptor)


# --- values ---

SYMBOLS = ["AAPL.US", "KO.US", "XOM.US", "SP500.IDX", "NOPE.US", "aapl.us", "AAPL"]
DAYS = ["2018-01-02", "2019-06-03", "1990-01-02", "0001-01-01", "9999-12-31", "1899-12-31", "1900-01-01",
        "2099-12-31", "2100-01-01", "1799-12-31", "1800-01-01", "2199-12-31", "2200-01-01", "2020-02-30",
        "2020-1-1", "20200101"]
INSTANTS = ["2018-01-03T15:00:00Z", "2018-01-03T15:00:00", "0001-01-01T00:00:00+23:59",
            "9999-12-31T23:59:59.999999-23:59", "0001-01-01T00:00:00Z", "1900-01-01T00:00:00Z",
            "2099-12-31T23:59:59+00:00", "2018-01-03T15:00:00+14:00"]
CURRENCIES = ["EUR", "USD", "CHF", "GBP", "eur", "XXX", "EURO"]
EXCHANGES = ["XNYS", "XNAS", "XETR", "XHKG", "XLON", "ASEX", "XSHG", "NOPE", "xnys"]
CSV_HEADER = "Date,Open,High,Low,Close,Adj Close,Volume\n"
CSVS = [
    CSV_HEADER + "2018-01-03,1,2,0.5,1.5,1.5,100\n",
    CSV_HEADER + "0001-01-01,1,2,0.5,1.5,1.5,100\n",
    CSV_HEADER + "9999-12-31,1,2,0.5,1.5,1.5,100\n",
    CSV_HEADER + "1800-01-01,1,2,0.5,1.5,1.5,100\n2199-12-31,1,2,0.5,1.5,1.5,100\n",
    CSV_HEADER + "2018-01-03,nan,inf,-1,1e308,0,-5\n",
    CSV_HEADER + "2018-01-03,1,2,0.5,1.5\n2018-01-03,1,2,0.5,1.5\n",
    "Date,Close\n2018-01-03,1\n",
    CSV_HEADER + "\n".join(f"2017-{m:02d}-{d:02d},1,2,0.5,1.5,1.5,1" for m in range(1, 13) for d in range(1, 29)),
]
ODD = ["", " ", "a", "\x00", "-1", "NaN", "core", "😀", "😀" * 2500, "x" * 20_000, "'; DROP TABLE orders; --",
       "\u202e\u0000\ufeff", "A" * 129]
ISINS = ["US0378331005", "US0378331006", "us0378331005", "GRS003003035"]
STRINGS = st.one_of(
    st.sampled_from(SYMBOLS + DAYS + INSTANTS + CURRENCIES + EXCHANGES + CSVS + ODD),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=24),
)
# Fields whose name says what they hold get such values three times in four, so that requests
# also get past the first checks into the use cases.
HINTS = {"symbol": SYMBOLS, "symbols": SYMBOLS, "csv": CSVS, "exchange": EXCHANGES, "isin": ISINS,
         "start": DAYS, "end": DAYS, "before": DAYS, "as_of": DAYS + INSTANTS}


def string_strategy(field: FieldDescriptor):
    hint = HINTS.get(field.name) or (CURRENCIES if "currency" in field.name else None)
    if hint is None:
        return STRINGS
    hinted = st.sampled_from(hint)
    return st.one_of(hinted, hinted, hinted, STRINGS)

FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 100.0, 1e-9, 5e-324, 1e9, 1e12, 1e308, -1e308,
                     math.nan, math.inf, -math.inf]),
    st.floats(allow_nan=True, allow_infinity=True),
)

_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_SINT32: (-2**31, 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-2**31, 2**31 - 1), FieldDescriptor.TYPE_INT64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-2**63, 2**63 - 1), FieldDescriptor.TYPE_SFIXED64: (-2**63, 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def integers(low: int, high: int):
    edges = [v for v in (0, 1, -1, 2, 7, 100, 255, 256, 1000, 2000, 3600, low, high, low + 1, high - 1)
             if low <= v <= high]
    return st.one_of(st.sampled_from(edges), st.integers(low, high))


# A short positive TTL would make a message expire (on the wall clock) during the run, which a
# before/after comparison would take for a change.
TTL_SECONDS = st.sampled_from([0, -1, 3600, 7 * 24 * 3600, 7 * 24 * 3600 + 1, 2**31 - 1, -2**31])

# Timestamp limits: 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
TIMESTAMP_SECONDS = st.one_of(
    st.sampled_from([0, -1, 1514934000, 1514934000 + 86400 * 365, -62135596800, -62135596801, 253402300799,
                     253402300800, -2208988800, 4102444800, 2**63 - 1, -2**63]),
    st.integers(-2**63, 2**63 - 1),
)
TIMESTAMP_NANOS = st.sampled_from([0, 1, -1, 999_999_999, 1_000_000_000, 2**31 - 1, -2**31])


def timestamp_strategy(descriptor: pb_descriptor.Descriptor):
    cls = message_class(descriptor)
    return st.builds(lambda s, n: cls(seconds=s, nanos=n), TIMESTAMP_SECONDS, TIMESTAMP_NANOS)


def scalar_strategy(field: FieldDescriptor):
    if field.name == "ttl_seconds":
        return TTL_SECONDS
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return string_strategy(field)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if kind in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return FLOATS
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.sampled_from(known + [max(known) + 1, 99, -1, 2**31 - 1])
    return integers(*_INT_RANGES[kind])


def field_strategy(field: FieldDescriptor, depth: int):
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field, value_field = field.message_type.fields_by_name["key"], field.message_type.fields_by_name["value"]
        return st.dictionaries(scalar_strategy(key_field), value_strategy(value_field, depth), max_size=3)
    single = value_strategy(field, depth)
    if field.is_repeated:
        return st.lists(single, max_size=4)
    return single


def value_strategy(field: FieldDescriptor, depth: int):
    if field.message_type is None:
        return scalar_strategy(field)
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return timestamp_strategy(field.message_type)
    return message_strategy(field.message_type, depth + 1)


def message_strategy(descriptor: pb_descriptor.Descriptor, depth: int = 0):
    """Messages of `descriptor`'s type: each field set or left out, nested up to three levels."""
    cls = message_class(descriptor)
    if depth > 3:
        return st.just(cls())
    optional = {f.name: field_strategy(f, depth) for f in descriptor.fields}

    def build(values: dict):
        message = cls()
        for name, value in values.items():
            if isinstance(value, dict):  # a map field
                for key, item in value.items():
                    if isinstance(item, Message):
                        getattr(message, name)[key].CopyFrom(item)
                    else:
                        getattr(message, name)[key] = item
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, Message):
                        getattr(message, name).add().CopyFrom(item)
                    else:
                        getattr(message, name).append(item)
            elif isinstance(value, Message):
                getattr(message, name).CopyFrom(value)
            else:
                setattr(message, name, value)
        return message

    return st.fixed_dictionaries({}, optional=optional).map(build)


def request_strategy(method: Method):
    return message_strategy(method.descriptor.input_type)


def call_strategy(methods: list[Method]):
    """(method, request) pairs over all `methods`: a sequence of them walks through states that
    one method at a time never reaches (huge balances, then a plan; a deactivated security, then
    an order; ...)."""
    return st.sampled_from(methods).flatmap(lambda m: st.tuples(st.just(m), request_strategy(m)))


# --- the x-trader-as-of header ---

AS_OF_VALUES = [None, "2018-01-02T22:00:00Z", "2018-01-03T15:00:00+00:00", "2020-03-16T22:00:00Z",
                "2022-12-28T22:00:00Z", "0001-01-01T00:00:00+23:59", "9999-12-31T23:59:59.999999-23:59",
                "0001-01-01T00:00:00Z", "1900-01-01T00:00:00Z", "2099-12-31T23:59:59.999999Z",
                "1989-12-31T22:00:00Z", "2018-01-02", "soon", "", "2018-01-02T22:00:00+25:00"]


def _iso(moment, offset_minutes: int) -> str:
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    return moment.isoformat() + f"{sign}{hours:02d}:{minutes:02d}"


as_of_strategy = st.one_of(
    st.sampled_from(AS_OF_VALUES),
    st.builds(_iso, st.datetimes(), st.integers(-(23 * 60 + 59), 23 * 60 + 59)),
)


# --- stored state, for "a refused write changes nothing" ---

STATE_AS_OF = [("x-trader-as-of", "2018-01-10T22:00:00+00:00")]


class State:
    """What the services store, read through their read RPCs. `orders=False` leaves out the
    orders: a rule's refusal of an order is recorded on it (REJECTED) by design."""

    def __init__(self, channels: dict[str, grpc.Channel], metadata: list[tuple[str, str]]):
        self._metadata = metadata + STATE_AS_OF
        self._reads = {
            "securities": (data_pb2_grpc.MarketDataStub(channels["data"]).ListSecurities,
                           data_pb2.ListSecuritiesRequest(include_inactive=True, include_indices=True)),
            "quotes": (data_pb2_grpc.MarketDataStub(channels["data"]).GetQuotes, data_pb2.GetQuotesRequest()),
            "fx": (data_pb2_grpc.MarketDataStub(channels["data"]).GetFxRates, data_pb2.GetFxRatesRequest()),
            "portfolio": (portfolio_pb2_grpc.PortfolioStub(channels["portfolio"]).GetPortfolio,
                          portfolio_pb2.GetPortfolioRequest()),
            "cash_flows": (portfolio_pb2_grpc.PortfolioStub(channels["portfolio"]).ListCashFlows,
                           portfolio_pb2.ListCashFlowsRequest(limit=1000)),
            "snapshots": (portfolio_pb2_grpc.PortfolioStub(channels["portfolio"]).ListSnapshots,
                          portfolio_pb2.ListSnapshotsRequest(limit=1000)),
            "orders": (trading_pb2_grpc.TradingStub(channels["trading"]).ListOrders,
                       trading_pb2.ListOrdersRequest(limit=1000)),
            "trades": (trading_pb2_grpc.TradingStub(channels["trading"]).ListTrades,
                       trading_pb2.ListTradesRequest(limit=1000)),
            "settings": (trading_pb2_grpc.TradingStub(channels["trading"]).GetSettings,
                         trading_pb2.GetSettingsRequest()),
            "display": (display_pb2_grpc.DisplayStub(channels["display"]).GetDisplayState,
                        display_pb2.GetDisplayStateRequest()),
        }

    def read(self, orders: bool = True) -> dict[str, object]:
        state = {}
        for name, (call, request) in self._reads.items():
            if name == "orders" and not orders:
                continue
            try:
                state[name] = call(request, metadata=self._metadata, timeout=30)
            except grpc.RpcError as exc:
                state[name] = (exc.code(), exc.details())
        if not isinstance(state.get("securities"), tuple):
            # a label of the data server's run and table revisions (a restart changes it), not stored state
            state["securities"].ClearField("revision")
        return state
