"""gRPC servicer for trader.portfolio.v1.Portfolio: validates and translates proto <-> domain;
the use cases are in engine.py, bucket_book.py and allocation_book.py."""

from __future__ import annotations

import math
from datetime import date

from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc

from services.common import clock
from services.common.client import Clients
from services.common.config import CommonConfig
from services.common.db import Database
from services.common.errors import InvalidArgument
from services.common.maintenance import Maintenance
from services.common.maintenance_rpc import MaintenanceRpc
from services.common.timestamps import from_timestamp, to_timestamp
from services.common.validate import (
    MAX_QUANTITY,
    currency_code,
    finite_amount,
    non_negative_amount,
    parse_day,
    positive_amount,
    required_text,
)
from services.portfolio import buckets as bucket_rules
from services.portfolio import cash_flows, dividends, store
from services.portfolio.adapters.peers import Peers, universe_at
from services.portfolio.allocation_book import AllocationBook, AllocationState
from services.portfolio.bucket_book import BucketView
from services.portfolio.engine import BrokerState, CashFlowFilter, PerformanceReport, PortfolioEngine, PortfolioView
from services.portfolio.hashing import UniverseEntry
from services.portfolio.positions import FillRecord
from services.portfolio.valuation import Holding

_SIDES = {portfolio_pb2.BUY: "BUY", portfolio_pb2.SELL: "SELL"}
_STATUSES = {portfolio_pb2.RESEARCH: bucket_rules.RESEARCH, portfolio_pb2.ACCUMULATING: bucket_rules.ACCUMULATING,
             portfolio_pb2.ACTIVE: bucket_rules.ACTIVE, portfolio_pb2.HIBERNATING: bucket_rules.HIBERNATING,
             portfolio_pb2.PAUSED: bucket_rules.PAUSED, portfolio_pb2.RETIRED: bucket_rules.RETIRED}
_STATUS_ENUM = {v: k for k, v in _STATUSES.items()}
_TRANSITIONS = {portfolio_pb2.ACTIVATE: bucket_rules.ACTIVATE, portfolio_pb2.PAUSE: bucket_rules.PAUSE,
                portfolio_pb2.RESUME: bucket_rules.RESUME, portfolio_pb2.HIBERNATE: bucket_rules.HIBERNATE,
                portfolio_pb2.RETIRE: bucket_rules.RETIRE}
_GROUP_KINDS = {portfolio_pb2.COUNTRY: "country", portfolio_pb2.INDUSTRY: "industry"}


