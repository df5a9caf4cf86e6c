"""Liveness of the worker: offsets never folded, and an agent that stopped taking events.

Owns: two small pure state machines the Faust app drives, so their rules are
testable without a broker or a clock:

- :class:`OffsetTracker` follows the next offset the agent should see on each
  source partition. Offsets of ``venue.events`` are dense (it is never
  compacted and we write no transactions), so an offset that jumps forward
  means records were deleted under the worker — by a retention or by
  delete-records — after the consumer's fetch position fell below the log
  start and the client reset it to the earliest offset still there. That
  reset is logged by the client at INFO only; the tracker turns it into a
  :class:`Gap` that the worker reports loudly and counts.
- :class:`Watchdog` decides, from "when did the agent last take a batch" and
  "how many records wait on its partitions", whether the worker is live,
  stalled (readiness fails, a metric says so) or stalled for longer than the
  grace (the process exits non-zero so a supervisor restarts it).

Must not touch: Kafka clients, Faust or the clock (callers pass ``now``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Gap:
    """Offsets ``first``..``last`` (inclusive) of ``partition`` that were never seen."""

    partition: int
    first: int
    last: int

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass
class OffsetTracker:
    """Next expected offset per source partition; reports forward jumps as gaps."""

    next_offset: dict[int, int] = field(default_factory=dict)
    #: partition -> (next offset, log start) seen at the last check, to confirm a gap
    _below_start: dict[int, tuple[int, int]] = field(default_factory=dict)

    def expect(self, partition: int, offset: int | None) -> None:
        """At assignment: the group's committed offset is where reading resumes.

        An offset the agent already saw wins: expectations may arrive after
        the first batch of a partition.
        """
        if offset is not None and offset >= 0 and partition not in self.next_offset:
            self.next_offset[partition] = offset

    def forget(self, partition: int) -> None:
        """At revocation: another worker owns the partition now."""
        self.next_offset.pop(partition, None)

    def observe(self, partition: int, offset: int) -> Gap | None:
        """The agent took ``offset``; a gap if offsets were skipped before it.

        A smaller or equal offset is a redelivery (after a crash or a
        rebalance) and is no gap; the fold recognises the events themselves.
        """
        expected = self.next_offset.get(partition)
        if expected is None or offset < expected:
            if expected is None or offset + 1 > expected:
                self.next_offset[partition] = offset + 1
            return None
        self.next_offset[partition] = offset + 1
        if offset > expected:
            return Gap(partition, expected, offset - 1)
        return None

    def check_log_start(self, partition: int, log_start: int) -> Gap | None:
        """A gap when the log now starts after the next offset the agent needs.

        Records below the log start are gone; the client will skip to it. The
        gap is reported only when the same position was below the same log
        start at the previous check too, so records the consumer had already
        fetched (and the agent is still working through) are not reported.
        """
        expected = self.next_offset.get(partition)
        if expected is None or expected >= log_start:
            self._below_start.pop(partition, None)
            return None
        seen = (expected, log_start)
        if self._below_start.get(partition) != seen:
            self._below_start[partition] = seen
            return None
        del self._below_start[partition]
        self.next_offset[partition] = log_start
        return Gap(partition, expected, log_start - 1)

    def lag(self, end_offsets: dict[int, int], committed: dict[int, int | None],
            log_starts: dict[int, int] | None = None) -> int:
        """Records waiting on the partitions in ``end_offsets`` (their end offsets).

        Reading position is what the agent saw last, else the committed offset,
        else the start of the log; records below the log start are not waiting
        (they are gone, see :meth:`check_log_start`).
        """
        total = 0
        starts = log_starts or {}
        for partition, end in end_offsets.items():
            pos = self.next_offset.get(partition)
            if pos is None:
                pos = committed.get(partition) or 0
            total += max(0, end - max(pos, starts.get(partition, 0)))
        return total


@dataclass
class Watchdog:
    """An agent that takes nothing for ``stall_after`` s while records wait is stalled.

    Stalled for ``grace`` s more, the verdict is ``exit``: a worker that does
    not fold must not look healthy to its supervisor. ``stall_after <= 0``
    turns the watchdog off.
    """

    stall_after: float
    grace: float
    last_progress: float = 0.0
    stalled_since: float | None = None

    def progressed(self, now: float) -> None:
        self.last_progress = now
        self.stalled_since = None

    def check(self, lag: int, now: float) -> str:
        """``ok``, ``stalled`` or ``exit`` for the records waiting (``lag``) at ``now``."""
        if self.stall_after <= 0:
            return "ok"
        if lag <= 0:
            # Nothing waits: an idle worker is not a stalled one, and the time
            # without events counts only from when records began to wait.
            self.last_progress = now
            self.stalled_since = None
            return "ok"
        if now - self.last_progress < self.stall_after:
            self.stalled_since = None
            return "ok"
        if self.stalled_since is None:
            self.stalled_since = now
        if now - self.stalled_since >= self.grace:
            return "exit"
        return "stalled"
