"""Every mark on every worker: ``market.marks`` read whole, in memory.

``market.marks`` is compacted and keyed by symbol: the latest price of each
symbol is what a fold or a page values positions at, and every worker needs
every symbol whatever account partitions it holds. Each worker therefore reads
the topic itself, from its first offset, with a consumer outside the group
(no group id, no committed offsets, every partition assigned), the way Kafka
Streams reads a global table's source topic.

It replaces a Faust ``GlobalTable`` fed by an agent through a changelog: that
table lost its contents on a worker after some rebalances (the survivor of a
stopped worker valued positions at mark 0), because its partitions follow the
group's assignment. A reader outside the group has nothing to lose in a
rebalance, and there is no second copy of the marks (the changelog) to keep.

The fold does not take an event before the reader has caught up with the
end offsets it saw at start (``caught_up``), as Faust recovered the table
before the agent started; afterwards marks and events arrive independently,
as they always did. A reader that cannot catch up within the worker's stall
time is a stall like any other: the watchdog reports it and exits
(``streams.app``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from typing import Any

log = logging.getLogger("twinledger.marks")


class MarksReader:
    """symbol (UTF-8 bytes) -> the latest framed ``Mark`` bytes of ``topic``."""

    def __init__(self, bootstrap: str, topic: str, auth: Mapping[str, Any] | None = None,
                 *, poll_ms: int = 500) -> None:
        self.bootstrap = [b.strip() for b in bootstrap.split(",") if b.strip()]
        self.topic = topic
        self.auth = dict(auth or {"security_protocol": "PLAINTEXT"})
        self.poll_ms = poll_ms
        #: what MarksView reads: a plain dict, replaced key by key as records arrive
        self.prices: dict[bytes, bytes] = {}
        self.records = 0
        self.started_at: float | None = None
        self.last_poll_at: float | None = None
        self.caught_up_at: float | None = None
        self._caught_up: asyncio.Event | None = None
        #: partition -> next offset to apply (kept across a replaced consumer)
        self._next: dict[Any, int] = {}

    @property
    def caught_up(self) -> bool:
        return self.caught_up_at is not None

    def _event(self) -> asyncio.Event:
        if self._caught_up is None:
            self._caught_up = asyncio.Event()
            if self.caught_up:
                self._caught_up.set()
        return self._caught_up

    async def wait_caught_up(self) -> None:
        """Return once every record present when the reader started has been read."""
        await self._event().wait()

    def apply(self, key: bytes | None, value: bytes | None) -> None:
        """One record: the symbol's latest mark, or a tombstone that removes it."""
        if not isinstance(key, bytes):
            return
        self.records += 1
        if value is None:
            self.prices.pop(key, None)
        elif isinstance(value, bytes):
            self.prices[key] = value

    def _apply_batch(self, batch: Mapping[Any, list[Any]]) -> None:
        """Records in offset order per partition; one already applied is skipped, so a
        replaced consumer that reads a partition again never brings back an older price."""
        for tp, records in batch.items():
            done = self._next.get(tp, 0)
            for rec in records:
                if rec.offset >= done:
                    self.apply(rec.key, rec.value)
            if records:
                self._next[tp] = max(done, records[-1].offset + 1)

    def status(self) -> dict[str, Any]:
        now = time.monotonic()
        return {"caught_up": self.caught_up, "symbols": len(self.prices),
                "records_read": self.records,
                "last_poll_seconds_ago": (None if self.last_poll_at is None
                                          else round(now - self.last_poll_at, 1))}

    def _mark_caught_up(self) -> None:
        if self.caught_up_at is None:
            self.caught_up_at = time.monotonic()
            took = self.caught_up_at - (self.started_at or self.caught_up_at)
            log.info("marks: read %d records of %s in %.1f s: %d symbols",
                     self.records, self.topic, took, len(self.prices))
        self._event().set()

    async def run(self) -> None:
        """Read forever; a failed consumer is replaced (reading again from the start is harmless)."""
        self.started_at = time.monotonic()
        while True:
            try:
                await self._read()
            except asyncio.CancelledError:
                task = asyncio.current_task()
                if task is None or task.cancelling():
                    raise  # the worker is stopping
                # a CancelledError of one of aiokafka's own tasks: not ours to end on
                log.warning("marks: the consumer of %s was cancelled under the reader; "
                            "replacing it", self.topic)
                await asyncio.sleep(2.0)
            except Exception as exc:  # noqa: BLE001 - the broker may be restarting
                log.warning("marks: reading %s failed (%s: %s); retrying in 2 s",
                            self.topic, type(exc).__name__, exc)
                await asyncio.sleep(2.0)

    async def _read(self) -> None:
        from aiokafka import AIOKafkaConsumer

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None,
                                    enable_auto_commit=False, auto_offset_reset="earliest",
                                    client_id="twinledger-marks", **self.auth)
        await consumer.start()
        try:
            # Without a group id a subscription is served by no coordinator: every
            # partition is assigned here (and new ones as the metadata shows them);
            # with no committed offsets, reading starts at each partition's first offset.
            consumer.subscribe([self.topic])
            tps: list[Any] = []
            waited = 0
            while not tps:
                self._apply_batch(await consumer.getmany(timeout_ms=self.poll_ms,
                                                         max_records=10_000))
                tps = sorted(consumer.assignment())
                waited += 1
                if not tps and waited % 20 == 0:
                    log.warning("marks: topic %s has no partitions yet; waiting", self.topic)
            target = await consumer.end_offsets(tps)
            for tp in tps:
                done = self._next.get(tp)
                if done and done > target[tp]:
                    # The log ends below what was read: the topic was recreated or
                    # truncated. Read it again from its start, applying everything.
                    log.warning("marks: %s[%d] ends at %d, below the %d already read; "
                                "reading it again", tp.topic, tp.partition, target[tp], done)
                    del self._next[tp]
                elif done:
                    # A replaced consumer goes on where the last one stopped.
                    consumer.seek(tp, done)
            while True:
                batch = await consumer.getmany(timeout_ms=self.poll_ms, max_records=10_000)
                self.last_poll_at = time.monotonic()
                self._apply_batch(batch)
                if self.caught_up:
                    continue
                # Caught up only at the end offsets seen at start: an empty poll proves
                # nothing (a leader change, a starved loop). Compaction never removes a
                # partition's last batch, so the position always reaches that end.
                positions = [await consumer.position(tp) for tp in tps]
                if all(pos >= target[tp] for pos, tp in zip(positions, tps, strict=True)):
                    self._mark_caught_up()
        finally:
            await _stop(consumer)


async def _stop(consumer: Any) -> None:
    """Stop the consumer; aiokafka's stop can raise the CancelledError of its own
    internal task, which must not end the reader unless the reader was cancelled."""
    try:
        await consumer.stop()
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        # stop() gave up before closing its client (and cannot be called again): close
        # it here, or every replaced consumer would leave its connections open.
        client = getattr(consumer, "_client", None)
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()
