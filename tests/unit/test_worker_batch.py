"""The agent's batch loop with a fake producer and table (no broker): what it sends and stores."""

import asyncio
from types import SimpleNamespace

import pytest

import streams.app as app_module
from streams.codec import Codec, fold_dict_to_venue_record
from streams.config import load_settings
from streams.infra import faust_commit
from streams.ledger import load_ledger_config
from streams.topology import load_topology

CODEC = Codec.load()


class FakeProducer:
    def __init__(self):
        self.sent = []
        self.flushed = 0

    async def send(self, topic, key, value, partition, timestamp, headers):
        self.sent.append((topic, key, value))

    async def flush(self):
        self.flushed += 1


class FakeTable(dict):
    writes = 0

    def __setitem__(self, key, value):
        FakeTable.writes += 1
        super().__setitem__(key, value)


def _worker():
    settings = load_settings({})
    producer = FakeProducer()
    w = app_module.Worker(settings=settings, topology=load_topology(settings.topology_path),
                          codec=CODEC, ledger_config=load_ledger_config(None),
                          app=SimpleNamespace(producer=producer, consumer=SimpleNamespace()))
    w.ledger_table = FakeTable()
    return w, producer


def _event(offset, **fields):
    d = {"kind": "fill", "event_id": f"e{offset}", "account_id": "a1", "venue": "x",
         "ts": f"2024-01-01T00:00:{offset:02d}Z", "symbol": "BTCUSDT", "side": "BUY",
         "qty": "1", "price": "100", **fields}
    value = CODEC.encode("VenueEvent", fold_dict_to_venue_record(d))
    msg = SimpleNamespace(key=d["account_id"].encode(), value=value, topic="venue.events",
                          partition=0, offset=offset, timestamp=1.0, tp=("venue.events", 0))
    return SimpleNamespace(message=msg)


def _topics(producer):
    return [t for t, _, _ in producer.sent]


def test_a_batch_sends_outputs_flushes_then_stores_each_account_once():
    w, producer = _worker()
    FakeTable.writes = 0
    asyncio.run(w.process_batch([_event(1), _event(2)]))
    assert _topics(producer).count("ledger.snapshots") == 2
    assert producer.flushed == 1 and FakeTable.writes == 1 and b"a1" in w.ledger_table


def test_a_redelivered_batch_re_sends_nothing_new_and_stores_nothing():
    w, producer = _worker()
    asyncio.run(w.process_batch([_event(1), _event(2)]))
    FakeTable.writes = 0
    producer.sent.clear()
    asyncio.run(w.process_batch([_event(1), _event(2)]))
    assert FakeTable.writes == 0
    assert "ledger.deadletter" not in _topics(producer)


def test_undecodable_bytes_become_a_dead_letter_and_the_batch_goes_on():
    w, producer = _worker()
    bad = SimpleNamespace(message=SimpleNamespace(key=b"a1", value=b"garbage", topic="venue.events",
                                                  partition=0, offset=7, timestamp=1.0))
    asyncio.run(w.process_batch([_event(1), bad, _event(2)]))
    topics = _topics(producer)
    assert topics.count("ledger.deadletter") == 1 and topics.count("ledger.snapshots") == 2
    name, rec = CODEC.decode([v for t, _, v in producer.sent if t == "ledger.deadletter"][0])
    assert rec["original_value"] == b"garbage" and rec["event_id"] == "venue.events:0:7"


def test_a_fold_bug_on_one_event_dead_letters_it_and_folds_the_rest(monkeypatch):
    w, producer = _worker()
    real = app_module.apply_event

    def flaky(state, event, marks, config, source=None):
        if event.event_id == "e2":
            raise ZeroDivisionError("boom")
        return real(state, event, marks, config, source=source)

    monkeypatch.setattr(app_module, "apply_event", flaky)
    asyncio.run(w.process_batch([_event(1), _event(2), _event(3)]))
    topics = _topics(producer)
    assert topics.count("ledger.deadletter") == 1
    snaps = [CODEC.decode(v)[1] for t, _, v in producer.sent if t == "ledger.snapshots"]
    assert [s["event_id"] for s in snaps] == ["e1", "e3"]
    assert [s["event_seq"] for s in snaps] == [1, 2]  # folded again without e2, no gap
    _, dead = CODEC.decode([v for t, _, v in producer.sent if t == "ledger.deadletter"][0])
    assert dead["error_type"] == "ZeroDivisionError" and "boom" in dead["reason"]


