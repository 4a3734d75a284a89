"""dividend_reinvestment: daily at 03:30, the dividends not yet reinvested (README, "Portfolio",
dividends; trading-portfolio-jobs.md section 5): the portfolio's PlanDividendReinvestment, then
each same-security BUY it proposes is submitted to trading under the plan's client order id, so
it can never be bought twice. Trading checks each order as any other (safety rules, frequency
caps, cash, market hours): a rule's refusal is an answer, reported in the detail; a BUY already
submitted (ALREADY_EXISTS) waits for its fill, which marks its dividends reinvested. The job
FAILED when an order could not be submitted for another reason (after trying the others)."""

from __future__ import annotations

from datetime import datetime

import grpc
from trader.portfolio.v1 import portfolio_pb2
from trader.trading.v1 import trading_pb2

from gateway.jobs.base import Job, JobFailed, JobPeers, is_refusal, listed, rpc_problem

NAME = "dividend_reinvestment"
DEFAULT_SCHEDULE = "30 3 * * *"


def _submit(peers: JobPeers, buy: portfolio_pb2.ReinvestmentBuy) -> trading_pb2.Order:
    return peers.services.trading.SubmitOrder(trading_pb2.SubmitOrderRequest(
        client_order_id=buy.client_order_id, symbol=buy.symbol, side=trading_pb2.BUY, quantity=buy.quantity,
        reason=f"dividend reinvestment: {buy.amount_base:.2f} of dividends ({len(buy.dividend_ids)})"))


def run(peers: JobPeers, now: datetime) -> str:
    plan = peers.services.portfolio.PlanDividendReinvestment(portfolio_pb2.PlanDividendReinvestmentRequest())
    said, errors = [], []
    for buy in plan.buys:
        head = f"BUY {buy.quantity} {buy.symbol}"
        try:
            order = _submit(peers, buy)
            said.append(f"{head} {trading_pb2.OrderState.Name(order.state)}")
        except grpc.RpcError as exc:
            if is_refusal(exc, grpc.StatusCode.ALREADY_EXISTS):
                said.append(f"{head} already submitted")
            elif is_refusal(exc, grpc.StatusCode.FAILED_PRECONDITION):
                said.append(f"{head} refused ({rpc_problem(exc)})")
            else:
                errors.append(f"{head}: {rpc_problem(exc)}")
    waiting = f"pooled {plan.pooled_base:.2f} for the rebalancer, {len(plan.bonuses)} pending bonuses"
    text = (listed(said) if said else "nothing to reinvest") + f"; {waiting}"
    if errors:
        raise JobFailed(f"{listed(errors)}; {text}")
    return text


JOB = Job(NAME, "Dividends reinvested in the same security where the rule says so", DEFAULT_SCHEDULE, run,
          simulated_clock=True)
