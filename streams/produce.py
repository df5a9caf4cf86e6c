"""``twinledger produce``: send events to ``venue.events`` and marks to ``market.marks``.

Owns: reading event files (fold format, or raw venue payloads through the
gateway normalizers), encoding, batched producing keyed by account (marks
keyed by symbol), and dead-lettering what a gateway rejects. Must not touch:
normalization rules (``streams.gateways``) or bookkeeping.

Keys are hashed with murmur2, the Java client's partitioner, so records land
on the same partition whichever client (Faust/aiokafka, Java) produced them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from collections.abc import Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from streams.codec import Codec, fold_dict_to_venue_record, mark_to_record
from streams.config import Settings, load_settings
from streams.exceptions import TwinledgerError


def read_fold_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | Exception, str]]:
    """(line number, parsed dict or the error, raw line) for each non-blank line."""
    with path.open("r", encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line, parse_float=Decimal)
                if not isinstance(doc, dict):
                    raise ValueError("line is not a JSON object")
                yield number, doc, line
            except ValueError as exc:
                yield number, exc, line


class Producer:
    """A thin batched producer over confluent-kafka with progress accounting."""

    def __init__(self, settings: Settings, codec: Codec | None = None) -> None:
        from confluent_kafka import Producer as KProducer

        self.settings = settings
        self.codec = codec or Codec.load(settings.schema_registry_url)
        conf = {
            "bootstrap.servers": settings.kafka_bootstrap,
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "batch.num.messages": 10000,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
        }
        conf.update(settings.kafka_security)
        self._producer = KProducer(conf)
        self.sent = 0
        self.errors: list[str] = []

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.errors.append(str(err))

    def send_raw(self, topic: str, key: bytes | None, value: bytes, ts: dt.datetime | None) -> None:
        kwargs: dict[str, Any] = {}
        if ts is not None:
            kwargs["timestamp"] = int(ts.timestamp() * 1000)
        while True:
            try:
                self._producer.produce(self.settings.topic(topic), value=value, key=key,
                                       on_delivery=self._on_delivery, **kwargs)
                break
            except BufferError:
                self._producer.poll(0.1)
        self.sent += 1
        if self.sent % 1000 == 0:
            self._producer.poll(0)

    def send_event(self, event: dict[str, Any]) -> None:
        """One fold-format dict: a mark goes to market.marks, anything else to venue.events."""
        if event.get("kind") == "mark":
            rec = mark_to_record(event)
            self.send_raw("market.marks", rec["symbol"].encode(), self.codec.encode("Mark", rec),
                          rec["ts"])
            return
        rec = fold_dict_to_venue_record(event)
        self.send_raw("venue.events", rec["account_id"].encode(),
                      self.codec.encode("VenueEvent", rec), rec["ts_exchange"])

    def flush(self, timeout: float = 60.0) -> None:
        remaining = self._producer.flush(timeout)
        if remaining:
            raise TwinledgerError(f"{remaining} records not delivered within {timeout}s")
        if self.errors:
            raise TwinledgerError(f"{len(self.errors)} records failed: {self.errors[0]}")


def produce_events(settings: Settings, events: Iterable[dict[str, Any]],
                   progress: bool = False) -> int:
    """Send fold-format dicts; returns how many were sent."""
    producer = Producer(settings)
    started = time.monotonic()
    for event in events:
        producer.send_event(event)
        if progress:
            _progress(producer)
    producer.flush()
    if progress:
        rate = producer.sent / max(time.monotonic() - started, 1e-9)
        print(f"\rproduced {producer.sent} records ({rate:,.0f}/s)", file=sys.stderr)
    return producer.sent


def produce_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="twinledger produce", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", type=Path, help="JSON lines: fold format, or raw payloads with --venue")
    parser.add_argument("--venue", help="normalize raw payloads of this venue through its gateway")
    parser.add_argument("--account", help="account id for venues whose payloads name none")
    args = parser.parse_args(argv)

    from streams.ops import with_kafka

    settings = with_kafka(load_settings())
    producer = Producer(settings)
    rejected = 0
    started = time.monotonic()
    if args.venue:
        from streams.gateways import OrderMemory, Rejection, normalize_payload

        memory = OrderMemory()
        with args.file.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                raw = line.rstrip(b"\r\n")  # the payload, without the file's line ending
                if not raw.strip():
                    continue
                result = normalize_payload(args.venue, raw, memory, args.account)
                if isinstance(result, Rejection):
                    rejected += 1
                    print(f"line {number}: rejected: {result.reason}", file=sys.stderr)
                    _dead_letter_raw(producer, args.venue, args.file, number, raw, result.reason)
                    continue
                for event in result:
                    producer.send_event(event)
                _progress(producer)
    else:
        for number, doc, line in read_fold_lines(args.file):
            try:
                if isinstance(doc, Exception):
                    raise TwinledgerError(f"not JSON: {doc}")
                producer.send_event(doc)
            except TwinledgerError as exc:
                rejected += 1
                print(f"line {number}: rejected: {exc}", file=sys.stderr)
                _dead_letter_raw(producer, "fold", args.file, number, line.encode(), str(exc))
            _progress(producer)
    producer.flush()
    rate = producer.sent / max(time.monotonic() - started, 1e-9)
    print(f"produced {producer.sent} records ({rate:,.0f}/s), {rejected} rejected "
          f"to {settings.topic('ledger.deadletter')}", file=sys.stderr)
    return 0


def _progress(producer: Producer) -> None:
    if producer.sent % 5000 == 0 and producer.sent:
        print(f"\rproduced {producer.sent}", end="", file=sys.stderr, flush=True)


def _dead_letter_raw(producer: Producer, venue: str, path: Path, line: int, raw: bytes,
                     reason: str) -> None:
    """A payload refused before it became a VenueEvent: kept with its bytes."""
    record = {
        "event_id": f"gateway:{venue}:{path.name}:{line}",
        "account_id": "",
        "source_topic": f"gateway:{venue}",
        "source_partition": -1,
        "source_offset": line,
        "ts": dt.datetime.now(tz=dt.UTC),  # refused at ingest: no event time to trust
        "error_type": "Rejection",
        "reason": reason,
        "original_key": None,
        "original_value": raw,
    }
    producer.send_raw("ledger.deadletter", None, producer.codec.encode("DeadLetter", record), None)