@pytest.mark.parametrize("key", [b"someone-else"])
def test_a_key_that_is_not_the_account_is_refused(key):
    w, producer = _worker()
    ev = _event(1)
    ev.message.key = key
    asyncio.run(w.process_batch([ev]))
    assert _topics(producer) == ["ledger.deadletter"]


def test_create_worker_makes_its_faust_data_directory(tmp_path):
    # A fresh TWINLEDGER_DATA_DIR has no faust/ yet; Faust's RocksDB stores need it.
    from streams.config import load_settings

    settings = load_settings({"TWINLEDGER_DATA_DIR": str(tmp_path / "new" / "data"),
                              "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"})
    app_module.create_worker(settings)
    assert (tmp_path / "new" / "data" / "faust").is_dir()


# Crash before / after the state write: why the state keeps no outbox --------------------


class Broker:
    """What reached the broker: sends are pending until a flush, and a crash loses those."""

    def __init__(self):
        self.log = []  # ("flush" | "store", ...) in the order they happened
        self.on_broker = []
        self.pending = []

    def producer(self, crash_on_flush=False):
        broker = self

        class Producer:
            async def send(self, topic, key, value, partition, timestamp, headers):
                broker.pending.append((topic, key, value))

            async def flush(self):
                if crash_on_flush:
                    broker.pending.clear()  # the process died with them in its buffer
                    raise SystemExit("crash before the flush completed")
                broker.on_broker += broker.pending
                broker.pending.clear()
                broker.log.append("flush")

        return Producer()


class CrashingTable(dict):
    def __init__(self, broker, crash=False):
        super().__init__()
        self.broker, self.crash = broker, crash

    def __setitem__(self, key, value):
        if self.crash:
            raise SystemExit("crash before the state write")
        self.broker.log.append("store")
        super().__setitem__(key, value)


def _restarted(broker, table, crash_on_flush=False):
    """A worker process started on the stored table (its state cache is empty)."""
    w, _ = _worker()
    w.app = SimpleNamespace(producer=broker.producer(crash_on_flush),
                            consumer=SimpleNamespace())
    w.ledger_table = table
    return w


def _ids(records):
    return {(t, CODEC.decode(v)[1]["event_id"]) for t, _, v in records}


def _reference():
    broker = Broker()
    table = CrashingTable(broker)
    w = _restarted(broker, table)
    asyncio.run(w.process_batch([_event(1), _event(2), _event(3, side="SELL")]))
    asyncio.run(w.process_batch([_event(4)]))
    return _ids(broker.on_broker), dict(table)


@pytest.mark.parametrize("crash", ["before_flush", "before_state_write", "after_state_write"])
def test_a_crash_anywhere_in_a_batch_loses_nothing_without_an_outbox(crash):
    """Outputs are flushed before the state is stored, so a stored state's outputs are on the
    broker: a replay that finds its events already applied needs to re-send nothing (the
    fold keeps no outbox). A crash earlier replays against the old state and re-sends all.
    Either way the broker ends with every output of a crash-free run, the state equal."""
    want_ids, want_table = _reference()
    broker = Broker()
    table = CrashingTable(broker, crash=crash == "before_state_write")
    first = _restarted(broker, table, crash_on_flush=crash == "before_flush")
    batch = [_event(1), _event(2), _event(3, side="SELL")]
    if crash == "after_state_write":
        asyncio.run(first.process_batch(batch))  # then dies before the offsets are committed
        assert broker.log == ["flush", "store"]  # the order that makes an outbox unneeded
    else:
        with pytest.raises(SystemExit):
            asyncio.run(first.process_batch(batch))
        assert "store" not in broker.log
    stored_before = dict(table)
    table.crash = False
    on_broker_before = list(broker.on_broker)
    again = _restarted(broker, table)
    asyncio.run(again.process_batch(batch))  # Faust redelivers the uncommitted batch
    if crash == "after_state_write":
        assert broker.on_broker == on_broker_before  # all duplicates: nothing re-sent
        assert dict(table) == stored_before
    asyncio.run(again.process_batch([_event(4)]))
    assert _ids(broker.on_broker) == want_ids
    assert dict(table) == want_table