class PortfolioServicer(MaintenanceRpc, portfolio_pb2_grpc.PortfolioServicer):
    def __init__(self, config: CommonConfig, db: Database, clients: Clients, snapshot_retention_days: int = 0,
                 maintenance: Maintenance | None = None):
        self.use_maintenance(maintenance)
        self._config = config
        peers = Peers(clients)
        self._engine = PortfolioEngine(db, peers, config.base_currency, snapshot_retention_days, clock.wall_now())
        self._buckets = self._engine.buckets
        self._allocations = AllocationBook(db, peers)
        self._last_portfolio: tuple[PortfolioView, portfolio_pb2.GetPortfolioResponse] | None = None
        self._last_allocations: tuple[AllocationState, portfolio_pb2.AllocationTargets] | None = None

    # --- the book ---

    def GetPortfolio(self, request, context):
        return self._portfolio_proto(self._engine.portfolio())

    def _portfolio_proto(self, view: PortfolioView) -> portfolio_pb2.GetPortfolioResponse:
        """A copy of the reply for `view`, converted once per view (the engine hands the same
        view to the snapshot and the planner while nothing it was computed from changed)."""
        last = self._last_portfolio
        if last is None or last[0] is not view:
            last = self._last_portfolio = (view, portfolio_to_proto(view))
        response = portfolio_pb2.GetPortfolioResponse()
        response.CopyFrom(last[1])
        return response

    def RecordDeposit(self, request, context):
        amount = positive_amount("amount", request.amount, maximum=1e9)
        currency = currency_code("currency", request.currency, default=self._config.base_currency)
        reference = required_text("reference", request.reference)
        return cash_flow_to_proto(self._engine.record_deposit(amount, currency, reference, clock.now()))

    def ListCashFlows(self, request, context):
        kinds = []
        for i, kind in enumerate(request.kinds):
            if kind not in cash_flows.KINDS:
                raise InvalidArgument(f"kinds[{i}]", f"unknown kind {kind!r}; one of {', '.join(cash_flows.KINDS)}")
            kinds.append(kind)
        currency = currency_code("currency", request.currency, default="") or None
        start, end = _range(request.start, request.end)
        rows, totals = self._engine.cash_flows(_limit(request.limit), CashFlowFilter(kinds, currency, start, end))
        response = portfolio_pb2.ListCashFlowsResponse(cash_flows=[cash_flow_to_proto(r) for r in rows])
        for kind, currency_, amount, amount_base, count in totals:
            total = response.totals.add(kind=kind, currency=currency_, amount=amount, count=count)
            if amount_base is not None:
                total.amount_base = amount_base
        return response

    def GetLedgerCursor(self, request, context):
        trade_id, movement_id = self._engine.ledger_cursor()
        return portfolio_pb2.LedgerCursor(trade_id=trade_id, cash_movement_id=movement_id)

    def ApplyBrokerState(self, request, context):
        state = broker_state_from_proto(request)
        result = self._engine.apply_broker_state(state, clock.now())
        return portfolio_pb2.ApplyBrokerStateResponse(
            changed=result.changed, portfolio_hash=result.portfolio_hash, fills_applied=result.fills_applied,
            cash_flows_applied=result.flows_applied,
            position_differences=[_position_difference(*d) for d in result.position_differences],
            cash_differences=[_cash_difference(*d) for d in result.cash_differences],
            ledger_cursor=portfolio_pb2.LedgerCursor(trade_id=result.cursor[0], cash_movement_id=result.cursor[1]))

    def ListFills(self, request, context):
        symbol = request.symbol.strip()
        start, end = _range(request.start, request.end)
        rows, totals = self._engine.fills(_limit(request.limit), symbol, request.bucket.strip(), start, end)
        response = portfolio_pb2.ListFillsResponse(fills=[fill_to_proto(r) for r in rows])
        for currency, amount, amount_base in totals:
            total = response.realized_pnl.add(currency=currency, amount=amount)
            if amount_base is not None:
                total.amount_base = amount_base
        return response

    # --- snapshots, the breaker, performance ---

    def TakeSnapshot(self, request, context):
        with universe_at(_revision("universe_revision", request.universe_revision)):
            row, view = self._engine.take_snapshot(clock.now())
        snapshot = snapshot_to_proto(row)
        snapshot.portfolio.CopyFrom(self._portfolio_proto(view))
        return snapshot

    def ListSnapshots(self, request, context):
        before = parse_day("before", request.before)
        rows = self._engine.snapshots(before, _limit(request.limit))
        return portfolio_pb2.ListSnapshotsResponse(snapshots=[snapshot_to_proto(r) for r in rows])

    def GetDailyPnl(self, request, context):
        now = clock.now()
        as_of = parse_day("as_of", request.as_of) or now.date()
        if as_of > now.date():
            raise InvalidArgument("as_of", f"{as_of} is after today ({now.date()})")
        result = self._engine.daily_pnl(as_of, now)
        reply = portfolio_pb2.DailyPnl(armed=result.armed, baseline_total_base=result.baseline_total,
                                       current_total_base=result.current_total, external_flows_base=result.flows,
                                       baseline_date=result.baseline_date.isoformat() if result.baseline_date else "")
        if result.pnl is not None:
            reply.daily_pnl = result.pnl
        return reply

    def GetPerformance(self, request, context):
        start, end = _range(request.start, request.end)
        bucket = request.bucket.strip()
        return performance_to_proto(self._engine.performance(start, end, bucket))

    # --- dividends ---

    def ListDividends(self, request, context):
        if request.status and request.status not in dividends.STATUSES:
            raise InvalidArgument("status", f"unknown status {request.status!r}; "
                                            f"one of {', '.join(dividends.STATUSES)}")
        start, end = _range(request.start, request.end)
        rows, total = self._engine.dividends(_limit(request.limit), request.symbol.strip(), request.status, start, end)
        return portfolio_pb2.ListDividendsResponse(dividends=[dividend_to_proto(r) for r in rows], total_base=total)

    def PlanDividendReinvestment(self, request, context):
        plan = self._engine.plan_reinvestment(clock.now())
        return portfolio_pb2.DividendReinvestmentPlan(
            min_trade_base=dividends.MIN_TRADE_BASE, pooled_base=plan.pooled_base,
            pooled_dividend_ids=plan.pooled_ids, notes=plan.notes,
            buys=[portfolio_pb2.ReinvestmentBuy(symbol=b.symbol, client_order_id=b.client_order_id, quantity=b.quantity,
                                                price=b.price, currency=b.currency, amount_base=b.amount_base,
                                                dividend_ids=b.dividend_ids, dividend_yield=b.dividend_yield)
                  for b in plan.buys],
            bonuses=[_bonus(b) for b in plan.bonuses])

    def GetPendingDividendBonuses(self, request, context):
        symbols = [required_text(f"symbols[{i}]", s, 32) for i, s in enumerate(request.symbols)]
        return portfolio_pb2.GetPendingDividendBonusesResponse(
            bonuses=[_bonus(b) for b in self._engine.pending_bonuses(symbols)])

    # --- buckets ---

    def ListBuckets(self, request, context):
        views = self._buckets.views(request.include_retired, clock.now())
        settings = self._buckets.current_settings()
        return portfolio_pb2.ListBucketsResponse(buckets=[bucket_to_proto(v) for v in views],
                                                 settings=_settings(settings))

    def GetBucket(self, request, context):
        return bucket_to_proto(self._buckets.view(required_text("id", request.id, 32), clock.now()))

    def CreateBucket(self, request, context):
        bucket_id = required_text("id", request.id, 32)
        name = required_text("name", request.name, 100)
        status = _STATUSES.get(request.status, bucket_rules.RESEARCH) if request.status else bucket_rules.RESEARCH
        if request.status and request.status not in _STATUSES:
            raise InvalidArgument("status", f"unknown status {request.status}")
        low = _share("min_share", request.min_share) if request.HasField("min_share") else None
        high = _share("max_share", request.max_share) if request.HasField("max_share") else None
        return bucket_to_proto(self._buckets.create(bucket_id, name, status, low, high,
                                                    request.dividend_handling or "reinvest_same", clock.now()))

    def UpdateBucket(self, request, context):
        bucket_id = required_text("id", request.id, 32)
        changes: dict = {}
        if request.HasField("name"):
            changes["name"] = required_text("name", request.name, 100)
        for name in ("target_share", "min_share", "max_share"):
            if request.HasField(name):
                changes[name] = _share(name, getattr(request, name))
        if request.HasField("dividend_handling"):
            changes["dividend_handling"] = request.dividend_handling
        return bucket_to_proto(self._buckets.update(bucket_id, changes, clock.now()))

    def TransitionBucket(self, request, context):
        bucket_id = required_text("id", request.id, 32)
        action = _TRANSITIONS.get(request.transition)
        if action is None:
            raise InvalidArgument("transition", "one of ACTIVATE, PAUSE, RESUME, HIBERNATE, RETIRE")
        reason = request.reason.strip()[:300]
        return bucket_to_proto(self._buckets.transition(bucket_id, action, reason, clock.now()))

    def TransferBetweenBuckets(self, request, context):
        source = required_text("from_bucket", request.from_bucket, 32)
        destination = required_text("to_bucket", request.to_bucket, 32)
        if source == destination:
            raise InvalidArgument("to_bucket", "must differ from from_bucket")
        amount = positive_amount("amount", request.amount, maximum=1e9)
        currency = currency_code("currency", request.currency, default=self._config.base_currency)
        reference = required_text("reference", request.reference)
        src, dst, applied = self._buckets.transfer(source, destination, amount, currency, reference, clock.now())
        return portfolio_pb2.TransferBetweenBucketsResponse(from_bucket=bucket_to_proto(src),
                                                            to_bucket=bucket_to_proto(dst), applied=applied)

    def ListBucketTransactions(self, request, context):
        rows = self._buckets.transactions(request.bucket.strip(), _limit(request.limit))
        return portfolio_pb2.ListBucketTransactionsResponse(transactions=[
            portfolio_pb2.BucketTransaction(id=r.id, bucket=r.bucket, kind=r.kind, amount=r.amount, currency=r.currency,
                                            at=to_timestamp(r.at), description=r.description,
                                            cash_flow_id=r.cash_flow_id or 0) for r in rows])

    def UpdateBucketSettings(self, request, context):
        changes = {}
        for name in ("satellite_budget", "satellite_min", "satellite_max", "dampening"):
            if request.HasField(name):
                changes[name] = finite_amount(name, getattr(request, name))
        return _settings(self._buckets.update_settings(changes, clock.now()))

    def ReconcileBuckets(self, request, context):
        checks, alerted = self._buckets.reconcile(clock.now())
        return portfolio_pb2.ReconcileBucketsResponse(alerted=alerted, currencies=[
            portfolio_pb2.CurrencyReconciliation(currency=c.currency, virtual_total=c.virtual_total, broker=c.broker,
                                                 difference=c.difference, action=c.action) for c in checks])

    def RunBucketMaintenance(self, request, context):
        response = portfolio_pb2.RunBucketMaintenanceResponse()
        for m in self._buckets.maintain(clock.now()):
            item = response.buckets.add(bucket=m.bucket, status_before=_STATUS_ENUM[m.status_before],
                                        status_after=_STATUS_ENUM[m.status_after], note=m.note)
            if m.drawdown is not None:
                item.drawdown = m.drawdown
        return response

    def RunMetaAllocation(self, request, context):
        changes, budget, applied = self._buckets.meta_allocate(clock.now(), request.dry_run)
        response = portfolio_pb2.RunMetaAllocationResponse(budget=budget, applied=applied)
        for c in changes:
            item = response.changes.add(bucket=c.bucket, current_target=c.current, new_target=c.new, change=c.change)
            if c.score is not None:
                item.composite_score = c.score
        return response

    # --- allocation targets ---

    def GetAllocationTargets(self, request, context):
        state = self._allocations.state()
        last = self._last_allocations  # converted once per state (AllocationBook keeps it while unchanged)
        if last is None or last[0] is not state:
            last = self._last_allocations = (state, allocations_to_proto(state))
        response = portfolio_pb2.AllocationTargets()
        response.CopyFrom(last[1])
        return response

    def SetAllocationTargets(self, request, context):
        country = [(t.group, t.share) for t in request.country_targets]
        industry = [(t.group, t.share) for t in request.industry_targets]
        return allocations_to_proto(self._allocations.set_targets(country, industry))

    def SetAllocationGroups(self, request, context):
        kind = _GROUP_KINDS.get(request.kind)
        if kind is None:
            raise InvalidArgument("kind", "COUNTRY or INDUSTRY")
        for i, group in enumerate(request.groups):
            if group.HasField("target"):
                raise InvalidArgument(f"groups[{i}].target", "targets are set with SetAllocationTargets")
        return allocations_to_proto(self._allocations.set_groups(kind, [(g.name, list(g.members))
                                                                        for g in request.groups]))


