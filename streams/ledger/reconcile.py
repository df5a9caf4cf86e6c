"""Reconcile K against E (LEDGER A12): the rule classifier, bounds from ``LedgerConfig``.

Owns: rules R1-R6 and the status (worst rule). Reads the state, never mutates
K or E. Must not touch: booking, outputs (``fold`` turns results into records).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

from .config import LedgerConfig
from .numbers import D0, plain, q18
from .state import AccountState

Result = tuple[str, str, str, str, Decimal]  # rule, status, code, field, delta
_RANK = {"OK": 0, "WARN": 1, "ERROR": 2}


def explain(r: Result) -> str:
    """A12: the explanation of a result, ``CODE|field|delta``."""
    return f"{r[2]}|{r[3]}|{plain(r[4])}"


def _result(rule: str, status: str, code: str, field: str, delta: Decimal) -> Result:
    return (rule, status, code, field, delta)


def _banded(rule: str, field: str, delta: Decimal, eps: Decimal, band: Decimal, warn: str,
            error: str) -> Result:
    mag = abs(delta)
    if mag <= eps:
        return _result(rule, "OK", "OK", field, delta)
    if mag <= band:
        return _result(rule, "WARN", warn, field, delta)
    return _result(rule, "ERROR", error, field, delta)


def reconcile(st: AccountState, cfg: LedgerConfig, marks: Mapping[str, Decimal],
              k_used_margin: Decimal, r2: list[tuple[str, Decimal, Decimal]],
              ) -> tuple[str, list[Result]]:
    """Classify every rule that has E to compare with; returns (worst status, results).

    R1 and R5 need a valid wallet balance, R3, R4 and R6 a positions snapshot,
    R2 a settlement in this event (``r2``: field, kernel estimate, exchange
    figure; like with like, one trade's legs against their settlement).
    """
    out: list[Result] = []
    if st.e_wallet is not None:
        out.append(_banded("R1", "capital", st.k_capital - st.e_wallet, cfg.r1_epsilon,
                           cfg.r1_pending_fee_bound, "UNSETTLED_FEE", "CAPITAL_MISMATCH"))
    for field, estimate, exchange in r2:
        out.append(_banded("R2", field, estimate - exchange, cfg.r2_epsilon,
                           cfg.r2_rounding_bound, "LOT_STEP_ROUNDING", "REALIZED_MISMATCH"))
    eps = st.e_positions
    if eps is not None:
        keys = [k for k, p in st.positions.items() if p.qty]
        keys += [k for k, p in eps.items() if p.qty and k not in st.positions]
        keys += [k for k, p in eps.items()
                 if p.qty and k in st.positions and not st.positions[k].qty]
        for key in keys:
            kp = st.positions.get(key)
            ep = eps.get(key)
            kq = kp.qty if kp is not None else D0
            eq = ep.qty if ep is not None else D0
            field = f"{key[0]}:{key[1]}.qty"
            delta = kq - eq
            if abs(delta) <= cfg.lot_step(key[0]):
                out.append(_result("R3", "OK", "OK", field, delta))
            else:
                out.append(_result("R3", "ERROR", "POSITION_QTY_MISMATCH", field, delta))
        for key, ep in eps.items():
            kmark = marks.get(key[0])
            if not ep.qty or not ep.mark_price or not kmark:
                continue
            size = abs(ep.qty)
            delta = q18(size * (kmark - ep.mark_price))
            out.append(_banded("R4", f"{key[0]}:{key[1]}.notional", delta, cfg.r4_epsilon,
                               cfg.r4_staleness_band * size * ep.mark_price,
                               "MARK_PRICE_STALENESS", "MARK_MISMATCH"))
        k_open = sum(1 for p in st.positions.values() if p.qty)
        e_open = sum(1 for p in eps.values() if p.qty)
        if k_open != e_open:
            out.append(_result("R6", "ERROR", "POSITION_COUNT_MISMATCH", "open_positions",
                               Decimal(k_open - e_open)))
        else:
            out.append(_result("R6", "OK", "OK", "open_positions", D0))
    if st.e_wallet is not None:
        out.append(_banded("R5", "used_margin", k_used_margin - st.e_used, cfg.r5_epsilon,
                           cfg.r5_leverage_band * st.e_used, "LEVERAGE_ROUNDING",
                           "MARGIN_MISMATCH"))
    status = "OK"
    for r in out:
        if _RANK[r[1]] > _RANK[status]:
            status = r[1]
    return status, out
