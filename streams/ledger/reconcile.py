"""Reconcile K against E (LEDGER A12): an ordered list of named rules, bounds from ``LedgerConfig``.

Owns: the rules (R1-R6 and the B8 drift rule, docs/ledger.md "R. Reconcile
rules"), the order their results are listed in and the status (the worst
result). Reads the state, never mutates K or E (it keeps the memo of R3, R4
and R6 in ``st.rules_memo``, see ``r3_r4_r6_positions``). Must not touch:
booking, outputs (``fold`` turns the results into records).

``reconcile`` runs every function of ``RULES`` in order on one ``Context``
(the state, the config, the marks, K's used margin and this event's R2
settlements); each appends a ``RuleResult`` to ``ctx.out`` for every check
that is not OK (an OK check has nothing to explain). The results keep the
order of ``RULES``, and that order is part of the output (reconcile records,
``explanations``): do not reorder it.

Adding a rule:

1. Write ``def rN_what(ctx: Context) -> None`` with a docstring saying what
   it compares and when it has something to compare (return early when E
   has no figure for it). Append ``RuleResult(rule, status, code, field,
   delta)`` to ``ctx.out`` for what is not OK; ``banded(ctx.out, ...)``
   does the usual OK / WARN within a band / ERROR beyond (``|delta| <= eps``
   is OK).
2. Add it to ``RULES`` where its results should be listed.
3. Put its bounds in ``LedgerConfig`` (never hard-coded), its row in the R
   table of docs/ledger.md, its tests in ``tests/unit/ledger``.

A rule runs for every applied event, so keep it cheap; one whose inputs
rarely change can keep its last results with those inputs as
``r3_r4_r6_positions`` does (same inputs, same results: the memo only saves
the work, ``tests/unit/ledger/test_incremental.py``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import NamedTuple

from .config import LedgerConfig
from .events import ExchangePosition
from .numbers import D0, plain, q18
from .state import AccountState, RuleResult

__all__ = ["RULES", "Context", "Rule", "RuleResult", "banded", "explain", "position_rules",
           "reconcile"]

_RANK = {"OK": 0, "WARN": 1, "ERROR": 2}
#: ``_new(RuleResult, (rule, status, code, field, delta))`` is ``RuleResult(rule, ...)`` at
#: half the cost (a NamedTuple's own constructor is a Python function): for the hot paths.
_new = tuple.__new__


class Context:
    """What the rules of one reconcile read, and ``out``: the results found so far.

    ``r2``: this event's settlements as (field, kernel estimate, exchange
    figure); ``positions_changed`` False says no position's quantity changed
    since the last reconcile of this state (R3 and R6 may reuse their memo).
    """

    __slots__ = ("st", "cfg", "marks", "k_used_margin", "r2", "positions_changed", "out")

    def __init__(self, st: AccountState, cfg: LedgerConfig, marks: Mapping[str, Decimal],
                 k_used_margin: Decimal, r2: list[tuple[str, Decimal, Decimal]],
                 positions_changed: bool = True) -> None:
        self.st = st
        self.cfg = cfg
        self.marks = marks
        self.k_used_margin = k_used_margin
        self.r2 = r2
        self.positions_changed = positions_changed
        self.out: list[RuleResult] = []


Rule = Callable[[Context], None]


def explain(r: RuleResult) -> str:
    """A12: the explanation of a result, ``CODE|field|delta``."""
    return f"{r.code}|{r.field}|{plain(r.delta)}"


# ------------------------------------------------------------------------------ the rules


def r1_capital(ctx: Context) -> None:
    """R1: K capital vs the wallet balance, when there is one (WARN ``UNSETTLED_FEE``)."""
    st = ctx.st
    if st.e_wallet is not None:
        cfg = ctx.cfg
        banded(ctx.out, "R1", "capital", st.k_capital - st.e_wallet, cfg.r1_epsilon,
                   cfg.r1_pending_fee_bound, "UNSETTLED_FEE", "CAPITAL_MISMATCH")


def r2_realized(ctx: Context) -> None:
    """R2: each settlement of this event, one trade's legs against the exchange's figure.

    Like with like: the kernel's estimate of the settled trade vs what the
    exchange settled for it, never a running sum (WARN ``LOT_STEP_ROUNDING``).
    """
    cfg = ctx.cfg
    for field, estimate, exchange in ctx.r2:
        banded(ctx.out, "R2", field, estimate - exchange, cfg.r2_epsilon, cfg.r2_rounding_bound,
                   "LOT_STEP_ROUNDING", "REALIZED_MISMATCH")


def r3_r4_r6_positions(ctx: Context) -> None:
    """R3, R4 and R6 against the exchange's positions snapshot, when there is one.

    One rule function because their results interleave: R3 for K's open
    positions, then per open snapshot entry its R3 and R4, then R6
    (``position_rules``, memoized).
    """
    st = ctx.st
    if st.e_positions is not None:
        ctx.out.extend(position_rules(st, ctx.cfg, ctx.marks, ctx.positions_changed))


def b8_drift(ctx: Context) -> None:
    """B8: a WARN ``DRIFT`` per drifting asset (``spot.check_drift`` at balance frames).

    The delta is derived - exchange quantity; the result lasts while the drift does.
    """
    for asset, d in ctx.st.book.drift.items():
        ctx.out.append(RuleResult("B8", "WARN", "DRIFT", f"balance:{asset}",
                                  Decimal(d.delta or 0)))


def r5_used_margin(ctx: Context) -> None:
    """R5: K's used margin vs the exchange's, with a wallet balance (WARN ``LEVERAGE_ROUNDING``)."""
    st = ctx.st
    if st.e_wallet is not None:
        cfg = ctx.cfg
        banded(ctx.out, "R5", "used_margin", ctx.k_used_margin - st.e_used, cfg.r5_epsilon,
                   cfg.r5_leverage_band * st.e_used, "LEVERAGE_ROUNDING", "MARGIN_MISMATCH")


#: Every rule, in the order their results are listed (part of the output: append, do not
#: reorder). Adding a rule: one function above and one name here (module docstring).
RULES: tuple[Rule, ...] = (r1_capital, r2_realized, r3_r4_r6_positions, b8_drift,
                           r5_used_margin)


def reconcile(st: AccountState, cfg: LedgerConfig, marks: Mapping[str, Decimal],
              k_used_margin: Decimal, r2: list[tuple[str, Decimal, Decimal]],
              positions_changed: bool = True) -> tuple[str, list[RuleResult]]:
    """Run ``RULES``; returns (worst status, the results that are not OK, in ``RULES`` order).

    ``positions_changed`` False says no position's quantity changed since the
    last call on this state: then R3, R4 and R6 are evaluated again only when
    their other inputs changed (``position_rules``).
    """
    ctx = Context(st, cfg, marks, k_used_margin, r2, positions_changed)
    for rule in RULES:
        rule(ctx)
    out = ctx.out
    status = "OK"
    for r in out:
        if _RANK[r.status] > _RANK[status]:
            status = r.status
            if status == "ERROR":
                break
    return status, out


def banded(out: list[RuleResult], rule: str, field: str, delta: Decimal, eps: Decimal,
           band: Decimal, warn: str, error: str) -> None:
    """The usual bands: OK within ``eps``, WARN ``warn`` within ``band``, else ERROR ``error``."""
    mag = abs(delta)
    if mag > eps:  # rounded only when reported: comparisons use the exact delta
        out.append(_new(RuleResult, (rule, "WARN", warn, field, q18(delta))) if mag <= band
                   else _new(RuleResult, (rule, "ERROR", error, field, q18(delta))))


# ------------------------------------------------------------------- R3, R4, R6 and their memo


#: An open entry of the exchange's positions snapshot: its key (symbol, position_side), the
#: entry and its R3 results (a plain tuple, only ever unpacked: one is built per entry at
#: every quantity change).
Held = tuple[tuple[str, str], ExchangePosition, list[RuleResult]]


class SeenR4(NamedTuple):
    """R4's results for one snapshot entry at K's mark ``mark``."""

    mark: Decimal | None
    results: list[RuleResult]


class RulesMemo(NamedTuple):
    """The last R3/R4/R6 results with their inputs (``st.rules_memo``, never encoded).

    Valid while ``e_positions`` and ``cfg`` are the same objects and no
    position's quantity changed; ``r4``: per snapshot key, the last R4 and
    the mark it was found at, kept across quantity changes (R4 does not read them).
    """

    e_positions: Mapping[tuple[str, str], ExchangePosition]
    cfg: LedgerConfig
    k_r3: list[RuleResult]
    held: list[Held]
    r6: list[RuleResult]
    r4: dict[tuple[str, str], SeenR4]


def position_rules(st: AccountState, cfg: LedgerConfig, marks: Mapping[str, Decimal],
                   positions_changed: bool = True) -> list[RuleResult]:
    """R3, R4 and R6 against the exchange's positions snapshot (``st.e_positions``).

    R3 (quantities) and R6 (open counts) read K's quantities, the snapshot and
    the config; R4 (notional at K's mark vs the exchange's) reads one snapshot
    entry and the mark of its symbol. Their last results are kept with those
    inputs (``st.rules_memo``, never encoded): R3 and R6 are evaluated again
    only when a quantity, the snapshot or the config changed, R4 for an entry
    only when its mark, the snapshot or the config changed (not when only a
    quantity did). Same inputs, same results, in the same order:
    the memo only saves the work (``tests/unit/ledger/test_incremental.py``).
    """
    eps = st.e_positions
    assert eps is not None
    memo: RulesMemo | None = st.rules_memo
    same = memo is not None and memo.e_positions is eps and memo.cfg is cfg
    if positions_changed or memo is None or not same:
        k_r3, held, r6 = _quantity_rules(st, eps, cfg)
        # R4 reads one snapshot entry and its mark, never K's quantities: its results
        # stay valid while the snapshot and the config are the same objects
        r4 = memo.r4 if memo is not None and same else {}
        memo = st.rules_memo = _new(RulesMemo, (eps, cfg, k_r3, held, r6, r4))
    r4_memo = memo.r4
    out = list(memo.k_r3)
    for key, ep, r3 in memo.held:
        out.extend(r3)
        kmark = marks.get(ep.symbol)
        seen = r4_memo.get(key)
        if seen is None or not _same(seen.mark, kmark):
            seen = r4_memo[key] = _new(SeenR4, (kmark, _r4(ep, kmark, cfg)))
        out.extend(seen.results)
    out.extend(memo.r6)
    return out


def _quantity_rules(st: AccountState, eps: Mapping[tuple[str, str], ExchangePosition],
                    cfg: LedgerConfig,
                    ) -> tuple[list[RuleResult], list[Held], list[RuleResult]]:
    """R3 for K's open positions; each open snapshot entry with its R3; R6."""
    k_r3: list[RuleResult] = []
    k_open = 0
    for key, kp in st.positions.items():
        if not kp.qty:
            continue
        k_open += 1
        ep = eps.get(key)
        delta = kp.qty - (ep.qty if ep is not None else D0)
        if delta and abs(delta) > cfg.lot_step(kp.symbol):
            k_r3.append(_new(RuleResult, ("R3", "ERROR", "POSITION_QTY_MISMATCH",
                                          f"{kp.symbol}:{kp.position_side}.qty", delta)))
    held: list[Held] = []
    for key, ep in eps.items():
        if not ep.qty:
            continue
        r3: list[RuleResult] = []
        mine = st.positions.get(key)
        if (mine is None or not mine.qty) and abs(ep.qty) > cfg.lot_step(ep.symbol):
            r3.append(_new(RuleResult, ("R3", "ERROR", "POSITION_QTY_MISMATCH",
                                        f"{ep.symbol}:{ep.position_side}.qty", -ep.qty)))
        held.append((key, ep, r3))
    r6: list[RuleResult] = []
    if k_open != len(held):
        r6.append(RuleResult("R6", "ERROR", "POSITION_COUNT_MISMATCH", "open_positions",
                             Decimal(k_open - len(held))))
    return k_r3, held, r6


def _r4(ep: ExchangePosition, kmark: Decimal | None, cfg: LedgerConfig) -> list[RuleResult]:
    """R4: notional of the exchange quantity at K's mark vs at the exchange's mark."""
    out: list[RuleResult] = []
    if ep.mark_price and kmark and kmark != ep.mark_price:
        size = abs(ep.qty)
        banded(out, "R4", f"{ep.symbol}:{ep.position_side}.notional",
                size * (kmark - ep.mark_price), cfg.r4_epsilon,
                cfg.r4_staleness_band * size * ep.mark_price, "MARK_PRICE_STALENESS",
                "MARK_MISMATCH")
    return out


def _same(a: Decimal | None, b: Decimal | None) -> bool:
    """The same mark: the same object, or equal with the same exponent (``2`` is not ``2.0``)."""
    if a is b:
        return True
    if a is None or b is None or a != b:
        return False
    return a.as_tuple().exponent == b.as_tuple().exponent