# --- requests ---

def _limit(value: int) -> int:
    if value < 0:
        raise InvalidArgument("limit", "must not be negative")
    return min(value or 100, 1000)


def _range(start_text: str, end_text: str) -> tuple[date | None, date | None]:
    start, end = parse_day("start", start_text), parse_day("end", end_text)
    if start is not None and end is not None and start > end:
        raise InvalidArgument("start", f"{start} is after end {end}")
    return start, end


def _share(field: str, value: float) -> float:
    if not 0 <= value <= 1:  # also refuses NaN
        raise InvalidArgument(field, f"must be between 0 and 1, got {value!r}")
    return value


def _holdings(positions) -> list[Holding]:
    holdings, seen = [], set()
    for i, p in enumerate(positions):
        symbol = required_text(f"positions[{i}].symbol", p.symbol, 32)
        if symbol in seen:
            raise InvalidArgument(f"positions[{i}].symbol", f"{symbol} is listed twice")
        seen.add(symbol)
        if not 0 <= p.quantity <= MAX_QUANTITY:
            raise InvalidArgument(f"positions[{i}].quantity", f"must be between 0 and {MAX_QUANTITY}")
        cost = non_negative_amount(f"positions[{i}].average_cost", p.average_cost)
        currency = currency_code(f"positions[{i}].currency", p.currency)
        if p.quantity > 0:
            holdings.append(Holding(symbol, p.quantity, cost, currency))
    return sorted(holdings, key=lambda h: h.symbol)


