"""What the fuzz test found beyond issue 9's examples, each kept as a regression test."""

import math

import pytest

from services.common.errors import InvalidArgument
from services.common.validate import MAX_AMOUNT, finite_amount, non_negative_amount, positive_amount
from services.data.adapters.csv_import import parse_yahoo_csv


@pytest.mark.parametrize("text", ["0\r0", "Date,Open,High,Low,Close\n2018-01-02,1,2,0.5,1\r5\n",
                                  "Date,Open,High,Low,Close\n2018-01-02,1,2,0.5," + "1" * 200_000 + "\n"])
def test_a_file_the_csv_reader_cannot_read_is_invalid_argument(text):
    """csv.Error (a bare carriage return, a field over the reader's limit) gave INTERNAL."""
    with pytest.raises(InvalidArgument) as caught:
        parse_yahoo_csv(text)
    assert caught.value.field == "csv"


@pytest.mark.parametrize("check", [finite_amount, non_negative_amount, positive_amount])
@pytest.mark.parametrize("value", [1e308, MAX_AMOUNT * 1.5, math.inf, math.nan])
def test_amounts_beyond_any_account_are_refused(check, value):
    """1e308 EUR of broker cash was accepted; the planner then failed with INTERNAL (int64 overflow)."""
    with pytest.raises(InvalidArgument) as caught:
        check("cash[0].amount", value)
    assert caught.value.field == "cash[0].amount"
