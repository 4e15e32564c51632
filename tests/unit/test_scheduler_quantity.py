"""Resource quantity parsing: the forms found in pod requests and node allocatable."""

from decimal import Decimal

import pytest

from agents.scheduler.quantity import QuantityError, amount, milli_value, parse_quantity, value

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("text, expected", [
    ("1", Decimal(1)),
    ("0.5", Decimal("0.5")),
    (".5", Decimal("0.5")),
    ("100m", Decimal("0.1")),
    ("250u", Decimal("0.00025")),
    ("5n", Decimal("0.000000005")),
    ("2k", Decimal(2000)),
    ("3M", Decimal(3_000_000)),
    ("1G", Decimal(10**9)),
    ("1Ki", Decimal(1024)),
    ("512Mi", Decimal(512 * 2**20)),
    ("1Gi", Decimal(2**30)),
    ("1.5Gi", Decimal(3 * 2**29)),
    ("2Ti", Decimal(2 * 2**40)),
    ("1e3", Decimal(1000)),
    ("1E3", Decimal(1000)),
    ("5e-3", Decimal("0.005")),
    ("1E", Decimal(10**18)),   # E alone is the exa suffix, not an exponent
    (3, Decimal(3)),
])
def test_parse_quantity(text, expected):
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("bad", ["", "abc", "1Qi", "1.2.3", "m", "1 Gi x"])
def test_bad_quantities_are_refused_with_the_value_named(bad):
    with pytest.raises(QuantityError, match="invalid quantity"):
        parse_quantity(bad)


@pytest.mark.parametrize("text, millis", [("100m", 100), ("1", 1000), ("0.5", 500),
                                          ("2.5", 2500), ("1.0001", 1001), ("1u", 1)])
def test_cpu_counts_in_millicores_rounded_up(text, millis):
    assert milli_value(text) == millis
    assert amount("cpu", text) == millis


def test_memory_counts_in_bytes_rounded_up():
    assert value("512Mi") == 536870912
    assert value("1.5") == 2
    assert amount("memory", "1Gi") == 2**30
    assert amount("pods", "110") == 110