def _fill(i: int, f) -> FillRecord:
    field = f"fills[{i}]"
    side = _SIDES.get(f.side)
    if side is None:
        raise InvalidArgument(f"{field}.side", "BUY or SELL")
    if not 0 < f.quantity <= MAX_QUANTITY:
        raise InvalidArgument(f"{field}.quantity", f"must be between 1 and {MAX_QUANTITY}")
    if not f.HasField("executed_at"):
        raise InvalidArgument(f"{field}.executed_at", "is required")
    return FillRecord(
        required_text(f"{field}.broker_trade_id", f.broker_trade_id, 64),
        required_text(f"{field}.symbol", f.symbol, 32),
        side, f.quantity, positive_amount(f"{field}.price", f.price), currency_code(f"{field}.currency", f.currency),
        non_negative_amount(f"{field}.commission", f.commission), from_timestamp(f.executed_at, f"{field}.executed_at"),
        _text(f"{field}.bucket", f.bucket, 32) or bucket_rules.CORE, _text(f"{field}.client_order_id",
                                                                           f.client_order_id, 64))


def _movement(i: int, m) -> cash_flows.Movement:
    field = f"cash_movements[{i}]"
    if not m.HasField("at"):
        raise InvalidArgument(f"{field}.at", "is required")
    amount = finite_amount(f"{field}.amount", m.amount)
    return cash_flows.Movement(
        required_text(f"{field}.broker_id", m.broker_id, 80), required_text(f"{field}.kind", m.kind, 40),
        amount, currency_code(f"{field}.currency", m.currency),
        from_timestamp(m.at, f"{field}.at"), m.description.strip()[:300], _text(f"{field}.symbol", m.symbol, 32),
        _text(f"{field}.reference", m.reference, 128))


