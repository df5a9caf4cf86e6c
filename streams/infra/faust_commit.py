"""Faust never commits past a record the worker let go at a rebalance until it is read again.

Owns: the one correction to Faust's (faust-streaming 0.15) choice of the
offset to commit. Must not touch: anything else of Faust's consumer.

A record a rebalance crossed is let go unfolded (``Worker._not_stored``,
docs/operations.md "A batch folded across a rebalance"): it is marked
acknowledged so that Faust does not acknowledge it, and the seek that ends
every rebalance reads it again from the committed offset. That is safe only
if nothing commits past it before it is read again, and Faust's commit
(``Consumer._new_offset``: the longest run of consecutive acknowledged
offsets) can:

- it skips a single unacknowledged offset just above the committed one:
  with 31 committed, 31 let go and 32, 33 acknowledged, it commits 34
  (its read offset after a seek names the last record read, its committed
  offset the next one to read, and the check between them is off by one);
- it checks nothing when a partition has no committed offset (0 counts as
  none): records 0..4 let go and 5..7 acknowledged commit 8.

A crash, or a rebalance that moves the partition, before the record is read
again then loses it: the next owner starts above it.

``hold`` records each let-go record's partition and offset, and the wrapped
``_new_offset`` commits nothing of a partition whose acknowledged run would
pass the lowest offset still held. A held offset is released when:

- its record is acknowledged (read again and folded, or answered duplicate);
- the partition's committed offset is above it (another owner did so);
- the consumer has read past it since the partition's latest seek and its
  record has still not been acknowledged ``HOLD_LIMIT_S`` later (a warning
  names it; ``twinledger verify``'s fold check then shows whether it was
  lost): the record no longer exists (deleted by retention while held), or
  the consumer dropped it. A record that cannot be read again thus never
  stops the partition's commits for good, and the clock does not run while
  the record cannot be read again anyway (the partition revoked, restoring
  its tables, or not yet read that far): Faust's read offset then lies at
  or below it (a seek puts it back at the committed offset, a revocation
  removes it).

A gap Faust records is no proof that a held record is gone: Faust's gap
``[r + 1, offset + 1)`` covers the first record read after a hole too.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

_INSTALLED = "_twinledger_commit_below_held"
#: on a consumer: {partition: {offset held: time.monotonic() since the consumer has read
#: past it, None while it has not}}
_HELD = "_twinledger_held_offsets"
#: how long a held record may stay unacknowledged once the consumer has read past it
#: (a re-read record is folded within seconds)
HOLD_LIMIT_S = 300.0


def held(consumer: Any) -> dict[Any, dict[int, float | None]]:
    """The offsets ``consumer`` holds back, by partition (created on first use)."""
    found: dict[Any, dict[int, float | None]] | None = consumer.__dict__.get(_HELD)
    if found is None:
        found = consumer.__dict__[_HELD] = {}
    return found


def hold(consumer: Any, message: Any) -> None:
    """Commit nothing of ``message``'s partition past it until it is read again."""
    # Held again (a re-read copy let go at another rebalance): its clock starts over.
    held(consumer).setdefault(message.tp, {})[message.offset] = None


def _release(consumer: Any, tp: Any, offsets: dict[int, float | None]) -> None:
    committed = consumer._committed_offset.get(tp)
    acked = consumer._acked_index.get(tp, ())
    read = consumer._read_offset.get(tp)
    now = time.monotonic()
    for offset, since in list(offsets.items()):
        if offset in acked or (committed is not None and offset < committed):
            del offsets[offset]
        elif read is None or read <= offset:
            offsets[offset] = None  # not read past since the latest seek: cannot be late
        elif since is None:
            offsets[offset] = now
        elif now - since > HOLD_LIMIT_S:
            log.warning("%s[%d]@%d, let go at a rebalance, was read past but not folded "
                        "in %.0f s: committing past it; `twinledger verify` shows whether "
                        "it was lost", tp.topic, tp.partition, offset, HOLD_LIMIT_S)
            del offsets[offset]


def below_held(new_offset: Callable[[Any, Any], int | None]) -> Callable[[Any, Any], int | None]:
    """Faust's ``Consumer._new_offset``, never passing an offset ``hold`` holds."""

    @functools.wraps(new_offset)
    def new_offset_below_held(self: Any, tp: Any) -> int | None:
        holding = self.__dict__.get(_HELD)
        offsets = holding.get(tp) if holding else None
        if offsets:
            _release(self, tp, offsets)
            if offsets:
                acked = self._acked.get(tp)
                if acked and min(acked) > min(offsets):
                    # The run would start above a held offset, which Faust may skip.
                    # A run starting below it stops below it: it is not acknowledged.
                    return None
            else:
                del holding[tp]
        return new_offset(self, tp)

    return new_offset_below_held


def install() -> None:
    """Make Faust's consumer commit as above (once per process)."""
    from faust.transport.consumer import Consumer

    if getattr(Consumer, _INSTALLED, False):
        return
    Consumer._new_offset = below_held(  # type: ignore[method-assign,assignment]
        Consumer._new_offset)
    setattr(Consumer, _INSTALLED, True)
