"""Faust commits nothing past a record let go at a rebalance until it is read again.

Drives Faust's own ``Consumer._new_offset`` (faust-streaming 0.15) on its own
bookkeeping (acknowledged offsets, gaps, committed offsets), with and without
the guard of streams/infra/faust_commit.py.
"""

import logging
from collections import defaultdict, namedtuple

from faust.transport.consumer import Consumer
from intervaltree import IntervalTree

from streams.infra import faust_commit

TP = namedtuple("TP", "topic partition")
P0 = TP("venue.events", 0)
Msg = namedtuple("Msg", "tp offset")

#: Faust's own choice of the offset to commit, without the guard
FAUST = getattr(Consumer._new_offset, "__wrapped__", Consumer._new_offset)
GUARDED = faust_commit.below_held(FAUST)


class Books:
    """The part of Faust's consumer ``_new_offset`` reads and writes."""

    def __init__(self, committed=None, acked=(), gaps=(), read=None):
        self._acked = defaultdict(list)
        self._acked_index = defaultdict(set)
        self._gap = defaultdict(IntervalTree)
        self._committed_offset = defaultdict(lambda: None)
        self._committed_offset[P0] = committed
        self._read_offset = {P0: read} if read is not None else {}
        for offset in acked:
            self.ack(offset)
        for begin, end in gaps:
            self._gap[P0].addi(begin, end)

    def ack(self, offset):  # what Consumer.ack records
        self._acked_index[P0].add(offset)
        self._acked[P0].append(offset)


def test_faust_alone_commits_over_a_single_unacknowledged_offset_above_the_committed_one():
    # What the guard is for: 31 let go, 32 and 33 acknowledged, 31 committed.
    assert FAUST(Books(committed=31, acked=[32, 33]), P0) == 34
    # ... and over anything below the first acknowledged one with nothing committed.
    assert FAUST(Books(committed=None, acked=[5, 6, 7]), P0) == 8


def test_a_let_go_record_holds_the_commit_until_it_is_acknowledged():
    books = Books(committed=31, acked=[32, 33])
    faust_commit.hold(books, Msg(P0, 31))
    assert GUARDED(books, P0) is None
    assert books._acked[P0] == [32, 33]  # Faust's books untouched while held
    books.ack(31)  # read again after the seek, folded (or answered duplicate)
    assert GUARDED(books, P0) == 34
    assert faust_commit.held(books) == {}


def test_nothing_committed_and_records_let_go_from_the_start():
    books = Books(committed=None, acked=[5, 6, 7])
    for offset in range(5):
        faust_commit.hold(books, Msg(P0, offset))
    assert GUARDED(books, P0) is None
    for offset in range(4):
        books.ack(offset)
    assert GUARDED(books, P0) == 4  # 0..3 acknowledged: the run stops below 4
    books.ack(4)
    assert GUARDED(books, P0) == 8


def test_a_run_that_starts_below_the_held_offset_commits_up_to_it():
    books = Books(committed=30, acked=[30, 31, 33])
    faust_commit.hold(books, Msg(P0, 32))
    assert GUARDED(books, P0) == 32
    assert faust_commit.held(books)[P0].keys() == {32}


def test_an_offset_another_owner_committed_past_is_released():
    books = Books(committed=40, acked=[41])
    faust_commit.hold(books, Msg(P0, 12))
    assert GUARDED(books, P0) == FAUST(Books(committed=40, acked=[41]), P0)
    assert faust_commit.held(books) == {}


def test_a_gap_is_no_proof_that_a_held_record_is_gone():
    # 99 and 101 let go, 100 a hole: re-reading 99, then 101, records Faust's gap
    # [100, 102), which covers 101 although it exists. Both stay held.
    books = Books(committed=99, acked=[102], gaps=[(100, 102)], read=99)
    faust_commit.hold(books, Msg(P0, 99))
    faust_commit.hold(books, Msg(P0, 101))
    assert GUARDED(books, P0) is None
    assert faust_commit.held(books)[P0].keys() == {99, 101}


def test_a_record_read_past_and_never_folded_is_released_after_the_limit(monkeypatch,
                                                                         caplog):
    # Deleted by retention while held, or dropped by the consumer: read past since the
    # seek (read offset 40), never acknowledged.
    books = Books(committed=31, acked=[32], read=40)
    faust_commit.hold(books, Msg(P0, 31))
    assert GUARDED(books, P0) is None  # the clock starts now
    monkeypatch.setattr(faust_commit, "HOLD_LIMIT_S", -1.0)
    with caplog.at_level(logging.WARNING, logger=faust_commit.__name__):
        assert GUARDED(books, P0) == 33
    assert "was read past but not folded" in caplog.text


def test_the_clock_does_not_run_while_the_record_cannot_be_read_again(monkeypatch):
    monkeypatch.setattr(faust_commit, "HOLD_LIMIT_S", -1.0)
    # Revoked or restoring: no read offset, nothing committed known, late acks waiting.
    books = Books(committed=None, acked=[32, 33])
    faust_commit.hold(books, Msg(P0, 31))
    assert GUARDED(books, P0) is None and GUARDED(books, P0) is None
    # Sought back to 31: read offset 31, not past it.
    books._read_offset[P0] = 31
    assert GUARDED(books, P0) is None and GUARDED(books, P0) is None
    assert faust_commit.held(books)[P0] == {31: None}


def test_a_record_held_again_starts_its_clock_over():
    books = Books(committed=31, acked=[32], read=40)
    faust_commit.hold(books, Msg(P0, 31))
    assert GUARDED(books, P0) is None
    assert faust_commit.held(books)[P0][31] is not None  # read past: timed
    faust_commit.hold(books, Msg(P0, 31))  # the re-read copy let go at another rebalance
    assert faust_commit.held(books)[P0][31] is None


def test_install_wraps_fausts_choice_once():
    faust_commit.install()
    first = Consumer._new_offset
    faust_commit.install()
    assert Consumer._new_offset is first
    assert first.__wrapped__ is FAUST
