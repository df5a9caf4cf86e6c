"""A mark price that knows when it was marked.

Owns: ``MarkPrice`` (a ``Decimal`` with the event time of its mark) and
``mark_ts``. A module of its own, never compiled (``_native.COMPILED``): a
subclass of ``Decimal`` must stay a Python class. ``numbers`` re-exports both.
Must not touch: anything but the one value and its time.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any


class MarkPrice(Decimal):
    """A mark price that knows the event time it was marked at (``ts``).

    It is a ``Decimal`` in every respect (arithmetic on it gives plain
    decimals); readers of a marks mapping that care how old a mark is read
    ``mark_ts``. A mark without one (a plain ``Decimal``) has no known age.
    """

    __slots__ = ("ts",)
    ts: Any

    def __new__(cls, value: Any, ts: Any = None) -> MarkPrice:
        self = Decimal.__new__(cls, value)
        self.ts = ts
        return self


def mark_ts(price: Any) -> Any:
    """The event time of a mark (a ``datetime``), or None when it carries none."""
    return getattr(price, "ts", None)
