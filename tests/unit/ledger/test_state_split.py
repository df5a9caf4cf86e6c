"""Hot and cold state (``encode_split``): the hot part every write carries, the history beside it.

Whatever the split, the state decoded from a hot part and its history blobs
(the archive, the recent trades) is the state that was encoded, and the fold
goes on from it exactly as from the state it never left (same outputs, same
whole encoding).
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from streams.ledger import LedgerConfig, StateDecodeError, decode_state, encode_state
from streams.ledger.state import (
    RECENT_MAX,
    RING_TAIL,
    Leg,
    Position,
    Trade,
    _decode_position_line,
    encode_split,
)

from ._helpers import Events, Run

SYM = "BTCUSDT"


class Store(dict):
    """An account's table keys: the hot part under 'hot', its history blobs by name."""

    writes = 0
    archive_writes = 0
    dedup_writes = 0

    def put(self, hot: bytes, history: list[tuple[bytes, bytes]]) -> None:
        for name, blob in history:
            self[name] = blob
            self.writes += 1
            self.archive_writes += name.startswith(b"a")
            self.dedup_writes += name.startswith(b"d")
        self["hot"] = hot

    def load(self):
        return decode_state(self["hot"], self.get)


def _events(n: int) -> list[dict]:
    e = Events()
    out = []
    for i in range(n):
        out.append(e.fill("BUY" if i % 2 == 0 else "SELL", 1, 100 + i % 7, SYM))
        if i % 5 == 4:
            out.append(e("fill_settled", symbol=SYM, fill_event_id=out[-1]["event_id"],
                         realized_pnl="1"))
        if i % 11 == 10:  # settles a trade closed a while ago (archived by now, or recent)
            out.append(e("fill_settled", symbol=SYM, fill_event_id=out[-12]["event_id"],
                         realized_pnl="2"))
    return out


def _whole(state) -> bytes:
    """``encode_state`` without the blob versions (which only the split advances)."""
    blob = encode_state(state)
    nl = blob.index(b"\n", 5)
    h = json.loads(blob[5:nl])
    h[26] = h[30] = h[32] = h[33] = 0
    return json.dumps(h).encode() + blob[nl:]


@pytest.mark.parametrize(("window", "kept"), [(4, 5), (RING_TAIL, 1), (1024, 40),
                                              (1024, None)])
def test_a_state_restored_from_its_hot_part_and_history_folds_on_exactly(window, kept):
    cfg = LedgerConfig(dedup_window=window, max_closed_trades=kept)
    evs = _events(3 * RING_TAIL)
    reference = Run(cfg)
    split = Run(cfg)
    store = Store()
    for i, ev in enumerate(evs):
        assert split(ev) == reference(ev)
        store.put(*encode_split(split.state()))
        if i % 3 == 0:  # a worker restarted here: only what the table holds
            split.states["acc-1"] = store.load()
        assert _whole(store.load()) == _whole(reference.state())
    assert split.statuses == reference.statuses
    for ev in evs[-window:]:  # the whole window is still remembered: all duplicates
        assert split(ev) == [] and split.statuses[-1] == "duplicate"
    assert len(store.load().ring) == min(window, len(evs)) * 16


def test_the_hot_part_carries_no_closed_trade_and_at_most_the_ring_tail():
    run = Run()
    store = Store()
    for ev in _events(5 * RING_TAIL):
        run(ev)
        hot, history = encode_split(run.state())
        store.put(hot, history)
        h = json.loads(hot[5:hot.index(b"\n", 5)])
        assert h[0] == 5 and h[27] == 1 and h[24] <= RING_TAIL * 16  # split; the ring's tail
        lines = hot[:len(hot) - h[24]].count(b"\n")
        assert lines == 3 + h[22]  # magic, header, cold line, positions: no trade lines
    st = run.state()
    assert st.closed_trades and len(st.ring) == len(store.load().ring)
    assert len(store["hot"]) < len(encode_state(st)) / 3