class CountingCrashTable(CrashingTable):
    """Crashes at the write after ``stores`` more ones (None: never)."""

    def __init__(self, broker, stores=None):
        super().__init__(broker)
        self.stores = stores

    def __setitem__(self, key, value):
        if self.stores is not None:
            if not self.stores:
                raise SystemExit("crash in the middle of the state writes")
            self.stores -= 1
        super().__setitem__(key, value)


def _closing_batches():
    # open and close a trade, open the next; then close that one
    return [[_event(1), _event(2, side="SELL"), _event(3)], [_event(4, side="SELL")]]


def _skewed_batches():
    # the second batch closes the trade before it opened: a CLOCK_SKEW anomaly too
    first, _ = _closing_batches()
    return [first, [_event(4, side="SELL", ts="2024-01-01T00:00:00Z")]]


@pytest.mark.parametrize(("batches", "stores", "blobs"), [
    *[(_closing_batches, n, [b"a1", b"r1"]) for n in (0, 1, 2)],
    *[(_skewed_batches, n, [b"a1", b"l1", b"r1"]) for n in (0, 1, 2, 3)]])
def test_a_crash_between_the_history_and_the_hot_state_write_loses_nothing(batches, stores,
                                                                             blobs):
    """Closed trades go to the account's history blobs (the archive, then the recent
    trades), anomalies to its log, written before the hot state that names them
    (streams.ledger.state.encode_split), in the slot the stored hot state does not
    name. A crash before any write, between them or after all: the replay ends
    with every output of a crash-free run and the same table."""
    first_batch, second_batch = batches()
    broker = Broker()
    table = CountingCrashTable(broker)
    w = _restarted(broker, table)
    asyncio.run(w.process_batch(first_batch))
    assert broker.log == ["flush", "store", "store"]  # the archive, then the hot state
    asyncio.run(w.process_batch(second_batch))
    want_ids, want_table = _ids(broker.on_broker), dict(table)
    # the hot state, its archive, the recent trades (and the log)
    assert sorted(want_table) == [b"a1", *[b"a1\x00" + name for name in blobs]]

    broker = Broker()
    table = CountingCrashTable(broker)
    asyncio.run(_restarted(broker, table).process_batch(first_batch))
    table.stores = stores
    if stores < len(blobs):
        with pytest.raises(SystemExit):
            asyncio.run(_restarted(broker, table).process_batch(second_batch))
        assert _restarted(broker, table).account_state("a1").closed()  # still decodes
    else:
        asyncio.run(_restarted(broker, table).process_batch(second_batch))
    table.stores = None
    again = _restarted(broker, table)
    asyncio.run(again.process_batch(second_batch))  # Faust redelivers the batch
    assert _ids(broker.on_broker) == want_ids
    assert dict(table) == want_table
    assert [t.realized for t in again.account_state("a1").closed()] == [0, 0]
    assert [a["code"] for a in again.account_state("a1").anomalies] == (
        ["CLOCK_SKEW"] if b"l1" in blobs else [])


def _in_generation(ev, generation):
    ev.message.generation_id = generation
    ev.message.topic = "venue.events"
    return ev


def test_a_batch_fetched_before_a_rebalance_is_let_go_and_reports_no_gap():
    # Generation 1 folded offsets 0..1 of partition 0; then the group rebalanced
    # (generation 2), the partition was revoked, and the rest of the batch taken
    # in generation 1 (offsets 1500..1501) reaches the agent afterwards: whoever
    # holds the partition now reads it again, so it is neither folded nor acknowledged.
    w, producer = _worker()
    w.app.consumer_generation_id = 2
    w.forget_partition(0)
    batch = [_in_generation(_event(o, event_id=f"late{o}"), 1) for o in (30, 31)]
    for ev in batch:
        ev.message.offset += 1470
    asyncio.run(w.process_batch(batch))
    assert w.gaps == []  # not "RECORDS NEVER FOLDED" for offsets 0..1499
    assert 0 not in w.offsets.next_offset and 0 not in w.statuses
    assert _topics(producer) == [] and all(ev.message.acked for ev in batch)


