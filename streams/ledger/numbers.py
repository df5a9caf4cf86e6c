"""Exact-decimal helpers of the ledger core: the one rounding rule and the one number printer.

Owns: the decimal context the fold computes in, quantization to the wire scale
(Avro ``decimal(38,18)``) and the plain-string rendering used by the fold file
and the state codec. Must not touch: anything but numbers (no I/O, no clock).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal

from .markprice import MarkPrice, mark_ts

__all__ = ["D0", "D1", "LEDGER_CONTEXT", "LIMIT", "SCALE", "MarkPrice", "mark_ts", "plain", "q18"]

#: Scale of every amount on the wire (Avro decimal(38,18)).
SCALE = 18
#: Largest magnitude the wire can carry: |x| < 10**20 (38 digits, 18 after the point).
LIMIT = Decimal(10) ** 20

# Sums of 38-digit amounts and products of two of them stay exact at 80 digits;
# only q18 below ever rounds.
LEDGER_CONTEXT = Context(prec=80, rounding=ROUND_HALF_EVEN, Emax=10**6, Emin=-(10**6))

D0 = Decimal(0)
D1 = Decimal(1)
_Q18 = Decimal(1).scaleb(-SCALE)


def q18(x: Decimal) -> Decimal:
    """Round ``x`` to at most 18 decimal places, ROUND_HALF_EVEN.

    This is the only place the ledger rounds: every product or quotient that is
    booked (VWAP basis, unrealized PnL, used margin, a fee split) goes through
    it, so every stored amount fits the wire scale and every sum of stored
    amounts is exact. A value that already has at most 18 places is returned
    unchanged (its exponent is kept, so ``0.1878`` stays ``0.1878``).
    """
    if x.as_tuple().exponent >= -SCALE:  # type: ignore[operator]
        return x
    return x.quantize(_Q18, rounding=ROUND_HALF_EVEN, context=LEDGER_CONTEXT)


def plain(x: Decimal) -> str:
    """A decimal as a plain string, never in exponent form (``1E+3`` -> ``"1000"``).

    Negative zero prints as ``"0"``: a sign on zero is an artefact of arithmetic,
    not a fact.
    """
    s = format(x, "f")
    if s[0] == "-" and not x:
        return s[1:]
    return s
