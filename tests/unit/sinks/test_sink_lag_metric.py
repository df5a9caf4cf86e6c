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


def test_the_consumer_measures_its_lag_between_polls_and_the_scrape_shows_the_last():
    collector = metrics.ConsumerLagCollector()
    fake = FakeConsumer({("ledger.trades", 2): 6, ("ledger.snapshots", 0): 9},
                        {("ledger.trades", 2): 10, ("ledger.snapshots", 0): 9})
    polls = []
    fake.consume = lambda **kw: polls.append(kw) or ["m"]
    held = [("ledger.trades", 2), ("ledger.snapshots", 0)]
    consumer = metrics.LagTrackingConsumer(fake, partitions=lambda: held, every=3600,
                                           collector=collector)
    assert consumer.consume(num_messages=5, timeout=0.1) == ["m"]
    assert polls == [{"num_messages": 5, "timeout": 0.1}]
    assert consumer.get_watermark_offsets  # everything else is the wrapped consumer's
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in collector.collect() for s in family.samples}
    assert samples[("twinledger_sink_lag_records",
                    (("partition", "2"), ("topic", "ledger.trades")))] == 4
    assert samples[("twinledger_sink_lag_records",
                    (("partition", "0"), ("topic", "ledger.snapshots")))] == 0
    assert samples[("twinledger_sink_lag_measured_timestamp_seconds", ())] > 0
    fake.positions[("ledger.trades", 2)] = 10
    consumer.consume(num_messages=5, timeout=0.1)  # within `every`: not measured again
    assert collector.lags[("ledger.trades", 2)] == 4


def test_a_failing_measurement_never_stops_the_sink():
    class Broken(FakeConsumer):
        def position(self, tps):
            raise RuntimeError("Consumer closed")

    broken = Broken({}, {})
    broken.consume = lambda **kw: []
    collector = metrics.ConsumerLagCollector()
    consumer = metrics.LagTrackingConsumer(broken, partitions=lambda: [("t", 0)],
                                           collector=collector)
    assert consumer.consume(timeout=0.1) == []
    assert collector.lags == {} and collector.measured_at == 0.0


def test_the_registry_exports_the_lag_families_in_prometheus_text():
    text = generate_latest(metrics.REGISTRY).decode()
    assert "# TYPE twinledger_sink_lag_records gauge" in text
    assert "# TYPE twinledger_sink_lag_measured_timestamp_seconds gauge" in text
