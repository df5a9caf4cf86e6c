"""A partition the group never committed is read from its start, however early it was fetched.

Owns: the one correction to Faust's (faust-streaming 0.15) seek after a
rebalance, and reading the committed offsets it seeks to from a group
coordinator that answered (``committed_for_certain``). Must not touch:
anything else of Faust's consumer.

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

The seek must also not race the records Faust fetched before it. Faust
resumes the source partitions, then seeks (``Recovery.on_recovery_completed``),
with its fetcher already running: a batch fetched from the old position can
be half delivered when the seek starts. Faust's drain loop (``Consumer.
_drain_messages``) then went on with that stale batch after the seek: its
records went into the stream buffer (which the resume right after the seek
clears) and moved Faust's read offset of each partition (``_read_offset``)
to the last of them, so the same records, fetched again from where the seek
put the partition, were dropped as already read ("DROPPED MESSAGE ROFF").
Seen in the crash test (``test_sigkill_worker_and_sink_mid_stream_then_restart``):
a worker restarted with no committed offset fetched offsets 0..682 of every
partition into a full buffer (4,098 records, buffer 4,096) before the seek,
the seek moved them back to 0, and the first record the agent took after it
was 683; 260 events left no snapshot.

``perform_seek`` below stops the flow first (Faust's own ``stop_flow``:
a delivery blocked on a full buffer is cancelled, and the drain loop ends
its batch at the next record), waits until the drain loop has left the
batch, and only then seeks and sets the read offsets. Every caller of
``perform_seek`` that had the flow running resumes it right after the call
(``Recovery._resume_streams``, ``Recovery.on_recovery_completed``); the third
caller (``Consumer.getmany`` with the flow stopped) had it stopped already.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

log = logging.getLogger(__name__)

_INSTALLED = "_twinledger_seek_from_start"
_IDLE = "_twinledger_drain_idle"
#: on each message Faust hands out: its app's rebalance count at that moment
_STAMP = "_twinledger_rebalances"
#: how long a seek waits for the drain loop to leave a batch fetched before it (it takes
#: milliseconds; Faust's recovery gives the whole seek ``broker_request_timeout``)
DRAIN_WAIT_S = 5.0
#: how long a seek asks again for committed offsets a group coordinator did not give, every
#: request included (``committed_for_certain``; Faust gives the whole seek
#: ``broker_request_timeout``, 90 s by default, and the seek itself needs some of it)
COMMITTED_WAIT_S = 20.0
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
    """aiokafka's ``seek_to_committed``, then the start of the log for ``uncommitted``.

    A partition aiokafka reports uncommitted is asked about again
    (``committed_for_certain``): one the coordinator does have an offset for
    is sought there instead.
    """
    committed: dict[Any, int | None] = dict(await consumer.seek_to_committed())
    fresh = uncommitted(committed, is_changelog)
    if fresh:
        confirmed = await committed_for_certain(consumer, fresh) or {}
        found = [tp for tp in fresh if (confirmed.get(tp) or 0) > 0]
        if found:
            log.warning("the group coordinator did not give the committed offsets of %s at "
                        "first (it was not answering); sought them to %s",
                        _names(found), ", ".join(str(confirmed[tp]) for tp in found))
            for tp in found:
                offset = confirmed[tp]
                consumer.seek(tp, offset)
                committed[tp] = offset
            fresh = [tp for tp in fresh if tp not in found]
    if fresh:
        log.info("no committed offset for %s: reading them from the start of the log",
                 _names(fresh))
        await consumer.seek_to_beginning(*fresh)
    return committed


async def committed_for_certain(consumer: Any, tps: list[Any]
                                ) -> dict[Any, int | None] | None:
    """The committed offsets of ``tps``, from a group coordinator that answered.

    aiokafka (0.14) reads an OffsetFetch response's partitions only: a
    response with a request-level error (the coordinator still loading the
    group's offsets after a broker restart, or no longer the coordinator)
    carries no partitions, and every partition then reads as never committed
    (``confluentinc/librdkafka#5586`` describes the same response). Sought
    to the start of its log, such a partition was read again from offset 0,
    and the records fetched before the seek made the worker report a false
    gap ("RECORDS NEVER FOLDED", once in four soak runs with a broker restart
    while a second worker joined). Here the request-level error is read and
    the request retried while it is retriable, for up to
    ``COMMITTED_WAIT_S`` in all (each request bounded by what is left). None
    when there is no coordinator to ask (a consumer without a group) or no
    answer came: aiokafka's answer stands.
    """
    coordinator = getattr(consumer, "_coordinator", None)
    group = getattr(consumer, "_group_id", None)
    if coordinator is None or group is None or not tps:
        return None
    from aiokafka import errors
    from aiokafka.protocol.commit import OffsetFetchRequest

    by_topic: dict[str, list[int]] = {}
    for tp in tps:
        by_topic.setdefault(tp.topic, []).append(tp.partition)
    wanted = {(tp.topic, tp.partition): tp for tp in tps}
    deadline = time.monotonic() + COMMITTED_WAIT_S
    pause = 0.1
    request = OffsetFetchRequest(group, sorted(by_topic.items()))

    async def ask() -> Any:
        await coordinator.ensure_coordinator_known()  # unbounded in aiokafka: bounded below
        return await coordinator._send_req(request)

    while True:
        failure: Exception | None = None
        try:
            response = await asyncio.wait_for(ask(), max(0.0, deadline - time.monotonic()))
            failure, found = _read_offsets(response, wanted)
            if failure is None:
                return found
        except TimeoutError:
            failure = errors.KafkaTimeoutError()
        except errors.KafkaError as exc:
            failure = exc
        except Exception as exc:  # noqa: BLE001 - aiokafka's internals moved: its answer stands
            log.warning("cannot ask the group coordinator again for %s (%r)", _names(tps), exc)
            return None
        if not getattr(failure, "retriable", False) or time.monotonic() + pause > deadline:
            log.warning("cannot confirm that %s were never committed (%r): reading them "
                        "from the start of the log", _names(tps), failure)
            return None
        if isinstance(failure, (errors.NotCoordinatorForGroupError,
                                errors.GroupCoordinatorNotAvailableError)):
            coordinator.coordinator_dead()
        await asyncio.sleep(pause)
        pause = min(pause * 2, 2.0)


def _read_offsets(response: Any, wanted: Mapping[tuple[str, int], Any]
                  ) -> tuple[Exception | None, dict[Any, int | None]]:
    """(the response's error, committed offset of each wanted partition: None if none)."""
    from aiokafka import errors

    code = getattr(response, "error_code", 0)  # request level, OffsetFetch v2 and later
    if code:
        return errors.for_code(code)(), {}
    found: dict[Any, int | None] = dict.fromkeys(wanted.values())
    for topic, partitions in response.topics:
        for partition, offset, _metadata, partition_code in partitions:
            tp = wanted.get((topic, partition))
            if tp is None:
                continue
            if partition_code:
                failure = errors.for_code(partition_code)()
                if not isinstance(failure, errors.UnknownTopicOrPartitionError):
                    return failure, {}
                continue
            found[tp] = offset if offset >= 0 else None
    return None, found


def _names(tps: Iterable[Any]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in tps)


def idle(consumer: Any) -> asyncio.Event:
    """Set while Faust's drain loop is not handing out a batch of ``consumer``'s records."""
    found: asyncio.Event | None = consumer.__dict__.get(_IDLE)
    if found is None:
        found = consumer.__dict__[_IDLE] = asyncio.Event()
        found.set()
    return found


def delivering(getmany: Callable[..., Any]) -> Callable[..., Any]:
    """Faust's ``Consumer.getmany``, marking the consumer busy while a batch is handed out."""

    async def getmany_marked(self: Any, timeout: float) -> Any:
        not_busy = idle(self)
        batch = getmany(self, timeout)
        counted = False
        rebalances = 0
        try:
            async for item in batch:
                if not counted:
                    not_busy.clear()
                    counted = True
                    # Read once the batch is fetched, never before: a rebalance counted
                    # after this began after the fetch, so its seek comes after it too
                    # and the records are read again (read before the fetch, a whole
                    # rebalance within one fetch marked records that nothing reads again).
                    rebalances = getattr(self.app, "rebalancing_count", 0)
                try:
                    setattr(item[1], _STAMP, rebalances)
                except AttributeError:  # a message type with slots only: not stamped
                    pass
                yield item
        finally:
            if counted:
                not_busy.set()
            await batch.aclose()

    return getmany_marked


def rebalanced_since_delivery(message: Any, app: Any) -> bool:
    """Has a rebalance begun since Faust handed ``message`` out (``delivering``)?

    Every rebalance ends with a seek of the assigned partitions to their
    committed offsets, so a message handed out before one began is read again
    afterwards unless it was acknowledged. False for a message not stamped.
    """
    stamp = getattr(message, _STAMP, None)
    return stamp is not None and getattr(app, "rebalancing_count", 0) != stamp


def seeking_after_the_batch(perform_seek: Callable[..., Any]) -> Callable[..., Any]:
    """Faust's ``Consumer.perform_seek``, never racing a batch fetched before it."""

    async def perform_seek_alone(self: Any) -> None:
        if self.flow_active:
            self.stop_flow()  # the callers that had it running resume it (module doc)
        not_busy = idle(self)
        if not not_busy.is_set():
            started = time.monotonic()
            try:
                await asyncio.wait_for(not_busy.wait(), DRAIN_WAIT_S)
            except TimeoutError:
                log.warning("seek: the drain loop is still delivering a batch after %.0f s; "
                            "seeking anyway", DRAIN_WAIT_S)
            else:
                log.info("seek: waited %.3f s for the drain loop to leave a batch fetched "
                         "before the seek", time.monotonic() - started)
        await perform_seek(self)

    return perform_seek_alone


def install() -> None:
    """Make Faust's consumer seek as above (once per process)."""
    from faust.transport.consumer import Consumer
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if getattr(AIOKafkaConsumerThread, _INSTALLED, False):
        return
    Consumer.getmany = delivering(Consumer.getmany)  # type: ignore[method-assign]
    Consumer.perform_seek = seeking_after_the_batch(  # type: ignore[method-assign]
        Consumer.perform_seek)

    async def seek_to_committed(self: Any) -> Mapping[Any, int | None]:
        changelogs = self.consumer._is_changelog_tp
        committed: Mapping[Any, int | None] = await self.call_thread(
            seek_committed_or_start, self._ensure_consumer(), changelogs)
        _tell(committed)  # back in the event loop's thread: the hooks need no lock
        return committed

    AIOKafkaConsumerThread.seek_to_committed = seek_to_committed  # type: ignore[method-assign,assignment]
    setattr(AIOKafkaConsumerThread, _INSTALLED, True)
