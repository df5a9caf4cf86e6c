"""Per-partition batches and the BEFORE/AFTER range state: the pure half of the sink.

Owns: where a batch starts and ends, the insert token, rebuilding a recorded
BEFORE range identically after a restart, and choosing the winner among
duplicate keys inside a batch. Must not touch: Kafka clients, ClickHouse or
the wall clock (callers pass ``now`` from a monotonic clock), so every rule
here is unit-tested without a broker.

The rules, per (topic, partition):

1. Records are buffered in offset order as they are consumed.
2. A batch is cut when the buffer holds ``max_rows`` records or its oldest
   record waited ``max_seconds``; it covers offsets ``first..last`` and its
   token is ``<topic>-<partition>-<first>-<last>``.
3. A range recovered in state BEFORE ``[F, L]`` overrides rule 2: when the
   first record fetched after assignment has offset ``F`` (the normal case:
   offsets are committed only after a range is AFTER), the batch is exactly
   ``F..L`` whatever the size and time limits, so it carries the same token
   and the same records as the attempt that was interrupted. When the first
   offset is not ``F`` (an operator reset offsets, or retention deleted
   ``F``), the range cannot be rebuilt; it is abandoned and the existence
   filter alone keeps the table exact.
4. Inside a batch the first record (lowest offset) of each
   ``(account_id, event_id)`` wins; later copies are duplicates.
5. A kept key already in its table is not inserted again: the row is this
   record's own (an interrupted attempt of the same batch inserted it) or
   another record's (a duplicate).
6. Batches of different partitions due together form a group that shares
   its bookkeeping; a key two batches of a group carry, not yet in the
   table, is inserted by the first batch in group order and is a duplicate
   in the others.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

BEFORE = "BEFORE"
AFTER = "AFTER"


class RecoveryOutcome(StrEnum):
    REBUILT = "rebuilt"
    ABANDONED = "abandoned"


class Msg(NamedTuple):
    """What the sink keeps of a Kafka record (a copy, so tests can build them freely).

    A named tuple, like :class:`Candidate`: one is made per record, and a tuple
    is made in a third of the time of a frozen dataclass.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None


@dataclass(frozen=True)
class RangeState:
    """The last recorded range of a (group, topic, partition)."""

    first: int
    last: int
    state: str  # BEFORE | AFTER
    version: int


@dataclass(frozen=True)
class Batch:
    topic: str
    partition: int
    first: int
    last: int
    records: tuple[Msg, ...]
    rebuilt: bool = False  # True when this is the replay of a recovered BEFORE range

    @property
    def token(self) -> str:
        return batch_token(self.topic, self.partition, self.first, self.last)


def batch_token(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}-{partition}-{first}-{last}"


