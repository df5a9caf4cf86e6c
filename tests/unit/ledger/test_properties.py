"""Property tests of the fold (hypothesis): identities that must hold for any event stream."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from streams.ledger import (
    LedgerConfig,
    Output,
    apply_event,
    decode_state,
    encode_state,
    parse_event,
)
from streams.ledger.events import Mark

from ._helpers import T0, avro_bytes, load_schemas

SCHEMAS = load_schemas()
SYMS = ("AAA-USDT", "BBB-USDT")
PROPERTY = settings(max_examples=500, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

qty = st.sampled_from(["0.5", "1", "2", "3", "7.25", "10"])
price = st.sampled_from(["0", "99.5", "100", "101.25", "120", "0.1878"])
fee = st.sampled_from(["0", "0.1", "-0.05", "0.333"])
amount = st.sampled_from(["-3", "-0.5", "0", "1.25", "4"])
account = st.sampled_from(["a", "b"])
sym = st.sampled_from(SYMS)

step = st.one_of(
    st.tuples(st.just("fill"), account, sym, st.sampled_from(["BUY", "SELL"]), qty, price, fee,
              st.sampled_from(["BOTH", "BOTH", "LONG"]), st.sampled_from(["1", "3", "10"])),
    st.tuples(st.just("fill"), account, sym, st.sampled_from(["BUY", "SELL"]), qty, price, fee,
              st.just("BOTH"), st.just("2")),
    st.tuples(st.just("funding"), account, sym, amount),
    st.tuples(st.just("balance"), account, st.sampled_from([None, "0", "900", "1000.5"]),
              st.sampled_from(["0", "50"])),
    st.tuples(st.just("positions"), account, sym, st.sampled_from(["0", "1", "-2.5"]),
              st.sampled_from(["0", "100", "101"])),
    st.tuples(st.just("cash_flow"), account, amount),
    st.tuples(st.just("anchor"), account, st.sampled_from(["0", "1000", "250.75"])),
    st.tuples(st.just("settle"), account, st.integers(0, 30), amount, st.booleans()),
    st.tuples(st.just("mark"), sym, st.sampled_from(["98", "100", "103.5"])),
    st.tuples(st.just("again"), st.integers(0, 60)),
)
streams = st.lists(step, min_size=1, max_size=30)


def build(steps: list[tuple[Any, ...]], with_marks: bool = True) -> list[dict[str, Any]]:
    """Fold-format dicts for the generated steps; 'again' redelivers an earlier event."""
    out: list[dict[str, Any]] = []
    fills: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for i, s in enumerate(steps):
        kind = s[0]
        ts = (T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        if kind == "again":
            if out:
                out.append(out[s[1] % len(out)])
            continue
        if kind == "mark":
            if with_marks:
                out.append({"kind": "mark", "event_id": f"m{i}", "account_id": "", "ts": ts,
                            "symbol": s[1], "price": s[2]})
            continue
        acc = s[1]
        d: dict[str, Any] = {"kind": kind, "event_id": f"{acc}-{i}", "account_id": acc,
                             "venue": "prop", "ts": ts}
        if kind == "fill":
            d.update(symbol=s[2], side=s[3], qty=s[4], price=s[5], fee=s[6], position_side=s[7],
                     leverage=s[8], venue_order_id=f"o{i % 4}")
            fills[acc].append(d)
        elif kind == "funding":
            d.update(symbol=s[2], amount=s[3])
        elif kind == "balance":
            d.update(wallet_balance=s[2], used_margin=s[3])
        elif kind == "positions":
            d["positions"] = [{"symbol": s[2], "qty": s[3], "entry_price": "100",
                               "mark_price": s[4]}]
        elif kind == "cash_flow":
            d.update(asset="USDT", amount=s[2], flow="adjustment")
        elif kind == "anchor":
            d.update(capital=s[2])
        elif kind == "settle":
            target = fills[acc][s[2] % len(fills[acc])] if fills[acc] else None
            d["kind"] = "fill_settled"
            d.update(symbol=target["symbol"] if target else "AAA-USDT", realized_pnl=s[3])
            if s[4] or target is None:
                d["fill_event_id"] = target["event_id"] if target else "unknown"
            else:
                d["venue_order_id"] = target["venue_order_id"]
        out.append(d)
    return out


class Fold:
    """Agent-like fold over dicts; outputs kept per account."""

    def __init__(self, config: LedgerConfig | None = None) -> None:
        self.config = config or LedgerConfig()
        self.states: dict[str, Any] = {}
        self.marks: dict[str, Decimal] = {}
        self.outputs: list[Output] = []
        self.statuses: list[str] = []

    def feed(self, dicts: list[dict[str, Any]], offset0: int | None = None) -> Fold:
        for i, d in enumerate(dicts):
            ev = parse_event(d)
            if isinstance(ev, Mark):
                self.marks[ev.symbol] = ev.price
                continue
            src = None if offset0 is None else (0, offset0 + i)
            res = apply_event(self.states.get(ev.account_id), ev, self.marks, self.config, src)
            self.states[ev.account_id] = res.state
            self.statuses.append(res.status)
            self.outputs.extend(res.outputs)
        return self

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o.record for o in self.outputs if o.kind == kind]

    def wire(self) -> list[bytes]:
        return [avro_bytes(SCHEMAS, o) for o in self.outputs]

    def encoded(self) -> dict[str, bytes]:
        return {a: encode_state(s) for a, s in sorted(self.states.items())}


@PROPERTY
@given(streams)
def test_property_k_capital_identity_exact(steps):
    dicts = build(steps)
    f = Fold(LedgerConfig().unbounded()).feed(dicts)
    applied = defaultdict(list)
    it = iter(f.statuses)
    for d in dicts:
        if d["kind"] != "mark" and next(it) == "applied":
            applied[d["account_id"]].append(d)
    for acc, state in f.states.items():
        evs = applied[acc]
        fees = sum((Decimal(d["fee"]) for d in evs if d["kind"] == "fill"), Decimal(0))
        funding = sum((Decimal(d["amount"]) for d in evs if d["kind"] == "funding"), Decimal(0))
        cash = sum((Decimal(d["amount"]) for d in evs if d["kind"] == "cash_flow"), Decimal(0))
        trades = state.trades()
        realized = sum((t.realized for t in trades), Decimal(0))
        assert all(sum((leg.pnl for leg in t.legs), Decimal(0)) == t.realized for t in trades)
        assert (state.k_fees, state.k_funding, state.k_cash, state.k_realized) == \
            (fees, funding, cash, realized)
        assert state.k_capital == state.seed + realized - fees - funding + cash
    # every snapshot: K moves by exactly realized - fees - funding + cash flows, except where
    # an anchor (or the first wallet, seeding K) sets it
    last: dict[str, tuple[Decimal, Decimal]] = {}
    seq: dict[str, int] = defaultdict(int)
    for o in f.outputs:
        if o.kind != "snapshot" or o.record["event_seq"] <= seq[o.key]:
            continue  # not a snapshot, or one re-sent for a redelivered event
        r = o.record
        assert r["event_seq"] == seq[o.key] + 1  # gap-free
        seq[o.key] = r["event_seq"]
        flows = r["realized_pnl"] - r["fees"] - r["funding"] + r["cash_flows"]
        base = r["k_capital"] - flows
        prev = last.get(r["account_id"])
        if prev is not None and r["event_kind"] not in ("anchor", "balance"):
            assert base == prev[0]
        if r["event_kind"] == "anchor":
            assert r["k_capital"] == r["capital"]
        last[r["account_id"]] = (base, flows)


@PROPERTY
@given(streams, st.booleans())
def test_property_applying_any_event_twice_equals_once(steps, with_offsets):
    dicts = build(steps)
    once = Fold().feed(dicts, 0 if with_offsets else None)
    twice = Fold()
    for i, d in enumerate(dicts):
        twice.feed([d], i if with_offsets else None)
        n = len(twice.outputs)
        again = Fold()
        again.states, again.marks, again.config = twice.states, twice.marks, twice.config
        again.feed([d], i if with_offsets else None)
        if d["kind"] != "mark":
            assert again.statuses[-1] == "duplicate" or again.statuses == ["conflict"]
            if again.statuses[-1] == "duplicate":
                # the redelivery re-sends what the first delivery emitted
                assert again.outputs == twice.outputs[n - len(again.outputs):n] or \
                    not again.outputs
    assert twice.wire() == once.wire()
    assert twice.encoded() == once.encoded()


@PROPERTY
@given(streams)
def test_property_same_input_gives_byte_identical_outputs(steps):
    dicts = build(steps)
    a = Fold().feed(dicts, 100)
    b = Fold().feed(dicts, 100)
    assert a.wire() == b.wire()
    assert a.encoded() == b.encoded()


@PROPERTY
@given(streams, st.integers(0, 40))
def test_property_save_restore_at_any_cut_equals_uninterrupted(steps, cut):
    dicts = build(steps)
    cut = min(cut, len(dicts))
    whole = Fold().feed(dicts, 0)
    first = Fold().feed(dicts[:cut], 0)
    second = Fold()
    second.marks = dict(first.marks)
    second.states = {a: decode_state(encode_state(s)) for a, s in first.states.items()}
    second.feed(dicts[cut:], cut)
    assert first.wire() + second.wire() == whole.wire()
    assert second.encoded() == whole.encoded()
    # a redelivery after the restore is a duplicate that emits nothing and changes nothing:
    # what the stored state applied was flushed before it was stored
    if cut and dicts[cut - 1]["kind"] != "mark":
        restored = Fold()
        restored.marks = dict(first.marks)
        restored.states = {a: decode_state(encode_state(s)) for a, s in first.states.items()}
        before = restored.encoded()
        restored.feed([dicts[cut - 1]], cut - 1)
        assert restored.statuses == ["duplicate"]
        assert restored.outputs == [] and restored.encoded() == before


MARGIN_FIELDS = {"k_used_margin"}
POSITION_MARGIN_FIELDS = {"leverage", "used_margin"}


def without_margin(o: Output) -> dict[str, Any]:
    r = dict(o.record)
    if o.kind == "snapshot":
        for k in MARGIN_FIELDS:
            r.pop(k)
        r["positions"] = [{k: v for k, v in p.items() if k not in POSITION_MARGIN_FIELDS}
                          for p in r["positions"]]
    return r


@PROPERTY
@given(streams, st.sampled_from(["1", "5", "125"]))
def test_property_leverage_changes_margin_fields_only(steps, lev):
    # no balance frames: E's used margin (R5) is the one rule that reads leverage
    dicts = [d for d in build(steps) if d["kind"] != "balance"]
    base = Fold().feed(dicts)
    levered = Fold().feed([{**d, "leverage": lev} if d["kind"] == "fill" else d
                           for d in dicts])
    assert [without_margin(o) for o in levered.outputs] == \
        [without_margin(o) for o in base.outputs]
    # and the margin fields move exactly as notional / leverage (up to the one rounding)
    for a, b in zip(base.of_kind("snapshot"), levered.of_kind("snapshot"), strict=True):
        for pa, pb in zip(a["positions"], b["positions"], strict=True):
            assert pb["leverage"] == Decimal(lev)
            notional_a = pa["used_margin"] * pa["leverage"]
            notional_b = pb["used_margin"] * pb["leverage"]
            assert abs(notional_a - notional_b) <= Decimal("1E-15")


@PROPERTY
@given(streams)
def test_property_interleaving_accounts_changes_nothing_per_account(steps):
    # marks are global: keep them out so only the account interleaving differs
    dicts = build(steps, with_marks=False)
    mixed = Fold().feed(dicts)
    grouped = Fold().feed(sorted(dicts, key=lambda d: d["account_id"]))  # stable sort

    def per_account(f: Fold) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = defaultdict(list)
        for o in f.outputs:
            out[o.key].append(avro_bytes(SCHEMAS, o))
        return dict(out)

    assert per_account(mixed) == per_account(grouped)
    assert mixed.encoded() == grouped.encoded()


def test_property_streams_are_not_trivial():
    """The strategy reaches every kind and both accounts (the properties are not vacuous)."""
    example = build([("fill", "a", "AAA-USDT", "BUY", "1", "100", "0.1", "BOTH", "1"),
                     ("fill", "a", "AAA-USDT", "SELL", "1", "0", "0", "BOTH", "1"),
                     ("settle", "a", 1, "1.25", True), ("again", 0),
                     ("fill", "b", "BBB-USDT", "SELL", "2", "99.5", "0", "LONG", "3")])
    f = Fold().feed(example)
    assert f.statuses == ["applied", "applied", "applied", "duplicate", "applied"]
    actions = [r["action"] for r in f.of_kind("trade")]
    assert actions == ["open", "close", "settle", "open"]  # the duplicate re-sends nothing
    assert f.of_kind("trade")[2]["pnl_source"] == "exchange"
