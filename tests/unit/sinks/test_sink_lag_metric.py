"""The sink's per-partition lag metric, from the consumer's cached offsets (fake consumer)."""

from types import SimpleNamespace

from prometheus_client import generate_latest

from sinks import metrics


class FakeConsumer:
    def __init__(self, positions, highs):
        self.positions = positions
        self.highs = highs

    def position(self, tps):
        return [SimpleNamespace(topic=tp.topic, partition=tp.partition,
                                offset=self.positions.get((tp.topic, tp.partition), -1001))
                for tp in tps]

    def get_watermark_offsets(self, tp, cached=False):
        assert cached, "a scrape must not ask the broker"
        return 0, self.highs.get((tp.topic, tp.partition), -1001)


def test_lag_is_high_watermark_minus_position_and_unknowns_are_left_out():
    consumer = FakeConsumer({("t", 0): 10, ("t", 1): 5, ("t", 2): 7},
                            {("t", 0): 25, ("t", 1): 5, ("t", 3): 9})
    lag = metrics.consumer_lag(consumer, [("t", 0), ("t", 1), ("t", 2), ("t", 3)])
    assert lag == {("t", 0): 15, ("t", 1): 0}
    assert metrics.consumer_lag(None, [("t", 0)]) == {}


def test_the_collector_exports_one_sample_per_partition_and_survives_a_closed_consumer():
    metrics.LAG.source = lambda: {("ledger.trades", 2): 4, ("ledger.snapshots", 0): 0}
    text = generate_latest(metrics.REGISTRY).decode()
    assert 'twinledger_sink_lag_records{partition="2",topic="ledger.trades"} 4.0' in text
    assert 'twinledger_sink_lag_records{partition="0",topic="ledger.snapshots"} 0.0' in text

    def closed():
        raise RuntimeError("Consumer closed")

    metrics.LAG.source = closed
    text = generate_latest(metrics.REGISTRY).decode()
    assert "# TYPE twinledger_sink_lag_records gauge" in text
    assert "twinledger_sink_lag_records{" not in text
    metrics.LAG.source = None