def test_a_record_of_this_generation_after_a_gap_is_still_reported():
    w, _ = _worker()
    w.app.consumer_generation_id = 2
    w.offsets.expect(0, 0)
    ev = _in_generation(_event(5), 2)
    ev.message.offset = 1500
    asyncio.run(w.process_batch([ev]))
    assert [(g["partition"], g["first"], g["last"]) for g in w.gaps] == [(0, 0, 1499)]


def _at(offset, generation=2):
    ev = _in_generation(_event(offset % 50, event_id=f"o{offset}"), generation)
    ev.message.offset = offset
    return ev


def test_records_before_the_seek_start_no_gap_and_the_seek_sets_where_to_resume():
    # Faust can hand the agent a partition's first records before it seeks to the
    # committed offsets; they are read again after the seek, which starts the check.
    w, _ = _worker()
    w.app.consumer_generation_id = 2
    asyncio.run(w.process_batch([_at(1643), _at(1644)]))
    assert w.gaps == []
    w.note_assignment({0: 1000})  # what note_seek passes on after forgetting the partition
    assert w.offsets.next_offset[0] == 1645  # not forgotten here: nothing to compare yet
    w.forget_partition(0)
    w.note_assignment({0: 1000})
    asyncio.run(w.process_batch([_at(1643)]))
    assert [(g["partition"], g["first"], g["last"]) for g in w.gaps] == [(0, 1000, 1642)]


def test_a_gap_after_the_seek_is_reported_and_no_committed_offset_means_zero():
    w, _ = _worker()
    w.app.consumer_generation_id = 2
    w.note_assignment({0: None})  # never committed: the group reads it from offset 0
    asyncio.run(w.process_batch([_at(7)]))
    assert [(g["partition"], g["first"], g["last"]) for g in w.gaps] == [(0, 0, 6)]


def test_a_revoked_partition_forgets_its_committed_offset():
    w, _ = _worker()
    w.note_assignment({0: 5})
    w.forget_partition(0)
    assert 0 not in w.assign_committed and 0 not in w.offsets.next_offset


def test_a_seek_restarts_the_check_where_the_group_resumes():
    from collections import namedtuple

    tp = namedtuple("TP", "topic partition")
    w, _ = _worker()
    w.app.consumer_generation_id = 2
    asyncio.run(w.process_batch([_at(5), _at(6)]))  # taken before the seek
    # Another member committed up to 40 meanwhile: the seek resumes there.
    w.note_seek({tp("venue.events", 0): 40, tp("tl-changelog", 0): 3})
    assert w.gaps == [] and w.offsets.next_offset[0] == 40 and w.assign_committed == {0: 40}
    asyncio.run(w.process_batch([_at(40), _at(41)]))
    assert w.gaps == []


def test_offsets_a_late_batch_folded_are_no_gap_when_the_group_reads_on_after_them():
    # Partition 0 came back to this worker (generation 3) with committed offset 1872;
    # the batch 1872..1875 taken in generation 2 was folded after that and
    # committed, so generation 3 reads on from 1876.
    w, _ = _worker()
    w.app.consumer_generation_id = 3
    w.note_assignment({0: 1872})
    asyncio.run(w.process_batch([_at(o, generation=2) for o in range(1872, 1876)]))
    asyncio.run(w.process_batch([_at(1876, generation=3)]))
    assert w.gaps == []
    # Offsets beyond what the late batch folded are still a gap.
    asyncio.run(w.process_batch([_at(1880, generation=3)]))
    assert [(g["first"], g["last"]) for g in w.gaps] == [(1877, 1879)]


def test_a_gap_is_reported_only_where_no_late_batch_folded():
    w, _ = _worker()
    w.app.consumer_generation_id = 3
    w.note_assignment({0: 100})
    asyncio.run(w.process_batch([_at(o, generation=2) for o in (110, 111, 112)]))
    asyncio.run(w.process_batch([_at(120, generation=3)]))
    assert [(g["first"], g["last"]) for g in w.gaps] == [(100, 109), (113, 119)]


