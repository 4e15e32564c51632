"""Kubernetes resource quantities: `100m`, `0.5`, `1Gi`, `512Mi`, `1e3`, `2k`.

Values are exact (Decimal) and converted to integers the way the API does: cpu in
millicores and everything else in base units, both rounded up."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"),
            "T": Decimal("1e12"), "P": Decimal("1e15"), "E": Decimal("1e18")}
_FORM = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(.*)$")
_EXPONENT = re.compile(r"^[eE]([+-]?[0-9]+)$")


class QuantityError(ValueError):
    pass


def parse_quantity(value: str | int | float) -> Decimal:
    """A quantity as an exact number of base units (cores for cpu, bytes for memory)."""
    if isinstance(value, int | float):
        return Decimal(str(value))
    text = str(value).strip()
    match = _FORM.match(text)
    if not match:
        raise QuantityError(f"invalid quantity {value!r}: expected a number with an optional "
                            "suffix such as 100m, 1.5, 512Mi, 2Gi or 1e3")
    number, suffix = match.groups()
    try:
        amount = Decimal(number)
    except InvalidOperation:
        raise QuantityError(f"invalid quantity {value!r}") from None
    if suffix in _BINARY:
        return amount * _BINARY[suffix]
    if suffix in _DECIMAL:
        return amount * _DECIMAL[suffix]
    exp = _EXPONENT.match(suffix)
    if exp:
        return amount * (Decimal(10) ** int(exp.group(1)))
    raise QuantityError(f"invalid quantity {value!r}: unknown suffix {suffix!r} (use n u m k "
                        "M G T P E, Ki Mi Gi Ti Pi Ei, or an exponent like e3)")


def milli_value(value: str | int | float) -> int:
    """In thousandths, rounded up (cpu is counted in millicores)."""
    return math.ceil(parse_quantity(value) * 1000)


def value(value: str | int | float) -> int:
    """In base units, rounded up (bytes for memory)."""
    return math.ceil(parse_quantity(value))


def amount(resource: str, quantity: str | int | float) -> int:
    """The integer the scheduler counts for a resource: millicores for cpu, base units
    otherwise."""
    return milli_value(quantity) if resource == "cpu" else value(quantity)