def _text(field: str, value: str, max_length: int) -> str:
    value = value.strip()
    if len(value) > max_length:
        raise InvalidArgument(field, f"longer than {max_length} characters")
    return value


def broker_state_from_proto(request: portfolio_pb2.ApplyBrokerStateRequest) -> BrokerState:
    holdings = _holdings(request.positions)
    cash: dict[str, float] = {}
    for i, balance in enumerate(request.cash):
        currency = currency_code(f"cash[{i}].currency", balance.currency)
        if currency in cash:
            raise InvalidArgument(f"cash[{i}].currency", f"{currency} is listed twice")
        cash[currency] = finite_amount(f"cash[{i}].amount", balance.amount)
    synced_at = from_timestamp(request.synced_at, "synced_at") if request.HasField("synced_at") else clock.now()
    cursor = _cursor(request, "ledger_cursor")
    return BrokerState(holdings, cash, synced_at, [_fill(i, f) for i, f in enumerate(request.fills)],
                       [_movement(i, m) for i, m in enumerate(request.cash_movements)], cursor,
                       after=_cursor(request, "after"))


def _revision(field: str, text: str) -> str:
    """A revision handed forward (an opaque token of another service): at most 64 printable
    ASCII characters; "" when not given."""
    if len(text) > 64 or not (text.isascii() and text.isprintable()):
        raise InvalidArgument(field, "must be at most 64 printable ASCII characters, as the data service gives it")
    return text


def _cursor(request: portfolio_pb2.ApplyBrokerStateRequest, field: str) -> tuple[int, int] | None:
    """(trade id, cash movement id) of the LedgerCursor `field`; None when unset."""
    if not request.HasField(field):
        return None
    given = getattr(request, field)
    if given.trade_id < 0 or given.cash_movement_id < 0:
        raise InvalidArgument(field, "ids must not be negative")
    return given.trade_id, given.cash_movement_id


# --- replies ---

def universe_entry(security) -> UniverseEntry:
    """The hash inputs of one data.v1.Security: allow flags, min/max portfolio targets (absent
    stays None, never 0), country and industry."""
    return UniverseEntry(
        security.symbol, security.allow_buy, security.allow_sell, security.country, security.industry,
        security.min_portfolio_target if security.HasField("min_portfolio_target") else None,
        security.max_portfolio_target if security.HasField("max_portfolio_target") else None,
    )


def _position_difference(symbol: str, book: int, broker: int) -> portfolio_pb2.PositionDifference:
    return portfolio_pb2.PositionDifference(symbol=symbol, book_quantity=book, broker_quantity=broker)


