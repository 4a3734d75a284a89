"""gRPC servicer for trader.planner.v1.Planner."""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta

import pandas as pd
from trader.data.v1 import data_pb2, data_pb2_grpc
from trader.planner.v1 import planner_pb2, planner_pb2_grpc
from trader.portfolio.v1 import portfolio_pb2, portfolio_pb2_grpc
from trader.trading.v1 import trading_pb2, trading_pb2_grpc

from services.common import clock
from services.common.client import Clients
from services.common.db import Database
from services.common.money import to_base
from services.common.timestamps import from_timestamp
from services.planner import defaults, store
from services.planner.optimizer import target_weights
from services.planner.plan import Candidate, Step, buy_steps, plan_id

# Calendar days that hold LOOKBACK_BARS trading days, with room for holidays.
_LOOKBACK_DAYS = int(defaults.LOOKBACK_BARS * 1.5) + 10


class PlannerServicer(planner_pb2_grpc.PlannerServicer):
    def __init__(self, db: Database, clients: Clients):
        self._db = db
        self._data = clients.stub("data", data_pb2_grpc.MarketDataStub)
        self._portfolio = clients.stub("portfolio", portfolio_pb2_grpc.PortfolioStub)
        self._trading = clients.stub("trading", trading_pb2_grpc.TradingStub)

    def GetRecommendations(self, request, context):
        now = clock.now()
        day = now.date().isoformat()
        portfolio = self._portfolio.GetPortfolio(portfolio_pb2.GetPortfolioRequest())
        with self._db.transaction() as session:
            cached = store.find_plan(session, portfolio.portfolio_hash, day)
        if cached is None:
            payload = self._compute(portfolio, now)
            identifier = plan_id(portfolio.portfolio_hash, day, [Step(**s) for s in payload["steps"]])
            with self._db.transaction() as session:
                store.save_plan(session, portfolio.portfolio_hash, day, identifier, payload, now)
        else:
            identifier, payload = cached
        response = planner_pb2.GetRecommendationsResponse(
            plan_id=identifier, portfolio_hash=portfolio.portfolio_hash, as_of_date=day,
            target_weights=payload["target_weights"], cached=cached is not None, method=payload["method"],
        )
        for number, step in enumerate(payload["steps"], start=1):
            response.steps.add(step=number, symbol=step["symbol"], side=planner_pb2.Side.Value(step["side"]),
                               quantity=step["quantity"], estimated_price=step["estimated_price"],
                               currency=step["currency"], estimated_value_base=step["estimated_value_base"],
                               reason=step["reason"])
        return response

    def _recently_bought(self, now) -> set[str]:
        """Symbols inside trading's BUY cooldown: a step for them would only be refused."""
        days = self._trading.GetSettings(trading_pb2.GetSettingsRequest()).buy_cooldown_days
        trades = self._trading.ListTrades(trading_pb2.ListTradesRequest(limit=1000)).trades
        return {t.symbol for t in trades if t.side == trading_pb2.BUY
                and now - from_timestamp(t.executed_at, "trades.executed_at") < timedelta(days=days)}

    def _compute(self, portfolio, now) -> dict:
        cooling = self._recently_bought(now)
        securities = [s for s in self._data.ListSecurities(data_pb2.ListSecuritiesRequest()).securities
                      if s.allow_buy and s.kind == data_pb2.EQUITY and s.symbol not in cooling]
        rates_reply = self._data.GetFxRates(data_pb2.GetFxRatesRequest())
        base, rates = rates_reply.base_currency, {r.currency: r.rate for r in rates_reply.rates}
        start = (now.date() - timedelta(days=_LOOKBACK_DAYS)).isoformat()
        closes: dict[str, pd.Series] = {}
        candidates: dict[str, Candidate] = {}
        for security in securities:
            bars = self._data.GetPriceHistory(
                data_pb2.GetPriceHistoryRequest(symbol=security.symbol, start=start, interval=data_pb2.DAILY)
            ).bars[-defaults.LOOKBACK_BARS:]
            if not bars:
                continue
            closes[security.symbol] = pd.Series([b.close for b in bars],
                                                index=pd.to_datetime([b.date for b in bars]))
            last = bars[-1].close
            candidates[security.symbol] = Candidate(security.symbol, last, security.currency,
                                                    to_base(last, security.currency, base, rates),
                                                    max(1, security.lot_size))
        weights, method = target_weights(pd.DataFrame(closes).sort_index())
        held = {p.symbol: p.market_value_base for p in portfolio.positions}
        steps = buy_steps(weights, held, portfolio.total_value_base, portfolio.cash_base, candidates)
        return {"steps": [asdict(s) for s in steps], "target_weights": weights, "method": method}
