"""Batch boundaries, tokens, rebuilding a BEFORE range, and in-batch winners."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sinks.batching import (
    AFTER,
    BEFORE,
    Candidate,
    Msg,
    PartitionBuffer,
    RangeState,
    RecoveryOutcome,
    batch_token,
    first_wins,
    split_batch,
)


def msgs(offsets: list[int], topic: str = "venue.events", partition: int = 2) -> list[Msg]:
    return [Msg(topic, partition, o, b"k", b"v%d" % o) for o in offsets]


def buffer_with(offsets: list[int], state: RangeState | None = None, now: float = 0.0
                ) -> PartitionBuffer:
    buf = PartitionBuffer("venue.events", 2)
    buf.recover(state)
    for m in msgs(offsets):
        buf.add(m, now)
    return buf


def test_token_names_topic_partition_and_range() -> None:
    assert batch_token("venue.events", 2, 10, 19) == "venue.events-2-10-19"


def test_cut_by_size_in_chunks_of_max_rows() -> None:
    buf = buffer_with(list(range(10, 35)))
    first = buf.cut(0.0, max_rows=10, max_seconds=60)
    second = buf.cut(0.0, max_rows=10, max_seconds=60)
    assert first is not None and second is not None
    assert (first.first, first.last, first.token) == (10, 19, "venue.events-2-10-19")
    assert (second.first, second.last) == (20, 29)
    assert buf.cut(0.0, max_rows=10, max_seconds=60) is None  # 5 left, not due yet
    assert [m.offset for m in buf.records] == [30, 31, 32, 33, 34]


def test_cut_by_age_and_force() -> None:
    buf = buffer_with([5, 6, 7], now=100.0)
    assert buf.cut(100.5, max_rows=10, max_seconds=1.0) is None
    assert buf.seconds_until_due(100.5, 1.0) == 0.5
    batch = buf.cut(101.0, max_rows=10, max_seconds=1.0)
    assert batch is not None and (batch.first, batch.last) == (5, 7)
    buf2 = buffer_with([8])
    forced = buf2.cut(0.0, max_rows=10, max_seconds=60, force=True)
    assert forced is not None and forced.last == 8


def test_offsets_with_gaps_keep_first_and_last_seen() -> None:
    # Transaction markers and compaction leave gaps; the range is what was read.
    buf = buffer_with([10, 12, 15])
    batch = buf.cut(0.0, max_rows=3, max_seconds=60)
    assert batch is not None and (batch.first, batch.last, len(batch.records)) == (10, 15, 3)


def test_refetched_offsets_are_not_buffered_twice() -> None:
    buf = buffer_with([1, 2, 3])
    for m in msgs([2, 3, 4]):
        buf.add(m, 0.0)
    assert [m.offset for m in buf.records] == [1, 2, 3, 4]


def test_before_range_is_rebuilt_exactly_whatever_the_limits() -> None:
    state = RangeState(first=100, last=149, state=BEFORE, version=7)
    buf = buffer_with(list(range(100, 130)), state)
    # Not yet at 149: the size limit (10) and the age limit (0s) must not cut it short.
    assert buf.cut(1e9, max_rows=10, max_seconds=0.0) is None
    for m in msgs(list(range(130, 160))):
        buf.add(m, 0.0)
    batch = buf.cut(1e9, max_rows=10, max_seconds=0.0)
    assert batch is not None and batch.rebuilt
    assert (batch.first, batch.last, batch.token) == (100, 149, "venue.events-2-100-149")
    assert [m.offset for m in batch.records] == list(range(100, 150))
    assert buf.outcomes == [(RecoveryOutcome.REBUILT, state)]
    # Afterwards the normal limits apply again.
    nxt = buf.cut(1e9, max_rows=10, max_seconds=0.0)
    assert nxt is not None and not nxt.rebuilt and (nxt.first, nxt.last) == (150, 159)


def test_rebuilt_range_is_identical_to_the_interrupted_one() -> None:
    first_try = buffer_with(list(range(0, 40)))
    original = first_try.cut(0.0, max_rows=25, max_seconds=60)
    assert original is not None
    state = RangeState(original.first, original.last, BEFORE, 1)
    # After a restart the consumer starts again at the committed offset (= first).
    retry = buffer_with(list(range(0, 40)), state)
    rebuilt = retry.cut(0.0, max_rows=7, max_seconds=60)
    assert rebuilt is not None
    assert (rebuilt.token, rebuilt.records) == (original.token, original.records)


def test_before_range_is_abandoned_when_offsets_moved() -> None:
    state = RangeState(first=100, last=149, state=BEFORE, version=7)
    buf = buffer_with(list(range(0, 5)), state)  # an operator reset the group to 0
    batch = buf.cut(0.0, max_rows=5, max_seconds=60)
    assert batch is not None and not batch.rebuilt and (batch.first, batch.last) == (0, 4)
    assert buf.outcomes == [(RecoveryOutcome.ABANDONED, state)]


def test_after_state_needs_no_recovery_and_keeps_the_version() -> None:
    buf = buffer_with([50], RangeState(0, 49, AFTER, 12))
    assert buf.recovering is None and buf.version == 12
    assert not buf.waiting_for_rebuild()


def cand(table: str, acc: str, eid: str, offset: int) -> Candidate:
    return Candidate(table, acc, eid, (acc, eid, offset), offset)


def test_first_occurrence_wins_inside_a_batch() -> None:
    rows = [cand("t", "a", "e1", 1), cand("t", "a", "e2", 2), cand("t", "a", "e1", 3),
            cand("t", "b", "e1", 4), cand("dead_letters", "a", "e1", 5)]
    kept, dups = first_wins(rows)
    assert [c.offset for c in kept] == [1, 2, 4, 5]
    assert [c.offset for c in dups] == [3]


def test_split_batch_sorts_rows_by_the_table_then_the_group() -> None:
    existing = {"t": {("a", "e1"): ("top", 0, 1), ("a", "e2"): ("top", 1, 9)}}
    claimed = {"t": {("a", "e3")}}
    rows = [cand("t", "a", "e1", 1), cand("t", "a", "e2", 2), cand("t", "a", "e3", 3),
            cand("t", "a", "e4", 4), cand("u", "a", "e2", 5), cand("t", "z", "e2", 6)]
    split = split_batch(rows, "top", 0, existing, claimed)
    assert [c.offset for c in split.own] == [1]        # its own row, from an earlier attempt
    assert [c.offset for c in split.elsewhere] == [2]  # another record's row
    assert [c.offset for c in split.claimed] == [3]    # an earlier batch of the group has it
    assert [c.offset for c in split.fresh] == [4, 5, 6]  # keys are per table
    assert claimed == {"t": {("a", "e3"), ("a", "e4"), ("z", "e2")}, "u": {("a", "e2")}}
    # The next batch of the group finds them claimed.
    again = split_batch([cand("t", "a", "e4", 0)], "top", 1, existing, claimed)
    assert again.fresh == [] and [c.offset for c in again.claimed] == [0]


@given(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 5)), max_size=40),
       st.integers(1, 7))
def test_batches_partition_the_stream_exactly_once(keys: list[tuple[str, int]],
                                                   max_rows: int) -> None:
    """However the stream is cut, each offset lands in exactly one batch, in order."""
    buf = PartitionBuffer("t", 0)
    buf.recover(None)
    out = []
    for offset, _ in enumerate(keys):
        buf.add(Msg("t", 0, offset, None, b""), 0.0)
        while (b := buf.cut(0.0, max_rows, 60.0)) is not None:
            out.append(b)
    if (b := buf.cut(0.0, max_rows, 60.0, force=True)) is not None:
        out.append(b)
    offsets = [m.offset for b in out for m in b.records]
    assert offsets == list(range(len(keys)))
    assert all(len(b.records) <= max_rows for b in out)
