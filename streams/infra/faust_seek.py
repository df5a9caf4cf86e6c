"""A partition the group never committed is read from its start, however early it was fetched.

Owns: the one correction to Faust's (faust-streaming 0.15) seek after a
rebalance. Must not touch: anything else of Faust's consumer.

After a rebalance Faust restores the tables, then seeks every assigned
partition to its committed offset (``Consumer.perform_seek``) before the
agent may take a record. Through aiokafka that seek moves only partitions
whose committed offset is above 0 (``AIOKafkaConsumer.seek_to_committed``:
``if offset and offset > 0``). A partition with no committed offset (a new
group, a replay after offsets were reset to 0, a partition whose last owner
had not committed yet) keeps whatever position the fetcher reached meanwhile:
the records fetched while the partition was still paused for recovery were
dropped by Faust, and the worker waited at the end of the log with every one
of them unread. Measured in the bench's scale phase (two workers joining one
group over a 50,000-event backlog): the second worker's three partitions had
their aiokafka position at the high watermark, Faust's read offset empty,
22,341 records waiting, in 4 of 7 runs; the watchdog ended it after its
stall time.

``seek_to_committed`` below keeps Faust's seek and then moves every such
source partition (not the tables' changelogs, which Faust positions itself)
to the start of its log, which is what ``auto_offset_reset="earliest"``
promises for a partition with no committed offset. A record read twice that
way is folded twice, and the second fold answers "duplicate".

Each seek then tells the hook of ``on_seek`` (in the event loop's thread)
where every partition resumes: the committed offsets the seek read, which
is where the next record of each comes from (the worker's gap check starts
there, ``Worker.note_seek``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

_INSTALLED = "_twinledger_seek_from_start"
_hook: Callable[[Mapping[Any, int | None]], None] | None = None


def on_seek(hook: Callable[[Mapping[Any, int | None]], None]) -> None:
    """Call ``hook(committed offsets by partition)`` after each seek to committed offsets.

    One hook per process (a process runs one worker): a new one replaces the last.
    """
    global _hook
    _hook = hook


def _tell(committed: Mapping[Any, int | None]) -> None:
    if _hook is None:
        return
    try:
        _hook(committed)
    except Exception:  # noqa: BLE001 - a hook must not break Faust's rebalance
        log.exception("seek hook %r failed", _hook)


def uncommitted(committed: Mapping[Any, int | None],
                is_changelog: Callable[[Any], bool]) -> list[Any]:
    """The partitions of ``committed`` a seek to committed offsets leaves where they are."""
    return sorted((tp for tp, offset in committed.items()
                   if not (offset and offset > 0) and not is_changelog(tp)),
                  key=lambda tp: (tp.topic, tp.partition))


async def seek_committed_or_start(consumer: Any, is_changelog: Callable[[Any], bool]
                                  ) -> Mapping[Any, int | None]:
    """aiokafka's ``seek_to_committed``, then the start of the log for ``uncommitted``."""
    committed: Mapping[Any, int | None] = await consumer.seek_to_committed()
    fresh = uncommitted(committed, is_changelog)
    if fresh:
        log.info("no committed offset for %s: reading them from the start of the log",
                 _names(fresh))
        await consumer.seek_to_beginning(*fresh)
    return committed


def _names(tps: Iterable[Any]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps)


def install() -> None:
    """Make Faust's aiokafka consumer thread seek as above (once per process)."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if getattr(AIOKafkaConsumerThread, _INSTALLED, False):
        return

    async def seek_to_committed(self: Any) -> Mapping[Any, int | None]:
        changelogs = self.consumer._is_changelog_tp
        committed: Mapping[Any, int | None] = await self.call_thread(
            seek_committed_or_start, self._ensure_consumer(), changelogs)
        _tell(committed)  # back in the event loop's thread: the hooks need no lock
        return committed

    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign,assignment]
    setattr(AIOKafkaConsumerThread, _INSTALLED, True)