def test_an_unreadable_stored_state_sends_its_events_to_the_dead_letters_only():
    w, producer = _worker()
    w.ledger_table[b"a1"] = b"not a state"
    other = _event(3, account_id="a2", event_id="b3")
    asyncio.run(w.process_batch([_event(1), _event(2), other]))
    topics = _topics(producer)
    assert topics.count("ledger.deadletter") == 2  # a1's two events, bytes kept
    assert topics.count("ledger.snapshots") == 1 and b"a2" in w.ledger_table
    assert w.ledger_table[b"a1"] == b"not a state"  # never replaced by a state from nothing


# -- a batch folded across a rebalance stores no state --------------------------------


class RebalancingProducer(FakeProducer):
    """Flushing takes long enough for a rebalance to begin (Faust counts it at once)."""

    def __init__(self, app):
        super().__init__()
        self.app = app

    async def flush(self):
        await super().flush()
        self.app.rebalancing_count += 1


def _stamped(offset, rebalances):
    from streams.infra import faust_seek

    ev = _event(offset)
    setattr(ev.message, faust_seek._STAMP, rebalances)  # what Faust's getmany stamps
    ev.message.acked = False
    return ev


def _worker_in_group(producer_type):
    w, _ = _worker()
    app = SimpleNamespace(rebalancing_count=4, consumer_generation_id=9,
                          consumer=SimpleNamespace())
    app.producer = producer_type(app)
    w.app = app
    return w, app.producer


def test_a_batch_whose_partition_may_have_moved_is_not_stored_nor_acknowledged():
    """A rebalance began while the batch was folded: another worker may write the
    account's state now. The outputs went (same ids when read again); the state does
    not, and the records stay unacknowledged so the group reads them again."""
    w, producer = _worker_in_group(RebalancingProducer)
    FakeTable.writes = 0
    batch = [_stamped(1, 4), _stamped(2, 4)]
    asyncio.run(w.process_batch(batch))
    assert _topics(producer).count("ledger.snapshots") == 2
    assert FakeTable.writes == 0 and b"a1" not in w.ledger_table
    assert all(ev.message.acked for ev in batch)
    # ... and Faust commits nothing past them before they are read again (faust_commit)
    assert set(faust_commit.held(w.app.consumer)[("venue.events", 0)]) == {1, 2}
    assert "a1" not in w.state_cache
    # Read again after the rebalance (no rebalance during this one): folded from the
    # stored state, which never had them, so they apply once, and are stored.
    producer.__class__ = FakeProducer
    again = [_stamped(1, 5), _stamped(2, 5)]
    asyncio.run(w.process_batch(again))
    assert FakeTable.writes == 1 and not any(ev.message.acked for ev in again)
    assert w.decode_stored("a1", w.ledger_table[b"a1"]).event_seq == 2


def test_a_batch_no_rebalance_crossed_is_stored_and_left_to_faust_to_acknowledge():
    w, producer = _worker_in_group(lambda app: FakeProducer())
    FakeTable.writes = 0
    batch = [_stamped(1, 4), _stamped(2, 4)]
    asyncio.run(w.process_batch(batch))
    assert FakeTable.writes == 1 and not any(ev.message.acked for ev in batch)


def test_a_batch_of_an_older_consumer_generation_is_not_stored():
    """Handed out before the last assignment (an older generation), even when the
    rebalance count was read after that rebalance had begun."""
    w, producer = _worker_in_group(lambda app: FakeProducer())
    FakeTable.writes = 0
    batch = [_stamped(1, 4), _stamped(2, 4)]
    for ev in batch:
        ev.message.generation_id = 8
    asyncio.run(w.process_batch(batch))
    assert FakeTable.writes == 0 and all(ev.message.acked for ev in batch)


