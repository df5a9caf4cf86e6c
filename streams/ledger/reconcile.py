"""Reconcile K against E (LEDGER A12): the rule classifier, bounds from ``LedgerConfig``.

Owns: rules R1-R6 and the status (worst rule). Reads the state, never mutates
K or E (it keeps the memo of R3, R4 and R6, see ``position_rules``). Must not touch: booking, outputs (``fold`` turns results into records).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from .config import LedgerConfig
from .events import ExchangePosition
from .numbers import D0, plain, q18
from .state import AccountState

Result = tuple[str, str, str, str, Decimal]  # rule, status, code, field, delta
_RANK = {"OK": 0, "WARN": 1, "ERROR": 2}


def explain(r: Result) -> str:
    """A12: the explanation of a result, ``CODE|field|delta``."""
    return f"{r[2]}|{r[3]}|{plain(r[4])}"


def reconcile(st: AccountState, cfg: LedgerConfig, marks: Mapping[str, Decimal],
              k_used_margin: Decimal, r2: list[tuple[str, Decimal, Decimal]],
              positions_changed: bool = True) -> tuple[str, list[Result]]:
    """Classify every rule that has E to compare with; returns (worst status, non-OK results).

    Spot drift (B8, found by ``spot.check_drift`` at balance frames) is one
    more rule: a WARN ``DRIFT`` result per drifting asset until it clears.

    R1 and R5 need a valid wallet balance, R3, R4 and R6 a positions snapshot,
    R2 a settlement in this event (``r2``: field, kernel estimate, exchange
    figure; like with like, one trade's legs against their settlement). Only
    results that are not OK are returned: an OK rule has nothing to explain.

    ``positions_changed`` False says no position's quantity changed since the
    last call on this state: then R3, R4 and R6 are evaluated again only when
    their other inputs changed (``position_rules``).
    """
    out: list[Result] = []
    if st.e_wallet is not None:
        _banded(out, "R1", "capital", st.k_capital - st.e_wallet, cfg.r1_epsilon,
                cfg.r1_pending_fee_bound, "UNSETTLED_FEE", "CAPITAL_MISMATCH")
    for field, estimate, exchange in r2:
        _banded(out, "R2", field, estimate - exchange, cfg.r2_epsilon, cfg.r2_rounding_bound,
                "LOT_STEP_ROUNDING", "REALIZED_MISMATCH")
    if st.e_positions is not None:
        out.extend(position_rules(st, cfg, marks, positions_changed))
    for asset, d in st.book.drift.items():
        # B8: derived - exchange quantity of each drifting asset, WARN while it lasts
        out.append(("B8", "WARN", "DRIFT", f"balance:{asset}", Decimal(d[2] or 0)))
    if st.e_wallet is not None:
        _banded(out, "R5", "used_margin", k_used_margin - st.e_used, cfg.r5_epsilon,
                cfg.r5_leverage_band * st.e_used, "LEVERAGE_ROUNDING", "MARGIN_MISMATCH")
    status = "OK"
    for r in out:
        if _RANK[r[1]] > _RANK[status]:
            status = r[1]
            if status == "ERROR":
                break
    return status, out


def _banded(out: list[Result], rule: str, field: str, delta: Decimal, eps: Decimal,
            band: Decimal, warn: str, error: str) -> None:
    mag = abs(delta)
    if mag > eps:  # rounded only when reported: comparisons use the exact delta
        out.append((rule, "WARN", warn, field, q18(delta)) if mag <= band
                   else (rule, "ERROR", error, field, q18(delta)))


def position_rules(st: AccountState, cfg: LedgerConfig, marks: Mapping[str, Decimal],
                   positions_changed: bool = True) -> list[Result]:
    """R3, R4 and R6 against the exchange's positions snapshot (``st.e_positions``).

    R3 (quantities) and R6 (open counts) read K's quantities, the snapshot and
    the config; R4 (notional at K's mark vs the exchange's) reads one snapshot
    entry and the mark of its symbol. Their last results are kept with those
    inputs (``st.rules_memo``, never encoded): R3 and R6 are evaluated again
    only when a quantity, the snapshot or the config changed, R4 for an entry
    only when its mark changed. Same inputs, same results, in the same order:
    the memo only saves the work (``tests/unit/ledger/test_incremental.py``).
    """
    eps = st.e_positions
    assert eps is not None
    memo = st.rules_memo
    if positions_changed or memo is None or memo[0] is not eps or memo[1] is not cfg:
        memo = st.rules_memo = (eps, cfg, *_quantity_rules(st, eps, cfg), {})
    _, _, k_r3, held, r6, r4_memo = memo
    out = list(k_r3)
    for key, ep, r3 in held:
        out.extend(r3)
        kmark = marks.get(key[0])
        seen = r4_memo.get(key)
        if seen is None or not _same(seen[0], kmark):
            seen = r4_memo[key] = (kmark, _r4(key, ep, kmark, cfg))
        out.extend(seen[1])
    out.extend(r6)
    return out


def _quantity_rules(st: AccountState, eps: Mapping[tuple[str, str], ExchangePosition],
                    cfg: LedgerConfig,
                    ) -> tuple[list[Result], list[tuple[tuple[str, str], ExchangePosition,
                                                        list[Result]]], list[Result]]:
    """R3 for K's open positions; each open snapshot entry with its R3; R6."""
    k_r3: list[Result] = []
    k_open = 0
    for key, kp in st.positions.items():
        if not kp.qty:
            continue
        k_open += 1
        ep = eps.get(key)
        delta = kp.qty - (ep.qty if ep is not None else D0)
        if delta and abs(delta) > cfg.lot_step(key[0]):
            k_r3.append(("R3", "ERROR", "POSITION_QTY_MISMATCH", f"{key[0]}:{key[1]}.qty",
                         delta))
    held: list[tuple[tuple[str, str], ExchangePosition, list[Result]]] = []
    for key, ep in eps.items():
        if not ep.qty:
            continue
        r3: list[Result] = []
        mine = st.positions.get(key)
        if (mine is None or not mine.qty) and abs(ep.qty) > cfg.lot_step(key[0]):
            r3.append(("R3", "ERROR", "POSITION_QTY_MISMATCH", f"{key[0]}:{key[1]}.qty",
                       -ep.qty))
        held.append((key, ep, r3))
    r6: list[Result] = []
    if k_open != len(held):
        r6.append(("R6", "ERROR", "POSITION_COUNT_MISMATCH", "open_positions",
                   Decimal(k_open - len(held))))
    return k_r3, held, r6


def _r4(key: tuple[str, str], ep: ExchangePosition, kmark: Decimal | None,
        cfg: LedgerConfig) -> list[Result]:
    """R4: notional of the exchange quantity at K's mark vs at the exchange's mark."""
    out: list[Result] = []
    if ep.mark_price and kmark and kmark != ep.mark_price:
        size = abs(ep.qty)
        _banded(out, "R4", f"{key[0]}:{key[1]}.notional", size * (kmark - ep.mark_price),
                cfg.r4_epsilon, cfg.r4_staleness_band * size * ep.mark_price,
                "MARK_PRICE_STALENESS", "MARK_MISMATCH")
    return out


def _same(a: Decimal | None, b: Decimal | None) -> bool:
    """The same mark: the same object, or equal with the same exponent (``2`` is not ``2.0``)."""
    if a is b:
        return True
    if a is None or b is None or a != b:
        return False
    return a.as_tuple().exponent == b.as_tuple().exponent
