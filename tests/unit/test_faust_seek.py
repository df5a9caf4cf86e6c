"""After a rebalance, a source partition with no committed offset is read from its start.

aiokafka's ``seek_to_committed`` leaves a partition whose committed offset is
missing or 0 at the position its fetcher reached while Faust had the
partition paused; those records were never folded (streams/infra/faust_seek.py).
"""

import asyncio
from collections import namedtuple

from streams.infra import faust_seek

TP = namedtuple("TP", "topic partition")
SRC = "p.venue.events"
LOG = "tl-p-account_to_ledger-changelog"


class FakeConsumer:
    """aiokafka's consumer as the seek sees it: committed offsets, and where it moved."""

    def __init__(self, committed):
        self.committed = committed
        self.to_start: list = []

    async def seek_to_committed(self):
        return dict(self.committed)

    async def seek_to_beginning(self, *tps):
        self.to_start.extend(tps)


def _is_changelog(tp):
    return tp.topic == LOG


def test_never_committed_and_zero_go_to_the_start_committed_ones_stay():
    consumer = FakeConsumer({TP(SRC, 0): None, TP(SRC, 1): 0, TP(SRC, 2): 1500,
                             TP(LOG, 0): None})
    out = asyncio.run(faust_seek.seek_committed_or_start(consumer, _is_changelog))
    assert consumer.to_start == [TP(SRC, 0), TP(SRC, 1)]
    assert out == consumer.committed  # what Faust records as committed is unchanged


def test_all_committed_seeks_nothing_more():
    consumer = FakeConsumer({TP(SRC, 0): 7, TP(SRC, 1): 9})
    asyncio.run(faust_seek.seek_committed_or_start(consumer, _is_changelog))
    assert consumer.to_start == []


def test_install_replaces_fausts_seek_once():
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    faust_seek.install()
    first = AIOKafkaConsumerThread.seek_to_committed
    faust_seek.install()
    assert AIOKafkaConsumerThread.seek_to_committed is first
    assert first.__module__ == "streams.infra.faust_seek"


def test_each_seek_tells_the_hook_where_partitions_resume():
    told = []
    faust_seek.on_seek(told.append)
    faust_seek._tell({TP(SRC, 0): 12})
    faust_seek.on_seek(lambda c: None)  # one hook per process: this one replaces it
    faust_seek._tell({TP(SRC, 0): 13})
    assert told == [{TP(SRC, 0): 12}]