@dataclass
class PartitionBuffer:
    """Records consumed from one partition and not yet part of a batch."""

    topic: str
    partition: int
    records: list[Msg] = field(default_factory=list)
    oldest_at: float | None = None  # monotonic time the oldest buffered record arrived
    recovering: RangeState | None = None  # a BEFORE range to rebuild
    version: int = 0  # last range-state version written or read for this partition
    seen_first: bool = False
    outcomes: list[tuple[RecoveryOutcome, RangeState]] = field(default_factory=list)

    def recover(self, state: RangeState | None) -> None:
        """Install the state read at assignment; only BEFORE needs work."""
        self.version = state.version if state else 0
        self.recovering = state if state is not None and state.state == BEFORE else None
        self.seen_first = False
        self.records.clear()
        self.oldest_at = None

    def add(self, msg: Msg, now: float) -> None:
        if self.records and msg.offset <= self.records[-1].offset:
            return  # a re-fetch after a seek: offsets only move forward inside a buffer
        if not self.seen_first:
            self.seen_first = True
            rec = self.recovering
            if rec is not None and msg.offset != rec.first:
                self.outcomes.append((RecoveryOutcome.ABANDONED, rec))
                self.recovering = None
        if not self.records:
            self.oldest_at = now
        self.records.append(msg)

    def cut(self, now: float, max_rows: int, max_seconds: float, force: bool = False
            ) -> Batch | None:
        """The next batch if one is due (``force``: everything buffered, e.g. at stop)."""
        if not self.records:
            return None
        rec = self.recovering
        if rec is not None:
            # Rule 3: exactly F..L, however long it takes to fetch up to L.
            if self.records[-1].offset < rec.last:
                return None
            n = sum(1 for m in self.records if m.offset <= rec.last)
            self.recovering = None
            self.outcomes.append((RecoveryOutcome.REBUILT, rec))
            return self._take(n, now, rebuilt=True, last=rec.last)
        if len(self.records) >= max_rows:
            return self._take(max_rows, now)
        assert self.oldest_at is not None
        if force or now - self.oldest_at >= max_seconds:
            return self._take(len(self.records), now)
        return None

    def waiting_for_rebuild(self) -> bool:
        return self.recovering is not None and bool(self.records)

    def seconds_until_due(self, now: float, max_seconds: float) -> float | None:
        if not self.records or self.oldest_at is None or self.recovering is not None:
            return None
        return max(0.0, self.oldest_at + max_seconds - now)

    def _take(self, n: int, now: float, rebuilt: bool = False, last: int | None = None
              ) -> Batch:
        taken, self.records = self.records[:n], self.records[n:]
        self.oldest_at = now if self.records else None
        return Batch(self.topic, self.partition, taken[0].offset,
                     taken[-1].offset if last is None else last, tuple(taken), rebuilt)


class Candidate(NamedTuple):
    """A row that may be inserted: its table, key and values (one per record)."""

    table: str
    account_id: str
    event_id: str
    row: tuple[Any, ...]
    offset: int


def first_wins(candidates: Iterable[Candidate]) -> tuple[list[Candidate], list[Candidate]]:
    """Rule 4: (kept, duplicates); kept is in the input order (offset order)."""
    seen: dict[str, set[tuple[str, str]]] = {}  # table -> keys: no 3-tuple per record
    kept: list[Candidate] = []
    dups: list[Candidate] = []
    for c in candidates:
        keys = seen.get(c.table)
        if keys is None:
            keys = seen[c.table] = set()
        k = (c.account_id, c.event_id)
        if k in keys:
            dups.append(c)
        else:
            keys.add(k)
            kept.append(c)
    return kept, dups


class Split(NamedTuple):
    """Where each kept candidate of one batch goes (rules 5 and 6), in offset order."""

    fresh: list[Candidate]      # to insert
    own: list[Candidate]        # already in the table as this record's row (an earlier attempt)
    elsewhere: list[Candidate]  # already in the table as another record's row
    claimed: list[Candidate]    # an earlier batch of the same group inserts this key


Coords = tuple[str, int, int]  # (topic, partition, offset) of the record a row came from


def split_batch(kept: Iterable[Candidate], topic: str, partition: int,
                existing: Mapping[str, Mapping[tuple[str, str], Coords]],
                claimed: dict[str, set[tuple[str, str]]]) -> Split:
    """Rules 5 and 6 for one batch of a group: the table first, then the group.

    ``existing`` is table -> (account_id, event_id) -> coordinates of the row
    already there; ``claimed`` is table -> (account_id, event_id) of what
    earlier batches of the group insert, and gets this batch's fresh keys.
    """
    out = Split([], [], [], [])
    fresh, own, elsewhere, taken = out
    table: str | None = None
    found_in: Mapping[tuple[str, str], Coords] = {}
    claimed_in: set[tuple[str, str]] = set()
    for c in kept:
        if c.table != table:  # a batch is mostly one table: look its maps up once per run
            table = c.table
            found_in = existing.get(table, {})
            claimed_in = claimed.setdefault(table, set())
        key = (c.account_id, c.event_id)
        found = found_in.get(key)
        if found is not None:
            (own if found == (topic, partition, c.offset) else elsewhere).append(c)
        elif key in claimed_in:
            taken.append(c)
        else:
            fresh.append(c)
    for c in fresh:
        claimed[c.table].add((c.account_id, c.event_id))
    return out
