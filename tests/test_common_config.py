"""Configuration is validated at start and every problem is reported clearly, at once."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.config import ConfigError, load_common, parse_fx_rates

TOKEN = {"TRADER_API_TOKEN": "x" * 20}


def problems(env):
    with pytest.raises(ConfigError) as caught:
        load_common("data", env)
    return caught.value.problems


def test_defaults():
    config = load_common("data", TOKEN)
    assert config.listen_address == "127.0.0.1:50051"
    assert config.address_of("gateway") == "127.0.0.1:50050"
    assert config.mode == "replay" and config.base_currency == "EUR"
    assert config.fx_rates == {"USD": 1.10}
    assert config.db_url.startswith("sqlite:///") and config.db_url.endswith("data.db")


def test_missing_token_is_explained():
    [problem] = problems({})
    assert "TRADER_API_TOKEN" in problem and "TRADER_AUTH_DISABLED" in problem


def test_short_token_refused():
    assert any("at least 16" in p for p in problems({"TRADER_API_TOKEN": "short"}))


def test_every_problem_reported_at_once():
    found = problems({**TOKEN, "TRADER_DATA_ADDR": "nowhere", "TRADER_MODE": "yolo",
                      "TRADER_BASE_CURRENCY": "euro", "TRADER_CALL_TIMEOUT_S": "fast",
                      "TRADER_FX_RATES": "USD=-1"})
    assert len(found) == 5
    text = "\n".join(found)
    for name in ("TRADER_DATA_ADDR", "TRADER_MODE", "TRADER_BASE_CURRENCY", "TRADER_CALL_TIMEOUT_S", "TRADER_FX_RATES"):
        assert name in text


def test_unknown_mode_is_refused():
    [problem] = problems({**TOKEN, "TRADER_MODE": "yolo"})
    assert "TRADER_MODE" in problem and "replay" in problem


def test_service_db_url_override():
    config = load_common("trading", {**TOKEN, "TRADER_TRADING_DB_URL": "sqlite:////tmp/x.db"})
    assert config.db_url == "sqlite:////tmp/x.db"


@pytest.mark.parametrize("text", ["USD", "USD=abc", "usdollar=1", "USD=0", "EUR=1", "USD=nan", "USD=inf"])
def test_bad_fx_rates(text):
    with pytest.raises(ValueError):
        parse_fx_rates(text, "EUR")


@given(st.dictionaries(st.sampled_from(["USD", "GBP", "HKD", "CHF", "JPY"]),
                       st.floats(min_value=1e-4, max_value=1e4, allow_nan=False), max_size=5))
def test_fx_rates_round_trip(rates):
    text = ",".join(f"{c}={r!r}" for c, r in rates.items())
    assert parse_fx_rates(text, "EUR") == rates
