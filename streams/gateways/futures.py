"""The ``ACCOUNT_UPDATE`` frame shared by Binance USDⓈ-M and BingX perpetual swaps.

Owns: turning ``{"e": "ACCOUNT_UPDATE", "E": ms, "T": ms, "a": {"m": reason,
"B": [{a, wb, cw, bc}], "P": [{s, pa, ep, up, mt, iw, ps}]}}`` into balance,
positions, funding and cash-flow events. Must not touch: order frames (each
venue module owns its own) or what the ledger does with an absent wallet
balance.

Decisions a reader needs:

- **No margin asset, no balance event.** Venues push account frames that
  carry only some assets (a funding frame of another asset, a BNB fee
  wallet). Such a frame says nothing about the wallet balance; we emit *no*
  ``balance`` event rather than one with an invented or null balance
  (LEDGER A9: a missing balance is not a fact).
- **Whole position snapshots.** ``P`` lists only the positions that
  changed, but a ``positions`` event replaces the exchange positions
  (LEDGER A9). The gateway therefore merges ``P`` into the account's book in
  ``OrderMemory`` and emits the whole book; a quantity of 0 closes a
  position.
- **Funding** (``m = FUNDING_FEE``): ``bc`` of the margin asset is the
  funding cash the account received (negative = paid); the event's
  ``amount`` is positive when paid (FOLD_FORMAT). Cross-margin funding
  frames do not name the symbol: it is then the account's only open
  position, or ``"*"`` (account-level funding) when the book holds several
  or none.
- **Transfers** (deposit, withdrawal, transfers between wallets) become
  ``cash_flow`` events from ``bc`` so K moves with them (LEDGER A11, B5).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from streams.gateways.common import (
    Context,
    MemoryTxn,
    Position,
    digest,
    fmt,
    ident,
    mapping,
    opt_amount,
    position_side_of,
    req_amount,
    sequence,
    text_field,
    ts_from_ms,
    unset,
)
from streams.gateways.exceptions import PayloadRejected

#: Reasons (``a.m``) whose ``bc`` is money moved in or out of the futures wallet.
TRANSFER_REASONS = frozenset({
    "DEPOSIT", "WITHDRAW", "WITHDRAW_REJECT", "ADMIN_DEPOSIT", "ADMIN_WITHDRAW",
    "MARGIN_TRANSFER", "ASSET_TRANSFER", "COIN_SWAP_DEPOSIT", "COIN_SWAP_WITHDRAW",
    "TRANSFER",
})
FUNDING_REASON = "FUNDING_FEE"
#: Symbol of a funding payment whose frame names no symbol while several positions are open.
UNNAMED_FUNDING_SYMBOL = "*"


def frame_times(frame: Mapping[str, Any]) -> tuple[str, Any]:
    """(event time as id text, exchange timestamp): ``T`` (transaction) when set, else ``E``."""
    event_ms = ident(frame.get("E"), "E (event time)")
    ts = ts_from_ms(frame.get("E"), "E (event time)")
    if not unset(frame.get("T")):
        ts = ts_from_ms(frame.get("T"), "T (transaction time)")
    return event_ms, ts


def account_update(
    frame: Mapping[str, Any],
    txn: MemoryTxn,
    ctx: Context,
    *,
    symbol_of: Callable[[str], str],
    margin_asset: str = "USDT",
) -> list[dict[str, Any]]:
    account = ctx.account()
    event_ms, ts = frame_times(frame)
    body = mapping(frame.get("a"), "a (account update)")
    reason = text_field(body, "m", "a.m (reason)", default="")
    base = f"{ctx.venue}:account:{event_ms}:{digest(frame)}"

    balances: list[tuple[str, Decimal, Decimal | None]] = []
    for i, row in enumerate(sequence(body.get("B"), "a.B (balances)")):
        row = mapping(row, f"a.B[{i}]")
        asset = text_field(row, "a", f"a.B[{i}].a (asset)", max_len=32).upper()
        wallet = req_amount(row, "wb", f"a.B[{i}].wb (wallet balance)")
        change = opt_amount(row, "bc", f"a.B[{i}].bc (balance change)")
        balances.append((asset, wallet, change))

    positions: list[tuple[str, str, Decimal, Decimal]] = []
    for i, row in enumerate(sequence(body.get("P"), "a.P (positions)")):
        row = mapping(row, f"a.P[{i}]")
        symbol = symbol_of(text_field(row, "s", f"a.P[{i}].s (symbol)", max_len=40))
        side = position_side_of(row.get("ps"), f"a.P[{i}].ps (position side)")
        qty = req_amount(row, "pa", f"a.P[{i}].pa (position amount)")
        entry = opt_amount(row, "ep", f"a.P[{i}].ep (entry price)") or Decimal(0)
        if entry < 0:
            raise PayloadRejected(f"a.P[{i}].ep (entry price): negative {entry}")
        # Hedge-mode SHORT positions are reported unsigned by some venues: sign by side.
        if side == "SHORT":
            qty = -abs(qty)
        elif side == "LONG":
            qty = abs(qty)
        positions.append((symbol, side, qty, entry))

    events: list[dict[str, Any]] = []
    if reason == FUNDING_REASON:
        symbols = {p[0] for p in positions} or \
            {p["symbol"] for p in txn.book(f"{ctx.venue}|{account}").values()}
        symbol = symbols.pop() if len(symbols) == 1 else UNNAMED_FUNDING_SYMBOL
        for asset, _wallet, change in balances:
            if asset == margin_asset and change:
                events.append(ctx.event("funding", f"{base}:funding:{asset}", account, ts,
                                        symbol=symbol, amount=fmt(-change)))
    elif reason in TRANSFER_REASONS:
        for asset, _wallet, change in balances:
            if change:
                events.append(ctx.event(
                    "cash_flow", f"{base}:cash_flow:{asset}", account, ts, asset=asset,
                    amount=fmt(change), flow="deposit" if change > 0 else "withdrawal"))

    for asset, wallet, _change in balances:
        if asset == margin_asset:
            events.append(ctx.event("balance", f"{base}:balance", account, ts,
                                    wallet_balance=fmt(wallet)))

    if positions:
        key = f"{ctx.venue}|{account}"
        book = txn.book(key)
        for symbol, side, qty, entry in positions:
            pkey = f"{symbol}|{side}"
            if qty == 0:
                book.pop(pkey, None)
            else:
                entry_text = fmt(entry)
                position: Position = {"symbol": symbol, "position_side": side, "qty": fmt(qty),
                                      "entry_price": entry_text}
                book[pkey] = position
        txn.set_book(key, book)
        events.append(ctx.event("positions", f"{base}:positions", account, ts,
                                positions=[dict(book[k]) for k in sorted(book)]))
    return events
