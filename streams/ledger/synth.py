"""Deterministic synthetic venue events for integration tests and the fold benchmark.

Owns: ``generate_events`` — valid FOLD_FORMAT dicts (amounts as strings) for
many accounts, reproducible from a seed. Its pseudo-random numbers come from a
seeded ``random.Random`` here, never inside the fold. Must not touch: the fold
itself (it only produces input for it).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from .numbers import D0, plain, q18

_START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
_FEE_RATE = Decimal("0.0004")
_LEVERAGES = (Decimal(1), Decimal(2), Decimal(3), Decimal(5), Decimal(10))


class _Pos:
    __slots__ = ("qty", "avg")

    def __init__(self) -> None:
        self.qty = D0
        self.avg = D0


class _Account:
    __slots__ = ("account_id", "capital", "positions", "pending", "leverage")

    def __init__(self, account_id: str, leverage: Decimal) -> None:
        self.account_id = account_id
        self.capital = Decimal(10000)
        self.positions: dict[str, _Pos] = {}
        # (fill event_id, symbol, realized, fee) of exits the venue has not settled yet
        self.pending: list[tuple[str, str, Decimal, Decimal]] = []
        self.leverage = leverage


def generate_events(n_events: int, n_accounts: int, n_symbols: int = 8,
                    seed: int = 0) -> list[dict[str, Any]]:
    """``n_events`` valid fold-format events over ``n_accounts`` accounts, deterministic in seed.

    Each account starts with an anchor and a balance; then fills (opens,
    increases, reduces, closes, flips, some exits without a price that a later
    ``fill_settled`` settles), funding, balance updates, position snapshots and
    global marks (``account_id`` ""), and a few account frames without a wallet
    balance (an anomaly, LEDGER A9). Timestamps rise one second per event, so
    they are monotonic per account; event ids are unique.
    """
    rng = random.Random(seed)  # noqa: S311 - test data, not security
    symbols = [f"S{i}-USDT" for i in range(n_symbols)]
    prices = {s: Decimal(rng.randint(500, 50000)) / 100 for s in symbols}
    accounts = [_Account(f"acc-{seed}-{i:04d}", rng.choice(_LEVERAGES))
                for i in range(n_accounts)]
    out: list[dict[str, Any]] = []
    seq = 0

    def env(kind: str, account: str) -> dict[str, Any]:
        nonlocal seq
        seq += 1
        ts = _START + timedelta(seconds=seq)
        return {"kind": kind, "event_id": f"e{seed}-{seq}", "account_id": account,
                "venue": "synth", "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ")}

    for acc in accounts:
        if len(out) >= n_events:
            break
        out.append({**env("anchor", acc.account_id), "capital": plain(acc.capital)})
        if len(out) < n_events:
            out.append(_balance(env("balance", acc.account_id), acc))

    while len(out) < n_events:
        r = rng.random()
        if r < 0.07:
            sym = rng.choice(symbols)
            step = Decimal(rng.randint(-50, 50)) / 10000
            prices[sym] = max(Decimal("0.01"), q18(prices[sym] * (1 + step)).quantize(
                Decimal("0.0001")))
            out.append({**env("mark", ""), "symbol": sym, "price": plain(prices[sym])})
            continue
        acc = rng.choice(accounts)
        if r < 0.105:
            out.append(_balance(env("balance", acc.account_id), acc))
        elif r < 0.11:
            # Some venues send account frames without the margin asset (LEDGER A9).
            out.append({**env("balance", acc.account_id), "wallet_balance": None})
        elif r < 0.16:
            out.append(_positions(env("positions", acc.account_id), acc, prices))
        elif r < 0.20:
            held = sorted(s for s, p in acc.positions.items() if p.qty)
            sym = rng.choice(held or symbols)
            amount = Decimal(rng.randint(-300, 300)) / 100
            acc.capital -= amount
            out.append({**env("funding", acc.account_id), "symbol": sym, "amount": plain(amount)})
        elif r < 0.21:
            amount = Decimal(rng.randint(1, 500))
            acc.capital += amount
            out.append({**env("cash_flow", acc.account_id), "asset": "USDT",
                        "amount": plain(amount), "flow": "deposit"})
        elif r < 0.25 and acc.pending:
            fill_id, sym, realized, fee = acc.pending.pop(0)
            acc.capital += realized
            out.append({**env("fill_settled", acc.account_id), "symbol": sym,
                        "fill_event_id": fill_id, "realized_pnl": plain(realized),
                        "fee": plain(fee)})
        else:
            out.append(_fill(rng, env("fill", acc.account_id), acc, rng.choice(symbols), prices))
            # Venues usually follow a fill with an account update (positions, wallet).
            if rng.random() < 0.6 and len(out) < n_events:
                out.append(_positions(env("positions", acc.account_id), acc, prices))
                if len(out) < n_events:
                    out.append(_balance(env("balance", acc.account_id), acc))
    return out


def _balance(d: dict[str, Any], acc: _Account) -> dict[str, Any]:
    used = sum((q18(abs(p.qty) * p.avg / acc.leverage) for p in acc.positions.values()), D0)
    d.update(wallet_balance=plain(acc.capital), available_margin=plain(acc.capital - used),
             used_margin=plain(used), maint_margin=plain(q18(used / 10)))
    return d


def _positions(d: dict[str, Any], acc: _Account, prices: dict[str, Decimal]) -> dict[str, Any]:
    d["positions"] = [
        {"symbol": s, "position_side": "BOTH", "qty": plain(p.qty),
         "entry_price": plain(p.avg), "mark_price": plain(prices[s]),
         "leverage": plain(acc.leverage)}
        for s, p in sorted(acc.positions.items()) if p.qty
    ]
    return d


def _fill(rng: random.Random, d: dict[str, Any], acc: _Account, sym: str,
          prices: dict[str, Decimal]) -> dict[str, Any]:
    pos = acc.positions.setdefault(sym, _Pos())
    price = prices[sym]
    size = Decimal(rng.randint(1, 2000)) / 10
    priced = True
    if not pos.qty:
        side = rng.choice(("BUY", "SELL"))
        qty = size
    else:
        long = pos.qty > 0
        r = rng.random()
        if r < 0.35:  # increase
            side, qty = ("BUY" if long else "SELL"), size
        elif r < 0.70:  # reduce
            side, qty = ("SELL" if long else "BUY"), min(size, abs(pos.qty))
        elif r < 0.85:  # close
            side, qty = ("SELL" if long else "BUY"), abs(pos.qty)
        elif r < 0.95:  # flip
            side, qty = ("SELL" if long else "BUY"), abs(pos.qty) + size
        else:  # exit without a true price, settled later by the venue
            side, qty = ("SELL" if long else "BUY"), min(size, abs(pos.qty))
            priced = False
    fee = q18(qty * price * _FEE_RATE).quantize(Decimal("0.00000001"))
    signed = qty if side == "BUY" else -qty
    realized = D0
    if pos.qty and (pos.qty > 0) != (signed > 0):
        closed = min(qty, abs(pos.qty))
        move = price - pos.avg
        realized = q18(closed * move if pos.qty > 0 else -(closed * move))
        if qty > abs(pos.qty):
            pos.qty = signed + pos.qty
            pos.avg = price
        else:
            pos.qty += signed
    elif pos.qty:
        pos.avg = q18((pos.avg * abs(pos.qty) + price * qty) / (abs(pos.qty) + qty))
        pos.qty += signed
    else:
        pos.qty = signed
        pos.avg = price
    acc.capital -= fee
    if priced:
        acc.capital += realized
    else:
        acc.pending.append((d["event_id"], sym, realized, fee))
    d.update(symbol=sym, side=side, qty=plain(qty), price=plain(price) if priced else "0",
             fee=plain(fee), fee_asset="USDT", position_side="BOTH",
             leverage=plain(acc.leverage), venue_order_id=f"o-{d['event_id']}")
    return d
