"""The next-actions line, e.g. `EUR 12,345 | CASH EUR 675 | BUY AAPL EUR 855`."""

from __future__ import annotations


def money(currency: str, amount: float) -> str:
    return f"{currency} {amount:,.0f}"


def next_actions_text(base: str, total_value: float, cash: float, next_step: tuple[str, str, float] | None) -> str:
    """`next_step` is (side, symbol, value in base) of the plan's first step, if any."""
    parts = [money(base, total_value), f"CASH {money(base, cash)}"]
    if next_step is not None:
        side, symbol, value = next_step
        parts.append(f"{side} {symbol.split('.')[0]} {money(base, value)}")
    return " | ".join(parts)
