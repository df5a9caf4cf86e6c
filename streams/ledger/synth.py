"""Deterministic synthetic venue events for integration tests and the fold benchmark.

Owns: ``generate_events`` — valid FOLD_FORMAT dicts (amounts as strings) for
many accounts, reproducible from a seed, with optional Kraken spot accounts
(``spot_accounts``). Its pseudo-random numbers come from seeded
``random.Random`` instances here, never inside the fold. Must not touch: the
fold itself (it only produces input for it).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal
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
                    seed: int = 0, spot_accounts: int = 0) -> list[dict[str, Any]]:
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

    spot = _SpotGen(seed, spot_accounts, n_accounts) if spot_accounts > 0 else None
    if spot is not None:
        for event in spot.opening(env):
            if len(out) >= n_events:
                break
            out.append(event)

    while len(out) < n_events:
        if spot is not None and spot.rng.random() < spot.share:
            out.append(spot.step(env))
            continue
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


# ------------------------------------------------------------------------------ spot accounts

#: Valuation marks of the spot accounts' assets (LEDGER B4: ``<asset>/USD``).
_SPOT_MARKS = ("XBT/USD", "ETH/USD", "DOT/USD")
_SPOT_PAIRS = ("XBT/USD", "ETH/USD", "ETH/XBT")
_SPOT_FEE_RATE = Decimal("0.0026")
_SPOT_TAGS = ("grid", "momentum")
_Q8 = Decimal("0.00000001")
_Q4 = Decimal("0.0001")


class _SpotAccount:
    __slots__ = ("account_id", "held", "drifting")

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self.held: dict[str, Decimal] = {}
        self.drifting = False

    def add(self, asset: str, qty: Decimal) -> None:
        self.held[asset] = self.held.get(asset, D0) + qty
        if self.held[asset] < 0:
            raise AssertionError(f"synth spot model sold {asset} it did not hold")


class _SpotGen:
    """Kraken spot accounts: what the fold books, tracked exactly so nothing is oversold.

    Each account opens with deposits of USD, XBT and DOT (DOT pays some fees).
    Then, at random: buys and sells of ``XBT/USD``, ``ETH/USD`` and
    ``ETH/XBT`` with the fee in the base asset, the quote asset or DOT, half
    of them untagged (``manual``) and half with a ``strategy_tag``; deposits
    and withdrawals of any held asset; global marks of ``XBT/USD``,
    ``ETH/USD`` and ``DOT/USD`` (``account_id`` ""); and balance frames
    (``assets`` free/locked, no wallet balance) that report the holdings the
    fold derives, except about one in eight, which reports one asset off
    (LEDGER B8 drift) until the next frame matches again. Quantities are
    Decimal and follow the fold's own arithmetic (notional = qty x price), so
    a sale, a fee or a withdrawal never takes more than is held.
    """

    def __init__(self, seed: int, n: int, n_other: int) -> None:
        self.rng = random.Random(f"twinledger-spot-{seed}")  # noqa: S311 - test data
        self.accounts = [_SpotAccount(f"spot-{seed}-{i:04d}") for i in range(n)]
        self.share = n / (n + n_other) if n + n_other else 1.0
        self.prices = {"XBT/USD": Decimal("61250.5"), "ETH/USD": Decimal("3050.25"),
                       "DOT/USD": Decimal("7.125")}

    def _pair_price(self, symbol: str) -> Decimal:
        if symbol == "ETH/XBT":
            return (self.prices["ETH/USD"] / self.prices["XBT/USD"]).quantize(Decimal("0.00001"))
        return self.prices[symbol]

    def _mark(self, env: Any, symbol: str) -> dict[str, Any]:
        return {**env("mark", ""), "venue": "kraken", "symbol": symbol,
                "price": plain(self.prices[symbol])}

    def opening(self, env: Any) -> list[dict[str, Any]]:
        out = [self._mark(env, s) for s in _SPOT_MARKS]
        for acc in self.accounts:
            usd = Decimal(self.rng.randint(20, 200) * 500)
            xbt = Decimal(self.rng.randint(5, 40)) / 10
            dot = Decimal(self.rng.randint(50, 300))
            for asset, amount in (("USD", usd), ("XBT", xbt), ("DOT", dot)):
                out.append(self._cash(env, acc, asset, amount))
        return out

    def step(self, env: Any) -> dict[str, Any]:
        rng = self.rng
        r = rng.random()
        if r < 0.08:
            sym = rng.choice(_SPOT_MARKS)
            move = Decimal(rng.randint(-80, 80)) / 10000
            self.prices[sym] = max(Decimal("0.01"), (self.prices[sym] * (1 + move)).quantize(
                Decimal("0.01")))
            return self._mark(env, sym)
        acc = rng.choice(self.accounts)
        if r < 0.24:
            return self._frame(env, acc)
        if r < 0.30:
            asset = rng.choice(("USD", "XBT", "ETH", "DOT"))
            amount = (Decimal(rng.randint(100, 5000)) if asset == "USD"
                      else Decimal(rng.randint(1, 300)) / 100)
            return self._cash(env, acc, asset, amount)
        if r < 0.35:
            held = sorted(a for a, q in acc.held.items() if q > 0)
            if held:
                asset = rng.choice(held)
                amount = (acc.held[asset] * Decimal(rng.randint(5, 30)) / 100).quantize(
                    _Q8, rounding=ROUND_DOWN)
                if amount > 0:
                    return self._cash(env, acc, asset, -amount, "withdrawal")
        fill = self._fill(env, acc)
        return fill if fill is not None else self._frame(env, acc)

    def _cash(self, env: Any, acc: _SpotAccount, asset: str, amount: Decimal,
              flow: str = "deposit") -> dict[str, Any]:
        acc.add(asset, amount)
        return {**env("cash_flow", acc.account_id), "venue": "kraken", "asset": asset,
                "amount": plain(amount), "flow": flow}

    def _frame(self, env: Any, acc: _SpotAccount) -> dict[str, Any]:
        rng = self.rng
        reported = {a: q for a, q in acc.held.items() if q > 0}
        acc.drifting = bool(reported) and rng.random() < 0.125
        if acc.drifting:
            asset = rng.choice(sorted(reported))
            off = (reported[asset] * Decimal(rng.randint(1, 5)) / 100).quantize(_Q8)
            if asset == "USD":
                off = max(off, Decimal(5))
            reported[asset] += off if rng.random() < 0.5 or off > reported[asset] else -off
        assets = {}
        for asset, total in sorted(reported.items()):
            locked = D0
            if rng.random() < 0.2:
                locked = (total * Decimal(rng.randint(1, 50)) / 100).quantize(
                    _Q8, rounding=ROUND_DOWN)
            assets[asset] = {"free": plain(total - locked), "locked": plain(locked)}
        return {**env("balance", acc.account_id), "venue": "kraken", "wallet_balance": None,
                "assets": assets}

    def _fill(self, env: Any, acc: _SpotAccount) -> dict[str, Any] | None:
        rng = self.rng
        symbol = rng.choice(_SPOT_PAIRS)
        base, quote = symbol.split("/")
        price = self._pair_price(symbol)
        side = rng.choice(("BUY", "SELL"))
        if side == "SELL" and acc.held.get(base, D0) <= 0:
            side = "BUY"
        fee_in = rng.choice(("base", "quote", "DOT"))
        if side == "BUY":
            budget = acc.held.get(quote, D0) * Decimal(rng.randint(5, 30)) / 100
            qty = (budget / price).quantize(_Q8, rounding=ROUND_DOWN)
        else:
            qty = (acc.held[base] * Decimal(rng.randint(10, 60)) / 100).quantize(
                _Q8, rounding=ROUND_DOWN)
        if qty <= 0:
            return None
        notional = q18(qty * price)
        if fee_in == "DOT":
            fee_asset, fee = "DOT", (Decimal(rng.randint(1, 50)) / 100)
            if fee > acc.held.get("DOT", D0):
                fee_in = "quote"
        if fee_in == "base":
            fee_asset, fee = base, q18(qty * _SPOT_FEE_RATE).quantize(_Q8)
        elif fee_in == "quote":
            fee_asset = quote
            fee = q18(notional * _SPOT_FEE_RATE).quantize(_Q4 if quote == "USD" else _Q8)
        # Book it as the fold does: the side's disposal and acquisition, then the fee.
        if side == "BUY":
            acc.add(quote, -notional)
            acc.add(base, qty)
        else:
            acc.add(base, -qty)
            acc.add(quote, notional)
        if fee > acc.held.get(fee_asset, D0):
            # A fee the account cannot pay from that asset: pay it in what it just received.
            fee_asset = base if side == "BUY" else quote
            fee = min(fee, acc.held[fee_asset])
        acc.add(fee_asset, -fee)
        tag = "" if rng.random() < 0.5 else rng.choice(_SPOT_TAGS)
        d = {**env("fill", acc.account_id), "venue": "kraken", "market": "spot",
             "symbol": symbol, "side": side, "qty": plain(qty), "price": plain(price),
             "fee": plain(fee), "fee_asset": fee_asset, "strategy_tag": tag}
        d["venue_order_id"] = f"o-{d['event_id']}"
        return d