def test_without_a_closed_trade_only_the_dedup_blob_is_written_once_per_ring_tail():
    e = Events()
    run = Run()
    store = Store()
    n = 5 * RING_TAIL
    for _ in range(n):
        run(e.fill("BUY", 1, 100, SYM))  # one open trade growing: nothing closes
        store.put(*encode_split(run.state()))
    assert store.writes == store.dedup_writes == n // (RING_TAIL + 1)
    assert store.archive_writes == 0
    assert encode_state(store.load()) == encode_state(run.state())


def test_an_unchanged_history_is_not_written_again():
    run = Run()
    e = Events()
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
    hot, history = encode_split(run.state())
    assert [name for name, _ in history] == [b"a1"]  # the first archive: version 1
    run(e.fill("BUY", 1, 100, SYM))  # opens a trade: nothing closed, ring tail not full
    hot, history = encode_split(run.state())
    assert history == []


def test_a_trade_that_closes_goes_to_the_recent_blob_until_it_is_full():
    run = Run()
    e = Events()
    store = Store()
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
    store.put(*encode_split(run.state()))
    names = []
    for _ in range(RECENT_MAX + 1):
        run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
        hot, history = encode_split(run.state())
        store.put(hot, history)
        names.append([name for name, _ in history if not name.startswith(b"d")])
        assert encode_state(store.load()) == encode_state(run.state())
    # each close rewrites the small recent blob, alternating slots; one more than
    # RECENT_MAX moves them all to a new archive
    assert names == [[b"r1"], [b"r0"]] * (RECENT_MAX // 2) + [[b"a0"]]


def test_settling_an_archived_trade_writes_a_new_archive_and_restores_exactly():
    run = Run()
    e = Events()
    store = Store()
    first = [e.fill("BUY", 2, 100, SYM), e.fill("SELL", 2, 0, SYM)]  # exit without price
    run(*first)
    store.put(*encode_split(run.state()))
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
    store.put(*encode_split(run.state()))
    run(e("fill_settled", symbol=SYM, fill_event_id=first[1]["event_id"], realized_pnl="4"))
    hot, history = encode_split(run.state())
    store.put(hot, history)
    assert [name for name, _ in history] == [b"a0"]
    restored = store.load()
    assert encode_state(restored) == encode_state(run.state())
    assert [t.realized for t in restored.closed()] == [4, 1]


def test_a_fresh_account_needs_no_history_until_something_is_archived():
    run = Run()
    e = Events()
    run(e.fill("BUY", 1, 100, SYM))
    hot, history = encode_split(run.state())
    assert history == []
    assert encode_state(decode_state(hot)) == encode_state(run.state())


def test_a_missing_or_other_history_blob_is_refused_not_read_as_empty():
    run = Run()
    e = Events()
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
    hot, [(name, archive)] = encode_split(run.state())
    with pytest.raises(StateDecodeError, match="missing"):
        decode_state(hot)
    with pytest.raises(StateDecodeError, match="missing"):
        decode_state(hot, {}.get)
    other = archive.replace(b"TLA1 1 ", b"TLA1 3 ", 1)
    with pytest.raises(StateDecodeError, match="not version 1"):
        decode_state(hot, {name: other}.get)
    with pytest.raises(StateDecodeError):
        decode_state(hot, {name: archive[:archive.index(b"\n") + 9]}.get)
    assert decode_state(hot, {name: archive}.get).closed()
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
    hot, [(rname, recent)] = encode_split(run.state())
    assert rname == b"r1"
    with pytest.raises(StateDecodeError, match="recent trades .* missing"):
        decode_state(hot, {name: archive}.get)
    assert len(decode_state(hot, {name: archive, rname: recent}.get).closed()) == 2


def test_a_state_stored_whole_before_the_split_restores_and_is_split_on_its_next_write():
    run = Run()
    e = Events()
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
    whole = encode_state(run.state())
    st = decode_state(whole)  # no archive needed: everything is inline
    hot, history = encode_split(st)
    assert [name for name, _ in history] == [b"a1"]
    assert encode_state(decode_state(hot, dict(history).get)) == encode_state(st)


def test_a_hot_part_is_refused_by_a_decoder_that_predates_the_archive():
    # Its header has version 5: an older decoder (version 1 only, 2 before the log, 3
    # before compact position lines, 4 before the dedup blob) says so instead of
    # misreading its lines.
    run = Run()
    e = Events()
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
    hot, _ = encode_split(run.state())
    assert json.loads(hot[5:hot.index(b"\n", 5)])[0] == 5
    assert json.loads(encode_state(run.state())[5:].split(b"\n", 1)[0])[:1] == [5]


def test_the_blob_versions_survive_the_whole_encoding_too():
    # fold's OUT_OF_RANGE restore goes through encode_state: the next blob written
    # after it must not take the slot the stored hot part still names
    run = Run()
    e = Events()
    for _ in range(3):
        run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
        encode_split(run.state())
    run(e("fill_settled", symbol=SYM, fill_event_id="nowhere", realized_pnl="1"))
    encode_split(run.state())  # an anomaly: the log's first version
    st = run.state()
    again = decode_state(encode_state(st))
    assert (again.archive_version, again.recent_version, again.log_version) == (1, 2, 1)
    assert (st.archive_version, st.recent_version, st.log_version) == (1, 2, 1)


def _spot_events() -> list[dict]:
    """Cash flows, portfolio snapshots and anomalies (oversells), and events adding none."""
    e = Events(venue="kraken")
    out = []
    for i in range(12):
        out.append(e("cash_flow", asset="USD", amount=5 + i, flow="deposit"))
        out.append(e.fill("BUY", 1, 1, "XBT/USD", market="spot"))  # nothing for the log
        if i % 3 == 2:  # takes more than is held: an anomaly and an adjustment flow
            out.append(e.fill("SELL", 30, 1, "XBT/USD", market="spot"))
        if i % 4 == 3:  # a later interval: a portfolio snapshot
            e.n = iter(range(next(e.n) + 3600, 10**9))
    return out


def test_cash_flows_snapshots_and_anomalies_are_in_the_log_blob_written_when_they_change():
    cfg = LedgerConfig(max_cash_flows=4, max_anomalies=2, max_portfolio_snapshots=2)
    reference = Run(cfg)
    split = Run(cfg)
    store = Store()
    names = []
    seen = json.dumps([[], [], []])
    for i, ev in enumerate(_spot_events()):
        assert split(ev) == reference(ev)
        hot, history = encode_split(split.state())
        store.put(hot, history)
        logs = [name for name, _ in history if name.startswith(b"l")]
        names += logs
        st = reference.state()
        # the hot part carries none of them: not even the newest
        assert b"cashflow" not in hot and b"OVERSELL" not in hot and b"portfolio" not in hot
        if i % 2:  # a worker restarted here: only what the table holds
            split.states["acc-1"] = store.load()
        restored = store.load()
        assert _whole(restored) == _whole(st)
        assert (restored.book.flows, restored.book.snaps, restored.anomalies) == (
            st.book.flows, st.book.snaps, st.anomalies)
        now = json.dumps([st.book.flows, st.book.snaps, st.anomalies])
        assert bool(logs) == (now != seen)  # written when, and only when, they changed
        seen = now
    st = reference.state()
    assert st.book.flows and st.book.snaps and st.anomalies
    assert names == [b"l%d" % (v % 2) for v in range(1, len(names) + 1)]  # alternating
    assert len(names) < len(_spot_events())  # not every write: only when they change


def test_an_unchanged_log_is_not_written_again():
    e = Events(venue="kraken")
    run = Run()

    def logs():
        return [name for name, _ in encode_split(run.state())[1] if name.startswith(b"l")]

    run(e("cash_flow", asset="USD", amount=5, flow="deposit"))
    assert logs() == [b"l1"]
    assert logs() == []
    run(e.fill("BUY", 1, 1, "XBT/USD", market="spot"))  # books no flow, no anomaly
    assert logs() == []
    run(e("cash_flow", asset="USD", amount=5, flow="deposit"))
    assert logs() == [b"l0"]


def test_a_hot_part_written_before_the_log_still_decodes_and_moves_them_to_a_log():
    # A version 2 hot part kept flows, snapshots (book) and anomalies (cold line) inline:
    # with nothing archived (and no position line) it is the whole encoding under header
    # version 2, split. (tests/fixtures/state_codec_before_v4.json has one with positions.)
    e = Events(venue="kraken")
    run = Run()
    run(e("cash_flow", asset="USD", amount=5, flow="deposit"),
        e("cash_flow", asset="USD", amount=-8, flow="withdrawal"))  # an oversell: an anomaly
    st = run.state()
    assert st.book.flows and st.book.snaps and st.anomalies and not st.closed_trades
    whole = encode_state(st)
    nl = whole.index(b"\n", 5)
    h = json.loads(whole[5:nl])
    h[0], h[27] = 2, 1
    del h[32:]
    old = whole[:5] + json.dumps(h, separators=(",", ":")).encode() + whole[nl:]
    restored = decode_state(old)
    assert encode_state(restored) == whole
    hot, history = encode_split(restored)
    assert [name for name, _ in history] == [b"l1"]
    assert _whole(decode_state(hot, dict(history).get)) == _whole(st)


def test_a_missing_or_other_log_blob_is_refused_not_read_as_empty():
    e = Events(venue="kraken")
    run = Run()
    run(e("cash_flow", asset="USD", amount=5, flow="deposit"))
    hot, [(name, log)] = encode_split(run.state())
    with pytest.raises(StateDecodeError, match="log .* missing"):
        decode_state(hot, {}.get)
    with pytest.raises(StateDecodeError, match="not version 1"):
        decode_state(hot, {name: log.replace(b"TLL1 1", b"TLL1 3", 1)}.get)
    assert decode_state(hot, {name: log}.get).book.flows == run.state().book.flows


# Position lines (header version 4) and the states written before them ------------------

OLD = json.loads((Path(__file__).resolve().parents[2] / "fixtures"
                  / "state_codec_before_v4.json").read_text())


def _b64(text: str) -> bytes:
    return base64.b64decode(text)


@pytest.mark.parametrize("written", ["v2 hot", "v3 hot", "v1 whole"])
def test_states_written_before_compact_position_lines_decode_and_fold_on_exactly(written):
    # The fixture holds one account's events and what the codec of header versions 2
    # and 3 stored for them (hot part and history blobs), and its whole encoding
    # (version 1): each restores the state the fold reaches now, which folds on exactly.
    events = OLD["events"]
    reference = Run()
    reference(*events)
    kind, how = written.split()
    stored = OLD["v3" if kind == "v1" else kind]
    blobs = {name.encode(): _b64(blob) for name, blob in stored["blobs"].items()}
    raw = _b64(stored["whole" if how == "whole" else "hot"])
    assert json.loads(raw[5:raw.index(b"\n", 5)])[0] == int(kind[1])
    restored = decode_state(raw, blobs.get)
    assert restored.positions and restored.closed_trades and restored.anomalies
    assert _whole(restored) == _whole(reference.state())
    resumed = Run()
    resumed.states["acc-1"] = restored
    e = Events()
    e.n = iter(range(100, 200))
    more = [e.fill("SELL", 1, 110, "BTCUSDT"), e.fill("BUY", 1, 90, "SOLUSDT", fee="0.01"),
            e("fill_settled", symbol="BTCUSDT", fill_event_id="acc-1-3", realized_pnl="1")]
    for ev in more:
        assert resumed(ev) == reference(ev)
    assert _whole(resumed.state()) == _whole(reference.state())


def _position_with_everything_off_default() -> Position:
    legs = [Leg("e1", "o1", "open", Decimal("-0.0"), Decimal("1E+2"), Decimal("0.0"),
                Decimal("0"), Decimal("-0"), "exchange", Decimal("0"), 0, ["flip"]),
            Leg("e2", "", "increase", Decimal("2"), Decimal("3"), Decimal("0"),
                Decimal("0.10"), Decimal("0"), "kernel_estimate", None, 7, [])]
    trade = Trade("t1", 3, "XBT/USD", "LONG", "LONG", "spot", "e0",
                  datetime(2026, 1, 5, 9, tzinfo=UTC), "tag", False, Decimal("0.0"),
                  Decimal("-1"), legs, 2)
    return Position("XBT/USD", "LONG", "spot", Decimal("-2.50"), Decimal("3"),
                    Decimal("2.5"), True, Decimal("1"), Decimal("0"), Decimal("0.0"),
                    Decimal("1"), trade)


def _fields(p: Position) -> list:
    t = p.trade
    return [p.symbol, p.position_side, p.market, str(p.qty), str(p.avg), str(p.basis_qty),
            p.basis_missing, str(p.realized), str(p.fees), str(p.funding), str(p.leverage),
            None if t is None else t.to_json()]


@pytest.mark.parametrize("case", ["off default", "defaults", "flat", "no legs"])
def test_a_position_line_restores_every_field_exactly(case):
    p = _position_with_everything_off_default()
    if case == "defaults":  # what the fold writes most: everything left out that can be
        p = Position("BTCUSDT", "BOTH", qty=Decimal("-3"), avg=Decimal("5"),
                     basis_qty=Decimal("3"), fees=Decimal("0.2"))
        p.trade = Trade("t2", 1, "BTCUSDT", "BOTH", "SHORT", "futures", "e5",
                        datetime(2026, 1, 5, 9, tzinfo=UTC), "", fees=Decimal("0.2"),
                        legs=[Leg("e5", "o5", "open", Decimal("3"), Decimal("5"), Decimal("0"),
                                  Decimal("0.2"), Decimal("0"), "kernel_estimate", None, 0,
                                  [])])
    elif case == "flat":
        p.trade = None
    elif case == "no legs":
        assert p.trade is not None
        p.trade.legs.clear()
    line = p.to_json()
    again = _decode_position_line(json.loads(line))
    assert _fields(again) == _fields(p)
    assert again.to_json() == line
    if case == "defaults":
        assert line == (b'["BTCUSDT","-3","5","0","0.2","1",["t2",1,"SHORT",'
                        b'1767603600,[["e5","o5","o","3","5","0.2"]]]]')


@pytest.mark.parametrize("ts", [datetime(2026, 1, 5, 9, tzinfo=UTC),
                                datetime(2026, 1, 5, 9, 0, 0, 250000, tzinfo=UTC)])
def test_an_open_trade_time_is_whole_seconds_in_a_line_when_it_can_be_and_text_otherwise(ts):
    p = Position("X", "BOTH", qty=Decimal("1"), avg=Decimal("2"), basis_qty=Decimal("1"))
    p.trade = Trade("t", 1, "X", "BOTH", "LONG", "futures", "e0", ts, "")
    line = p.to_json()
    written = json.loads(line)[6][3]
    assert written == (1767603600 if not ts.microsecond else ts.isoformat())
    again = _decode_position_line(json.loads(line)).trade
    assert again.open_ts == ts and again.open_ts.isoformat() == ts.isoformat()
    if not ts.microsecond:  # a line written before version 5 gives it as text: read the same
        old = line.replace(b"1767603600", b'"2026-01-05T09:00:00+00:00"')
        assert _decode_position_line(json.loads(old)).trade.open_ts == ts


def test_a_leg_action_is_one_letter_in_a_position_line_and_read_either_way():
    # since header version 5 the fold's actions are one letter; a line written before
    # spells them in full and is read the same
    legs = [Leg(f"e{i}", "", a, Decimal("1"), Decimal("2"), Decimal("0"), Decimal("0"),
                Decimal("0"), "kernel_estimate", None, 0, [])
            for i, a in enumerate(["open", "increase", "reduce", "flip", "close", "odd"])]
    p = Position("X", "BOTH", qty=Decimal("1"), avg=Decimal("2"), basis_qty=Decimal("1"))
    p.trade = Trade("t", 1, "X", "BOTH", "LONG", "futures", "e0",
                    datetime(2026, 1, 5, 9, tzinfo=UTC), "", legs=legs)
    line = p.to_json()
    assert [leg[2] for leg in json.loads(line)[6][4]] == ["o", "i", "r", "f", "c", "odd"]
    spelled = line.replace(b'"o",', b'"open",').replace(b'"i",', b'"increase",')
    for raw in (line, spelled):
        again = _decode_position_line(json.loads(raw))
        assert [leg.action for leg in again.trade.legs] == [
            "open", "increase", "reduce", "flip", "close", "odd"]


# The dedup blob (header version 5) and the hot parts written before it --------------

V4 = json.loads((Path(__file__).resolve().parents[2] / "fixtures"
                 / "state_codec_v4.json").read_text())


def test_a_hot_part_whose_older_ring_slots_are_in_its_archive_decodes_and_moves_them():
    # The fixture: one account's events and what the codec of header version 4 stored
    # for them, its older ring slots (some evicted since) inside the archive.
    cfg = LedgerConfig(dedup_window=V4["dedup_window"])
    reference = Run(cfg)
    reference(*V4["events"])
    store = Store({name.encode(): _b64(blob) for name, blob in V4["v4"]["blobs"].items()})
    store["hot"] = _b64(V4["v4"]["hot"])
    header = json.loads(store["hot"][5:store["hot"].index(b"\n", 5)])
    assert header[0] == 4 and header[28] > 0  # slots of the archive's ring evicted since
    restored = store.load()
    assert restored.archived_slots > 0
    assert _whole(restored) == _whole(reference.state())
    # the next write moves the whole ring to a dedup blob; the archive stays as it is
    hot, history = encode_split(restored)
    assert [name for name, _ in history] == [b"d1"]
    store.put(hot, history)
    again = store.load()
    assert json.loads(hot[5:hot.index(b"\n", 5)])[0] == 5
    assert _whole(again) == _whole(reference.state())
    resumed = Run(cfg)
    resumed.states["acc-1"] = again
    for ev in V4["events"][-V4["dedup_window"]:]:  # the window survived the move
        assert resumed(ev) == [] and resumed.statuses[-1] == "duplicate"
    e = Events()
    e.n = iter(range(500, 600))
    for ev in [e.fill("SELL", 1, 110, SYM), e.fill("BUY", 1, 90, SYM)]:
        assert resumed(ev) == reference(ev)


def test_the_hot_part_carries_at_most_ring_tail_slots_and_the_dedup_blob_the_rest():
    run = Run()
    store = Store()
    sizes = []
    for ev in _events(4 * RING_TAIL):
        run(ev)
        hot, history = encode_split(run.state())
        store.put(hot, history)
        h = json.loads(hot[5:hot.index(b"\n", 5)])
        sizes.append(h[24])
        for name, blob in history:
            if name.startswith(b"d"):  # the whole ring, as it is now
                assert blob.endswith(bytes(run.state().ring))
    assert max(sizes) <= RING_TAIL * 16 and min(sizes) == 0
    assert store.load().ring == run.state().ring


def test_a_missing_truncated_or_other_dedup_blob_is_refused():
    run = Run()
    store = Store()
    for ev in _events(RING_TAIL + 2):
        run(ev)
        store.put(*encode_split(run.state()))
    name = next(n for n in store if n != "hot" and n.startswith(b"d"))
    blob = store.pop(name)
    with pytest.raises(StateDecodeError, match="dedup ring .* missing"):
        store.load()
    store[name] = blob[:-3]
    with pytest.raises(StateDecodeError, match="truncated"):
        store.load()
    store[name] = blob.replace(b"TLD1 1 ", b"TLD1 3 ", 1)
    with pytest.raises(StateDecodeError, match="not version 1"):
        store.load()
    store[name] = blob
    assert store.load().ring == run.state().ring
