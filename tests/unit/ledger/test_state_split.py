"""Hot and cold state (``encode_split``): the hot part every write carries, the archive beside it.

Whatever the split, the state decoded from a hot part and its archive is the
state that was encoded, and the fold goes on from it exactly as from the
state it never left (same outputs, same whole encoding).
"""

from __future__ import annotations

import json

import pytest

from streams.ledger import LedgerConfig, StateDecodeError, decode_state, encode_state
from streams.ledger.state import RING_TAIL, encode_split

from ._helpers import Events, Run

SYM = "BTCUSDT"


class Store(dict):
    """An account's table keys: the hot part under 'hot', archive slots under 0 and 1."""

    writes = 0

    def put(self, hot: bytes, archive: tuple[int, bytes] | None) -> None:
        if archive is not None:
            self[archive[0]] = archive[1]
            self.writes += 1
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
    return out


def _whole(state) -> bytes:
    """``encode_state`` without the archive version (which only the split advances)."""
    blob = encode_state(state)
    nl = blob.index(b"\n", 5)
    h = json.loads(blob[5:nl])
    h[26] = 0
    return json.dumps(h).encode() + blob[nl:]


@pytest.mark.parametrize("window", [4, RING_TAIL, 1024])
def test_a_state_restored_from_its_hot_part_and_archive_folds_on_exactly(window):
    cfg = LedgerConfig(dedup_window=window, max_closed_trades=5)
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
    for ev in evs[-window:]:  # the whole window is still remembered: all duplicates
        assert split(ev) == [] and split.statuses[-1] == "duplicate"
    assert len(store.load().ring) == min(window, len(evs)) * 16


def test_the_hot_part_carries_no_closed_trade_and_at_most_the_ring_tail():
    run = Run()
    store = Store()
    for ev in _events(5 * RING_TAIL):
        run(ev)
        hot, archive = encode_split(run.state())
        store.put(hot, archive)
        h = json.loads(hot[5:hot.index(b"\n", 5)])
        assert h[27] == 1 and h[24] <= RING_TAIL * 16  # split; the ring's tail only
        lines = hot[:len(hot) - h[24]].count(b"\n")
        assert lines == 3 + h[22]  # magic, header, cold line, positions: no trade lines
    st = run.state()
    assert st.closed_trades and len(st.ring) == len(store.load().ring)
    assert len(store["hot"]) < len(encode_state(st)) / 3


def test_without_a_closed_trade_the_archive_is_written_once_per_ring_tail():
    e = Events()
    run = Run()
    store = Store()
    n = 5 * RING_TAIL
    for _ in range(n):
        run(e.fill("BUY", 1, 100, SYM))  # one open trade growing: nothing closes
        store.put(*encode_split(run.state()))
    assert store.writes == n // (RING_TAIL + 1)
    assert encode_state(store.load()) == encode_state(run.state())


def test_an_unchanged_archive_is_not_written_again():
    run = Run()
    e = Events()
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
    hot, archive = encode_split(run.state())
    assert archive is not None and archive[0] == 1  # version 1 -> slot 1
    run(e.fill("BUY", 1, 100, SYM))  # opens a trade: nothing closed, ring tail not full
    hot, archive = encode_split(run.state())
    assert archive is None


def test_a_fresh_account_needs_no_archive_until_something_is_archived():
    run = Run()
    e = Events()
    run(e.fill("BUY", 1, 100, SYM))
    hot, archive = encode_split(run.state())
    assert archive is None
    assert encode_state(decode_state(hot)) == encode_state(run.state())


def test_a_missing_or_other_archive_is_refused_not_read_as_empty():
    run = Run()
    e = Events()
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
    hot, archive = encode_split(run.state())
    assert archive is not None
    with pytest.raises(StateDecodeError, match="missing"):
        decode_state(hot)
    with pytest.raises(StateDecodeError, match="missing"):
        decode_state(hot, {}.get)
    other = archive[1].replace(b"TLA1 1 ", b"TLA1 3 ", 1)
    with pytest.raises(StateDecodeError, match="not version 1"):
        decode_state(hot, {archive[0]: other}.get)
    with pytest.raises(StateDecodeError):
        decode_state(hot, {archive[0]: archive[1][:archive[1].index(b"\n") + 9]}.get)
    assert decode_state(hot, {archive[0]: archive[1]}.get).closed()


def test_a_state_stored_whole_before_the_split_restores_and_is_split_on_its_next_write():
    run = Run()
    e = Events()
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
    whole = encode_state(run.state())
    st = decode_state(whole)  # no archive needed: everything is inline
    hot, archive = encode_split(st)
    assert archive is not None
    assert encode_state(decode_state(hot, {archive[0]: archive[1]}.get)) == \
        encode_state(st)


def test_a_hot_part_is_refused_by_a_decoder_that_predates_the_archive():
    # Its header has version 2: an older decoder (version 1 only) says so instead of
    # reading the positions' lines as closed trades.
    run = Run()
    e = Events()
    run(e.fill("BUY", 1, 100, SYM), e.fill("SELL", 1, 101, SYM))
    hot, _ = encode_split(run.state())
    assert json.loads(hot[5:hot.index(b"\n", 5)])[0] == 2
    assert json.loads(encode_state(run.state())[5:].split(b"\n", 1)[0])[0] == 1