def test_a_straggler_from_before_a_rebalance_leaves_the_records_read_after_it_alone():
    """Faust may hold one event taken before a rebalance and hand it out ahead of the
    records read again after the seek. It is let go alone (read again); the account's
    current records, the re-read copy among them, are folded and stored once."""
    w, producer = _worker_in_group(lambda app: FakeProducer())
    FakeTable.writes = 0
    straggler = _stamped(3, 3)  # taken before rebalance 4 began
    current = [_stamped(o, 4) for o in (1, 2, 3, 4)]
    asyncio.run(w.process_batch([straggler, *current]))
    assert straggler.message.acked
    assert set(faust_commit.held(w.app.consumer)[("venue.events", 0)]) == {3}
    assert not any(ev.message.acked for ev in current)
    assert FakeTable.writes == 1
    assert w.decode_stored("a1", w.ledger_table[b"a1"]).event_seq == 4
    assert _topics(producer).count("ledger.snapshots") == 4


# -- outputs the broker did not acknowledge -------------------------------------------


def test_a_batch_whose_outputs_were_not_delivered_stores_no_state(monkeypatch):
    """``deliver`` raises when a record batch was refused or expired
    (tests/integration/test_record_batches.py): nothing of the batch is stored, so
    its events are folded again, and their outputs sent, when read again."""
    from streams.infra.record_batches import OutputsNotDelivered

    async def refused(producer, sends):
        assert sends  # the batch had outputs to send
        raise OutputsNotDelivered("1 of 1 record batches of outputs were not delivered")

    w, _ = _worker()
    FakeTable.writes = 0
    monkeypatch.setattr(app_module, "deliver", refused)
    with pytest.raises(OutputsNotDelivered):
        asyncio.run(w.process_batch([_event(1), _event(2)]))
    assert FakeTable.writes == 0 and not w.ledger_table and "a1" not in w.state_cache
    monkeypatch.undo()  # delivered this time: folded from nothing, both events applied
    w2, producer = _worker()
    w2.ledger_table = w.ledger_table
    asyncio.run(w2.process_batch([_event(1), _event(2)]))
    assert _topics(producer).count("ledger.snapshots") == 2
    assert w2.decode_stored("a1", w2.ledger_table[b"a1"]).event_seq == 2


def _exits(monkeypatch):
    codes = []

    def fake_exit(code):
        codes.append(code)
        raise SystemExit(code)  # os._exit never returns

    monkeypatch.setattr(app_module.os, "_exit", fake_exit)
    return codes


def test_the_worker_exits_with_its_own_code_when_outputs_were_not_delivered(monkeypatch):
    """The agent's step (``run_batch``) takes no further batch (a later one would store
    the same accounts past the undelivered events, and Faust acknowledges a batch the
    agent leaves by an exception): the process ends with exit code 71, nothing stored."""
    from streams.infra.record_batches import OutputsNotDelivered

    async def refused(producer, sends):
        raise OutputsNotDelivered("1 of 1 record batches of outputs were not delivered")

    codes = _exits(monkeypatch)
    monkeypatch.setattr(app_module, "deliver", refused)
    w, _ = _worker()
    FakeTable.writes = 0
    with pytest.raises(SystemExit):
        asyncio.run(w.run_batch([_event(1)]))
    assert codes == [app_module.UNDELIVERED_EXIT_CODE] == [71] and FakeTable.writes == 0


def test_any_other_failure_of_a_batch_ends_the_process_with_72(monkeypatch):
    """A state write that fails (a store error, a bug after the fold): exit 72 before the
    agent returns, so Faust acknowledges nothing of the batch."""

    class BrokenTable(FakeTable):
        def __setitem__(self, key, value):
            raise OSError("store write failed")

    codes = _exits(monkeypatch)
    w, producer = _worker()
    w.ledger_table = BrokenTable()
    with pytest.raises(SystemExit):
        asyncio.run(w.run_batch([_event(1)]))
    assert codes == [app_module.BATCH_FAILED_EXIT_CODE] == [72]
    assert "ledger.snapshots" in _topics(producer)  # sent first; read again: same ids


def test_a_batch_that_succeeds_does_not_exit(monkeypatch):
    codes = _exits(monkeypatch)
    w, _ = _worker()
    asyncio.run(w.run_batch([_event(1)]))
    assert codes == [] and b"a1" in w.ledger_table
