"""After a rebalance, a source partition with no committed offset is read from its start.

aiokafka's ``seek_to_committed`` leaves a partition whose committed offset is
missing or 0 at the position its fetcher reached while Faust had the
partition paused; those records were never folded (streams/infra/faust_seek.py).
"""

import asyncio
from collections import namedtuple
from types import SimpleNamespace

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


# -- the seek and a batch fetched before it (Faust's real drain loop) ---------------


class Buffer:
    """The agent's stream buffer as the drain loop sees it: a bounded queue nobody reads.

    ``clear`` is what Faust's ``flow_control.resume()`` does to it after the seek.
    """

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.items: list[int] = []
        self.room = asyncio.Event()
        self.room.set()

    async def put(self, message) -> None:
        while len(self.items) >= self.cap:
            self.room.clear()
            await self.room.wait()
        self.items.append(message.offset)

    def clear(self) -> None:
        self.items.clear()
        self.room.set()


def _record(topic: str, partition: int, offset: int):
    from aiokafka.structs import ConsumerRecord

    return ConsumerRecord(topic=topic, partition=partition, offset=offset, timestamp=0,
                          timestamp_type=0, key=b"a", value=b"v", checksum=None,
                          serialized_key_size=1, serialized_value_size=1, headers=())


async def _seek_during_a_stale_batch() -> tuple[list[int], list[int]]:
    """A batch 0..9 is half delivered (the buffer is full at 5) when the seek to 0 comes.

    Returns (what the buffer holds after the seek and the refetch, offsets Faust dropped).
    """
    import faust
    from faust.types import TP as FaustTP

    faust_seek.install()
    app = faust.App("seek-race-test", broker="kafka://127.0.0.1:1", store="memory://")
    consumer = app.consumer
    tp = FaustTP("p.venue.events", 0)
    buffer = Buffer(cap=5)
    batches = [[_record(tp.topic, 0, o) for o in range(10)]]  # fetched before the seek
    fetched = asyncio.Event()
    refetched = asyncio.Event()

    async def wait_next_records(timeout):  # Faust's, without the thread behind it
        if not consumer.flow_active:
            await consumer.can_resume_flow.wait()
        if not batches:
            refetched.set()
            await asyncio.sleep(timeout)
            return {}, None
        fetched.set()
        return {tp: batches.pop(0)}, None

    async def seek_to_committed():
        batches.append([_record(tp.topic, 0, o) for o in range(10)])  # from 0 again
        return {tp: None}

    consumer._wait_next_records = wait_next_records
    consumer.seek_to_committed = seek_to_committed
    consumer.highwater = lambda tp: 10
    consumer.callback = buffer.put
    dropped: list[int] = []
    consumer.log.dev = lambda fmt, offset=None, *a: dropped.append(offset) if "DROPPED" in fmt else None

    class Fetcher:
        _stopped = asyncio.Event()

    drain = asyncio.ensure_future(consumer._drain_messages(Fetcher()))
    await asyncio.wait_for(fetched.wait(), 5)
    while not (len(buffer.items) == 5 and not buffer.room.is_set()):
        await asyncio.sleep(0.01)  # the drain loop waits on a full buffer at offset 5
    # Recovery.on_recovery_completed: seek, then resume the flow (clearing the buffers).
    await asyncio.wait_for(consumer.perform_seek(), 5)
    buffer.clear()
    buffer.cap = 100  # the agent takes records again
    consumer.resume_flow()
    await asyncio.wait_for(refetched.wait(), 5)
    await asyncio.sleep(0.05)
    Fetcher._stopped.set()
    consumer._stopped.set()
    drain.cancel()
    try:
        await drain
    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - only the buffer matters here
        pass
    return buffer.items, dropped


def test_a_seek_never_races_the_batch_fetched_before_it():
    """Every record from where the seek put the partition reaches the agent, once, in order.

    Without the guard the drain loop went on with the stale batch after the
    seek (offsets 5..9 into the cleared buffer) and its read offset, left at 9,
    dropped 0..8 when they came again: what the crash test lost.
    """
    held, dropped = asyncio.run(_seek_during_a_stale_batch())
    assert held[:5] == [0, 1, 2, 3, 4], held
    assert sorted(set(held)) == list(range(10)), (held, dropped)
    assert held == sorted(held), held
    assert dropped == [], dropped


def test_each_message_handed_out_carries_the_rebalance_count_read_once_its_batch_came():
    class Msg:  # Faust's ConsumerMessage has a __dict__
        pass

    app = type("App", (), {"rebalancing_count": 3})()
    consumer = type("C", (), {"app": app})()
    messages = [Msg(), Msg()]

    async def getmany(self, timeout):
        # A rebalance was counted while this batch was fetched: it may have ended with
        # its seek before the fetch, so it says nothing of these records.
        app.rebalancing_count = 4
        for m in messages:
            yield ("tp", m)

    async def take_all():
        return [m async for _, m in faust_seek.delivering(getmany)(consumer, 1.0)]

    got = asyncio.run(take_all())
    assert got == messages
    assert not any(faust_seek.rebalanced_since_delivery(m, app) for m in got)
    app.rebalancing_count = 5  # one counted after the batch came crosses its records
    assert all(faust_seek.rebalanced_since_delivery(m, app) for m in got)
    assert not faust_seek.rebalanced_since_delivery(Msg(), app)  # never stamped
    assert faust_seek.idle(consumer).is_set()  # the batch is over