def _cash_difference(currency: str, book: float, broker: float) -> portfolio_pb2.CashDifference:
    return portfolio_pb2.CashDifference(currency=currency, book_amount=book, broker_amount=broker)


def portfolio_to_proto(view: PortfolioView) -> portfolio_pb2.GetPortfolioResponse:
    response = portfolio_pb2.GetPortfolioResponse(
        base_currency=view.base_currency, positions_value_base=view.positions_value_base, cash_base=view.cash_base,
        total_value_base=view.total_value_base, portfolio_hash=view.portfolio_hash,
        position_differences=[_position_difference(*d) for d in view.position_differences],
        cash_differences=[_cash_difference(*d) for d in view.cash_differences],
        invested_base=view.invested_base, unrealized_pnl_base=view.unrealized_pnl_base)
    for p in view.positions:
        holding, history = p.valued.holding, p.history
        position = response.positions.add(
            symbol=holding.symbol, quantity=holding.quantity, average_cost=p.average_cost, currency=holding.currency,
            price=p.valued.price, price_date=p.valued.price_date, market_value=p.valued.market_value,
            market_value_base=p.valued.market_value_base, bucket=p.bucket, cost_basis=p.cost_basis,
            unrealized_pnl=p.unrealized_pnl, unrealized_pnl_base=p.unrealized_pnl_base,
            realized_pnl=history.realized_pnl if history else 0.0, book_quantity=p.book_quantity)
        for name in ("first_bought_at", "last_bought_at", "last_sold_at"):
            value = getattr(history, name) if history else None
            if value is not None:
                getattr(position, name).CopyFrom(to_timestamp(value))
    for currency, amount, amount_base in view.cash:
        response.cash.add(currency=currency, amount=amount, amount_base=amount_base)
    if view.synced_at is not None:
        response.broker_synced_at.CopyFrom(to_timestamp(view.synced_at))
    return response


def cash_flow_to_proto(row: store.CashFlowRow) -> portfolio_pb2.CashFlow:
    flow = portfolio_pb2.CashFlow(id=row.id, kind=row.kind, amount=row.amount, currency=row.currency,
                                  reference=row.reference or "", occurred_at=to_timestamp(row.occurred_at),
                                  broker_id=row.broker_id or "", source=row.source or "", symbol=row.symbol or "",
                                  description=row.description or "")
    if row.amount_base is not None:
        flow.amount_base = row.amount_base
    return flow


def fill_to_proto(row: store.FillRow) -> portfolio_pb2.Fill:
    fill = portfolio_pb2.Fill(broker_trade_id=row.broker_trade_id, client_order_id=row.client_order_id,
                              symbol=row.symbol, side=portfolio_pb2.Side.Value(row.side), quantity=row.quantity,
                              price=row.price, currency=row.currency, commission=row.commission,
                              executed_at=to_timestamp(row.executed_at), bucket=row.bucket)
    for name in ("realized_pnl", "cost_basis", "value_base"):
        if getattr(row, name) is not None:
            setattr(fill, name, getattr(row, name))
    return fill


def snapshot_to_proto(row: store.SnapshotRow) -> portfolio_pb2.Snapshot:
    snapshot = portfolio_pb2.Snapshot(
        date=row.date.isoformat(), positions_value_base=row.positions_value_base, cash_base=row.cash_base,
        total_value_base=row.total_value_base, base_currency=row.base_currency,
        country_shares=store.decode_shares(row.country_shares),
        industry_shares=store.decode_shares(row.industry_shares))
    for name in ("invested_base", "net_deposits_base", "unrealized_pnl_base", "position_count", "annual_turnover"):
        if getattr(row, name) is not None:
            setattr(snapshot, name, getattr(row, name))
    return snapshot


def _optional(message, source, names: tuple[str, ...]) -> None:
    """Set each named field that `source` (an object) has a value for; absent stays absent."""
    for name in names:
        value = getattr(source, name)
        if value is not None and not (isinstance(value, float) and math.isnan(value)):
            setattr(message, name, value)


