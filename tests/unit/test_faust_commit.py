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

    def __init__(self, committed=None, acked=(), gaps=()):
        self._acked = defaultdict(list)
        self._acked_index = defaultdict(set)
        self._gap = defaultdict(IntervalTree)
        self._committed_offset = defaultdict(lambda: None)
        self._committed_offset[P0] = committed
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


def test_a_held_record_deleted_by_retention_does_not_stop_the_commits(caplog):
    # Sought to 31, the log now starts at 50: Faust records the gap 32..50.
    books = Books(committed=31, acked=[50, 51], gaps=[(32, 51)])
    faust_commit.hold(books, Msg(P0, 31))
    with caplog.at_level(logging.WARNING, logger=faust_commit.__name__):
        assert GUARDED(books, P0) == FAUST(
            Books(committed=31, acked=[50, 51], gaps=[(32, 51)]), P0) > 50
    assert "no longer exists" in caplog.text


def test_a_record_never_read_again_is_released_after_the_hold_limit(monkeypatch, caplog):
    books = Books(committed=31, acked=[32])
    faust_commit.hold(books, Msg(P0, 31))
    assert GUARDED(books, P0) is None
    monkeypatch.setattr(faust_commit, "HOLD_LIMIT_S", -1.0)
    with caplog.at_level(logging.WARNING, logger=faust_commit.__name__):
        assert GUARDED(books, P0) == 33
    assert "was not read again" in caplog.text


def test_install_wraps_fausts_choice_once():
    faust_commit.install()
    first = Consumer._new_offset
    faust_commit.install()
    assert Consumer._new_offset is first
    assert first.__wrapped__ is FAUST