# -- a coordinator that did not answer is not "never committed" ---------------------------

from aiokafka.protocol.commit import OffsetFetchResponse_v3  # noqa: E402
from aiokafka.structs import TopicPartition  # noqa: E402

LOADING = 14  # COORDINATOR_LOAD_IN_PROGRESS: the group's offsets are still being loaded


def _response(error_code=0, offsets=None):
    """An OffsetFetch v3 response as the broker sends it: with a request-level error,
    no partitions at all (confluentinc/librdkafka#5586)."""
    by_topic = {}
    for (topic, partition), offset in (offsets or {}).items():
        by_topic.setdefault(topic, []).append((partition, offset, "", 0))
    return OffsetFetchResponse_v3(0, sorted(by_topic.items()), error_code)


class FakeCoordinator:
    """aiokafka's group coordinator as the seek uses it: one response per request."""

    def __init__(self, responses):
        self.responses = list(responses)
        self.requests = 0
        self.dead = 0

    async def ensure_coordinator_known(self):
        pass

    async def _send_req(self, request):
        self.requests += 1
        return self.responses.pop(0)

    def coordinator_dead(self):
        self.dead += 1


class GroupConsumer(FakeConsumer):
    def __init__(self, committed, responses):
        super().__init__(committed)
        self._group_id = "g"
        self._coordinator = FakeCoordinator(responses)
        self.sought = {}

    def seek(self, tp, offset):
        self.sought[tp] = offset


def test_aiokafka_reads_an_unanswered_offset_fetch_as_never_committed():
    """Why the seek asks again: aiokafka 0.14 reads only the partitions of the response,
    so a request-level error answers "no committed offset" for every partition."""
    from aiokafka.consumer.group_coordinator import GroupCoordinator

    fake = SimpleNamespace(group_id="g", _send_req=None)

    async def send(request):
        return _response(LOADING)

    fake._send_req = send
    got = asyncio.run(GroupCoordinator._do_fetch_commit_offsets(fake, [TopicPartition(SRC, 0)]))
    assert got == {}  # the consumer's committed() then says None


def test_a_partition_the_coordinator_had_not_loaded_yet_is_sought_to_its_committed_offset(
        monkeypatch):
    """After a broker restart the coordinator answers "loading" at first: the seek asks
    again, finds 2312 committed, seeks there and tells the gap check so; a partition
    really never committed still goes to the start of its log."""
    monkeypatch.setattr(faust_seek.asyncio, "sleep", _no_sleep)
    a, b = TopicPartition(SRC, 0), TopicPartition(SRC, 1)
    consumer = GroupConsumer({a: None, b: None, TopicPartition(SRC, 2): 900},
                             [_response(LOADING), _response(LOADING),
                              _response(offsets={(SRC, 0): 2312, (SRC, 1): -1})])
    out = asyncio.run(faust_seek.seek_committed_or_start(consumer, _is_changelog))
    assert consumer._coordinator.requests == 3
    assert consumer.sought == {a: 2312}
    assert consumer.to_start == [b]
    assert out == {a: 2312, b: None, TopicPartition(SRC, 2): 900}


def test_no_answer_in_time_leaves_aiokafkas_answer(monkeypatch):
    """The coordinator never answers within COMMITTED_WAIT_S: as before, the partition is
    read from the start of its log (folding twice is safe, "duplicate")."""
    monkeypatch.setattr(faust_seek.asyncio, "sleep", _no_sleep)
    monkeypatch.setattr(faust_seek, "COMMITTED_WAIT_S", 0.0)
    a = TopicPartition(SRC, 0)
    consumer = GroupConsumer({a: None}, [_response(LOADING)])
    out = asyncio.run(faust_seek.seek_committed_or_start(consumer, _is_changelog))
    assert consumer.to_start == [a] and consumer.sought == {} and out == {a: None}


def test_not_the_coordinator_any_more_is_found_again_and_asked_again(monkeypatch):
    monkeypatch.setattr(faust_seek.asyncio, "sleep", _no_sleep)
    a = TopicPartition(SRC, 0)
    consumer = GroupConsumer({a: 0}, [_response(16), _response(offsets={(SRC, 0): 75})])
    asyncio.run(faust_seek.seek_committed_or_start(consumer, _is_changelog))
    assert consumer._coordinator.dead == 1 and consumer.sought == {a: 75}


async def _no_sleep(_seconds):
    return None


def test_a_coordinator_that_never_answers_holds_the_seek_no_longer_than_the_bound(monkeypatch):
    """aiokafka's wait for a coordinator has no bound of its own: each request is bounded by
    what is left of COMMITTED_WAIT_S, so Faust's seek (90 s for all of it) is not used up."""
    import time

    class Hanging(FakeCoordinator):
        async def ensure_coordinator_known(self):
            await asyncio.Event().wait()  # a broker that never comes back

    monkeypatch.setattr(faust_seek, "COMMITTED_WAIT_S", 0.3)
    a = TopicPartition(SRC, 0)
    consumer = GroupConsumer({a: None}, [])
    consumer._coordinator = Hanging([])
    started = time.monotonic()
    out = asyncio.run(faust_seek.seek_committed_or_start(consumer, _is_changelog))
    assert time.monotonic() - started < 2.0
    assert consumer.to_start == [a] and out == {a: None}
