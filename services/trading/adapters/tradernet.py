"""The Tradernet (Freedom24) broker for live trading.

Signed calls: POST {base}/api/{cmd} with the parameters as compact JSON; the signature is the
hex HMAC-SHA256 of body + Unix-seconds timestamp under the API secret, sent with the public key
and the timestamp in X-NtApi-* headers. Calls are serialised at least 1.5 s apart with a 30 s
timeout (the original's rate limit). A non-200 answer, an error field or bad JSON raises: a
failure is never turned into "no data" (the original's worst habit, trading-portfolio-jobs.md 3).

Orders are limit day orders at the checked limit price, carrying a numeric user_order_id
derived from the client order id, so they can be found again by that id after a lost reply.
They fill later: fills arrive through `executions()` at the next sync.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime

from services.common.errors import FailedPrecondition, Unavailable
from services.trading.adapters.broker import (
    Account,
    BrokerPosition,
    BrokerRejected,
    CashMovement,
    Execution,
    MarketOrder,
)
from services.trading.orders import broker_reference

ACTION = {"BUY": 1, "SELL": 3}       # 2 and 4 are margin: never used
LIMIT_ORDER, DAY = 2, 1              # order_type_id, expiration_id
MIN_INTERVAL_S, TIMEOUT_S = 1.5, 30.0


class TradernetError(Unavailable):
    """The broker answered with an error, not in a form we can trust, or not at all. To the
    caller the broker is unavailable (UNAVAILABLE); `code` is set when it answered an error."""

    def __init__(self, command: str, message: str, code: int | None = None):
        super().__init__(f"tradernet {command}: {message}" + (f" (code {code})" if code is not None else ""))
        self.code = code


def sign(secret: str, body: str, timestamp: str) -> str:
    return hmac.new(secret.encode(), (body + timestamp).encode(), hashlib.sha256).hexdigest()


class TradernetClient:
    def __init__(self, base_url: str, public_key: str, secret: str, min_interval_s: float = MIN_INTERVAL_S,
                 timeout_s: float = TIMEOUT_S, monotonic: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, wall: Callable[[], float] = time.time):
        self._base = base_url.rstrip("/")
        self._key = public_key
        self._secret = secret
        self._min_interval_s = min_interval_s
        self._timeout_s = timeout_s
        self._monotonic, self._sleep, self._wall = monotonic, sleep, wall
        self._lock = threading.Lock()
        self._last_call = None

    def call(self, command: str, params: dict) -> dict:
        body = json.dumps(params, separators=(",", ":"), sort_keys=True)
        with self._lock:
            if self._last_call is not None:
                wait = self._min_interval_s - (self._monotonic() - self._last_call)
                if wait > 0:
                    self._sleep(wait)
            timestamp = str(int(self._wall()))
            request = urllib.request.Request(
                f"{self._base}/api/{command}", data=body.encode(), method="POST",
                headers={"Content-Type": "application/json", "X-NtApi-PublicKey": self._key,
                         "X-NtApi-Timestamp": timestamp, "X-NtApi-Sig": sign(self._secret, body, timestamp)})
            try:
                with urllib.request.urlopen(request, timeout=self._timeout_s) as response:
                    raw = response.read()
            except urllib.error.HTTPError as exc:
                raise TradernetError(command, f"HTTP {exc.code}") from exc
            except (urllib.error.URLError, OSError) as exc:  # refused, reset, timed out, DNS
                raise TradernetError(command, f"connection failed: {exc}") from exc
            finally:
                self._last_call = self._monotonic()
        try:
            answer = json.loads(raw)
        except ValueError as exc:
            raise TradernetError(command, "the answer is not JSON") from exc
        if not isinstance(answer, dict):
            raise TradernetError(command, "the answer is not a JSON object")
        error = answer.get("errMsg") or answer.get("error")
        if error:
            raise TradernetError(command, str(error), answer.get("code"))
        return answer


def _as_list(value) -> list:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _number(record: dict, key: str, command: str) -> float:
    try:
        return float(record[key])
    except (KeyError, TypeError, ValueError) as exc:
        raise TradernetError(command, f"field {key!r} missing or not a number in {record!r}") from exc


class TradernetBroker:
    name = "tradernet"
    converts_currency = False  # not built yet: a foreign BUY needs its currency held (check: cash)
    takes_deposits = False
    pays_dividends = False  # the broker pays them itself

    def __init__(self, client: TradernetClient):
        self._client = client

    def account(self) -> Account:
        result = self._client.call("getPositionJson", {}).get("result", {}).get("ps", {})
        positions = []
        for p in _as_list(result.get("pos")):
            quantity = _number(p, "q", "getPositionJson")
            if quantity != int(quantity):
                raise TradernetError("getPositionJson", f"fractional quantity {quantity} for {p.get('i')}")
            if quantity > 0:
                cost = _number(p, "bal_price_a", "getPositionJson")
                positions.append(BrokerPosition(str(p["i"]), int(quantity), cost, str(p.get("curr", ""))))
        cash = {str(a["curr"]): _number(a, "s", "getPositionJson") for a in _as_list(result.get("acc"))}
        return Account(sorted(positions, key=lambda p: p.symbol), cash)

    def place_market_order(self, order: MarketOrder, now: datetime) -> Execution | None:
        params = {"instr_name": order.symbol, "action_id": ACTION[order.side], "order_type_id": LIMIT_ORDER,
                  "qty": order.quantity, "limit_price": round(order.limit_price, 4), "expiration_id": DAY,
                  "user_order_id": int(broker_reference(order.client_order_id))}
        try:
            answer = self._client.call("putTradeOrder", params)
        except TradernetError as exc:
            if exc.code is not None:  # the broker refused it: nothing was placed
                raise BrokerRejected(str(exc)) from exc
            raise  # no trustworthy answer: the outcome is unknown (resolved by lookup)
        if not (answer.get("order_id") or answer.get("orderId") or answer.get("id")):
            raise TradernetError("putTradeOrder", "no order id in the answer")
        return None  # accepted; the fill arrives through executions()

    def _open_orders(self) -> list[dict]:
        result = self._client.call("getNotifyOrderJson", {"active_only": 1}).get("result", {})
        return _as_list((result.get("orders") or {}).get("order"))

    def settle(self, now: datetime) -> int:
        return 0  # Tradernet works its orders itself; fills arrive through executions()

    def closed_reason(self, client_order_id: str) -> str:
        return ""  # its order history is not read for reasons

    def open_order_ids(self) -> set[str]:
        return {str(o.get("user_order_id")) for o in self._open_orders() if o.get("user_order_id") is not None}

    def cancel(self, client_order_id: str) -> bool:
        reference = broker_reference(client_order_id)
        for order in self._open_orders():
            if str(order.get("user_order_id")) == reference:
                try:
                    self._client.call("delTradeOrder", {"order_id": order["id"]})
                except TradernetError as exc:
                    if exc.code is not None:  # refused (e.g. code 12: only through a trader)
                        raise BrokerRejected(str(exc)) from exc
                    raise
                return True
        return False

    def executions(self, since: datetime | None = None) -> list[Execution]:
        trades = self._client.call("getTradesHistory", {}).get("trades", {})  # all: recorded once by id
        found = []
        for t in _as_list(trades.get("trade")):
            side = {1: "BUY", 2: "SELL"}.get(int(_number(t, "type", "getTradesHistory")))
            if side is None:
                raise TradernetError("getTradesHistory", f"unknown trade type in {t!r}")
            executed = datetime.fromisoformat(str(t["date"]).replace(" ", "T"))
            found.append(Execution(
                broker_trade_id=f"TN-{t['id']}", client_order_id=str(t.get("user_order_id") or t.get("order_id") or ""),
                symbol=str(t["instr_nm"]), side=side, quantity=int(_number(t, "q", "getTradesHistory")),
                price=_number(t, "price", "getTradesHistory"),
                currency=str(t.get("curr") or t.get("commission_currency") or ""),
                commission=float(t.get("commission") or 0.0),
                executed_at=executed if executed.tzinfo else executed.replace(tzinfo=UTC)))
        return found

    def cash_movements(self, since: datetime | None = None) -> list[CashMovement]:
        """From getClientCpsHistory, read as the original did: type 337 withdrawal, 297 structured
        product; the amount is the first of totalMoneyOut, totalMoneyIn, amount, sum. Tradernet
        does not report deposits here: record them with the portfolio's RecordDeposit."""
        answer = self._client.call("getClientCpsHistory", {})
        container = answer.get("cps", answer.get("result"))
        records = container.get("doc") if isinstance(container, dict) else container
        movements = []
        for record in _as_list(records):
            type_id = int(record.get("type_doc_id", 0))
            kind = {337: "withdrawal", 297: "structured_product_purchase"}.get(type_id, f"type_{type_id}")
            out = record.get("totalMoneyOut")
            amount = -float(out) if out not in (None, "", 0) else float(
                next((record[k] for k in ("totalMoneyIn", "amount", "sum") if record.get(k) not in (None, "")), 0))
            when = datetime.fromisoformat(str(record["date"]).replace(" ", "T"))
            movements.append(CashMovement(f"TN-CPS-{record['id']}", kind, amount,
                                          str(record.get("currency") or record.get("curr") or ""),
                                          when if when.tzinfo else when.replace(tzinfo=UTC),
                                          str(record.get("description") or "")))
        return movements

    def find_execution(self, client_order_id: str) -> Execution | None:
        reference = broker_reference(client_order_id)
        return next((e for e in self.executions() if e.client_order_id in (reference, client_order_id)), None)

    def quotes(self, symbols: list[str]) -> dict[str, float]:
        answer = self._client.call("getStockQuotesJson", {"tickers": ",".join(symbols)})
        quotes = _as_list(answer.get("result", {}).get("q"))
        return {str(q["c"]): _number(q, "ltp", "getStockQuotesJson") for q in quotes}

    def deposit(self, amount: float, currency: str, reference: str, now: datetime) -> bool:
        raise FailedPrecondition("paper_only", "deposits reach a live account from the bank, not through the API")

    def convert(self, from_currency: str, from_amount: float, to_currency: str, to_amount: float,
                reference: str, now: datetime) -> None:
        raise FailedPrecondition("fx_conversion", "automatic conversion at Tradernet is not supported yet: "
                                                  f"convert {from_currency} to {to_currency} by hand")
