"""The worker's outputs of one batch sent as Kafka record batches, then confirmed.

Owns: ``deliver(producer, sends)``: every record of ``sends`` on the broker,
acknowledged (``acks=-1``), before it returns, or ``OutputsNotDelivered``.
Must not touch: what the records are (the agent encodes them) or anything of
the consumer.

Why not one ``send`` per record: aiokafka's ``send`` costs about 6.6 us of
Python per record (a future, the partitioner, the accumulator's checks), and
a worker batch has ~3.5 outputs per event. Here the records are grouped by
topic and partition, in their order, and appended to aiokafka's record
batch builder (``create_batch``, its compiled record writer), one
``send_batch`` per full builder: about 0.9 us per record (``bench`` note
in docs/performance.md).

What stays the same as per-record sends:

- **the partition**: the one aiokafka's default partitioner gives a record
  with its key (murmur2 of the key, the Java client's rule), computed once
  per key and partition count. Every output has a key (a dead letter of a
  keyless source record has the empty one);
- **the order** within a partition: the records of a partition go in the
  order of ``sends``, in builders queued one after the other (a full builder
  is queued and a new one started, which takes any record, as aiokafka's
  own batches do); a record beyond the producer's largest request goes
  through ``send``, which refuses it as before;
- **the timestamp**: the event time in milliseconds, as Faust's ``send``
  converts it (none: the producer's clock).

What is stricter: per-record sends were confirmed by ``flush``, which
returns when the batches are done, delivered or not (a batch expires after
the producer's request timeout, 20 minutes by default, and its records are
gone). Here every batch's result is read: a record that was not delivered
raises ``OutputsNotDelivered``, and so does any error of the producer while
the records are queued (too large a record, a closed producer, a full
queue past its timeout), so the agent never stores a state whose outputs
are not on the broker (``streams.app``: the worker exits and the batch is
folded again from the committed offsets).

A producer that is not aiokafka's (a test's fake, another Faust transport)
gets the per-record ``send`` and ``flush`` it offers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiokafka.partitioner import murmur2

#: (topic, key, value, event time in seconds or None): one output record
Send = tuple[str, bytes, bytes, float | None]

#: key -> partition entries kept (per partition count) before the memo starts over
_MEMO_MAX = 1 << 16
_partition_memo: dict[tuple[int, bytes], int] = {}
#: bytes a record batch and a record add to a key and value, at most (headers aside)
_RECORD_OVERHEAD = 128


class OutputsNotDelivered(Exception):  # noqa: N818 - the name says what happened
    """Records of a batch were not acknowledged by the broker; their state must not be stored."""


def key_partition(key: bytes, count: int) -> int:
    """The partition Kafka's default partitioner gives a record with ``key`` on a topic of
    ``count`` partitions: murmur2 of the key, as the Java client, librdkafka's
    ``murmur2_random`` and aiokafka's ``DefaultPartitioner`` compute it (which
    indexes the sorted partitions 0..count-1). Remembered per key and count.
    """
    memo_key = (count, key)
    hit = _partition_memo.get(memo_key)
    if hit is None:
        if len(_partition_memo) >= _MEMO_MAX:
            _partition_memo.clear()
        hit = _partition_memo[memo_key] = (murmur2(key) & 0x7FFFFFFF) % count
    return hit


def _timestamp_ms(ts: float | None) -> int | None:
    # Faust's send: ``int(timestamp * 1000.0) if timestamp else timestamp``.
    return int(ts * 1000.0) if ts else None


async def deliver(producer: Any, sends: Sequence[Send]) -> None:
    """Send ``sends`` and wait until the broker acknowledged every one of them.

    ``producer`` is the Faust app's producer. Raises ``OutputsNotDelivered``
    when a record was refused or expired, or the producer failed while the
    records were queued.
    """
    ensure = getattr(producer, "_ensure_producer", None)
    if ensure is None:
        for topic, key, value, ts in sends:
            await producer.send(topic, key, value, partition=None, timestamp=ts, headers=None)
        await producer.flush()
        return
    try:
        futures = await _send_batches(ensure(), sends)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # noqa: BLE001 - any of them leaves outputs unsent
        raise OutputsNotDelivered(f"outputs could not be queued: {exc!r}") from exc
    if futures:
        await asyncio.wait(futures)
        failed = [error for f in futures if (error := f.exception()) is not None]
        if failed:
            raise OutputsNotDelivered(
                f"{len(failed)} of {len(futures)} record batches of outputs were not "
                f"delivered: {failed[0]!r}") from failed[0]
    # Whatever else the producer holds (the tables' changelog records), as before.
    await producer.flush()


async def _send_batches(aio: Any, sends: Sequence[Send]) -> list[asyncio.Future[Any]]:
    """Queue ``sends`` as record batches per (topic, partition); their delivery futures."""
    futures: list[asyncio.Future[Any]] = []
    groups: dict[tuple[str, int], list[tuple[bytes, bytes, float | None]]] = {}
    partitions_of: dict[str, list[int]] = {}
    for topic, key, value, ts in sends:
        partitions = partitions_of.get(topic)
        if partitions is None:
            known = aio.client.cluster.partitions_for_topic(topic)
            if not known:
                known = await aio.partitions_for(topic)  # waits for the topic's metadata
            partitions = partitions_of[topic] = sorted(known)
        tp = (topic, partitions[key_partition(key, len(partitions))])
        group = groups.get(tp)
        if group is None:
            group = groups[tp] = []
        group.append((key, value, ts))
    # A record near or beyond the largest request goes through send, which decides as
    # before (MessageSizeTooLargeError, with the record's overhead counted); any other
    # fits a builder, alone if need be.
    largest = getattr(aio, "_max_request_size", 1048576) - _RECORD_OVERHEAD
    for (topic, partition), records in groups.items():
        builder = aio.create_batch()
        for key, value, ts in records:
            stamp = _timestamp_ms(ts)
            if len(key) + len(value) >= largest:
                if builder.record_count():
                    futures.append(await aio.send_batch(builder, topic, partition=partition))
                    builder = aio.create_batch()
                futures.append(await aio.send(topic, value, key=key, partition=partition,
                                              timestamp_ms=stamp))
                continue
            if builder.append(key=key, value=value, timestamp=stamp) is None:
                # Full: queued, and a new one (an empty builder takes any record).
                futures.append(await aio.send_batch(builder, topic, partition=partition))
                builder = aio.create_batch()
                builder.append(key=key, value=value, timestamp=stamp)
        if builder.record_count():
            futures.append(await aio.send_batch(builder, topic, partition=partition))
    return futures