def performance_to_proto(report: PerformanceReport) -> portfolio_pb2.Performance:
    reply = portfolio_pb2.Performance(
        start=report.start, end=report.end, bucket=report.bucket, base_currency=report.base_currency,
        days=report.days, fees_paid_base=report.fees_paid_base, dividends_received_base=report.dividends_received_base,
        net_deposits_base=report.net_deposits_base, start_value_base=report.start_value_base,
        end_value_base=report.end_value_base, notes=report.notes)
    _optional(reply, report, ("time_weighted_return", "money_weighted_return", "cagr", "volatility", "sharpe",
                              "sortino", "max_drawdown", "calmar", "turnover"))
    attribution = report.attribution
    for groups, target in ((attribution.country, reply.country_attribution),
                           (attribution.industry, reply.industry_attribution)):
        for group, contribution in sorted(groups.items(), key=lambda kv: -abs(kv[1])):
            annualized = attribution.annualized(contribution)
            target.add(group=group, contribution=contribution, annualized=annualized if annualized is not None else 0.0)
    trades = report.trades
    reply.trades.sells, reply.trades.wins, reply.trades.losses = trades.sells, trades.wins, trades.losses
    _optional(reply.trades, trades, ("win_rate", "profit_factor", "sharpe", "sortino", "max_drawdown", "calmar",
                                     "composite_score"))
    return reply


def dividend_to_proto(row: store.DividendRow) -> portfolio_pb2.Dividend:
    dividend = portfolio_pb2.Dividend(id=row.id, symbol=row.symbol, amount=row.amount, currency=row.currency,
                                      pay_date=row.pay_date.isoformat(), cash_flow_id=row.cash_flow_id,
                                      bucket=row.bucket, status=row.status,
                                      reinvest_client_order_id=row.reinvest_client_order_id or "")
    if row.amount_base is not None:
        dividend.amount_base = row.amount_base
    if row.reinvested_at is not None:
        dividend.reinvested_at.CopyFrom(to_timestamp(row.reinvested_at))
    return dividend


def _bonus(bonus: dividends.Bonus) -> portfolio_pb2.PendingBonus:
    reply = portfolio_pb2.PendingBonus(symbol=bonus.symbol, amount_base=bonus.amount_base)
    if bonus.bonus is not None:
        reply.bonus = bonus.bonus
    return reply


def _settings(settings: bucket_rules.BucketSettings) -> portfolio_pb2.BucketSettings:
    return portfolio_pb2.BucketSettings(satellite_budget=settings.satellite_budget,
                                        satellite_min=settings.satellite_min, satellite_max=settings.satellite_max,
                                        dampening=settings.dampening)


def bucket_to_proto(view: BucketView) -> portfolio_pb2.Bucket:
    b = view.bucket
    reply = portfolio_pb2.Bucket(
        id=b.id, name=view.name, kind=b.kind, status=_STATUS_ENUM[b.status], target_share=b.target_share,
        min_share=b.min_share, max_share=b.max_share, consecutive_losses=b.consecutive_losses,
        aggression=view.aggression, dividend_handling=b.dividend_handling, created_at=to_timestamp(view.created_at),
        reawakening=b.reawakening, trading_allowed=b.status in bucket_rules.TRADING_STATUSES,
        balances=[portfolio_pb2.BucketBalance(currency=c, amount=a) for c, a in sorted(view.balances.items())])
    _optional(reply, view, ("value_base", "drawdown"))
    _optional(reply, b, ("high_water_mark",))
    for name in ("high_water_mark_at", "loss_streak_paused_at", "win_cooldown_until"):
        if getattr(b, name) is not None:
            getattr(reply, name).CopyFrom(to_timestamp(getattr(b, name)))
    return reply


def allocations_to_proto(state: AllocationState) -> portfolio_pb2.AllocationTargets:
    def groups(items):
        result = []
        for g in items:
            group = portfolio_pb2.AllocationGroup(name=g.name, members=g.members)
            if g.target is not None:
                group.target = g.target
            result.append(group)
        return result

    return portfolio_pb2.AllocationTargets(
        country_groups=groups(state.country_groups), industry_groups=groups(state.industry_groups),
        securities=[portfolio_pb2.SecurityGroups(symbol=s.symbol, country=s.country, country_group=s.country_group,
                                                 industry=s.industry, industry_group=s.industry_group)
                    for s in state.securities],
        allocations_hash=state.allocations_hash, default_country_groups=state.default_country_groups,
        default_industry_groups=state.default_industry_groups)

