"""``twinledger produce``: send events to ``venue.events`` and marks to ``market.marks``.

Owns: reading event files (fold format, or raw venue payloads through the
gateway normalizers), encoding, batched producing keyed by account (marks
keyed by symbol), and dead-lettering what a gateway rejects. Must not touch:
normalization rules (``streams.gateways``) or bookkeeping.

Keys are hashed with murmur2, the Java client's partitioner, so records land
on the same partition whichever client (Faust/aiokafka, Java) produced them.
"""

from __future__ import annotations

import datetime as dt
import functools
import sys
import time
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from streams.codec import Codec, fold_dict_to_venue_record, mark_to_record
from streams.config import Settings, load_settings
from streams.exceptions import InvalidEvent, TwinledgerError
from streams.ledger import event_to_dict, grammar, parse_event
from streams.ledger.events import Mark

#: Bytes of a refused line kept in its dead letter (the rest would break the size limit).
DEAD_LETTER_KEEP = 512 * 1024
#: the Kafka client's latest errors a producer keeps, to say why records were not delivered
CLIENT_ERRORS_KEPT = 10


def read_fold_lines(path: Path) -> Iterator[tuple[int, dict[str, Any] | Exception, bytes]]:
    """(line number, parsed dict or the error, raw line bytes) for each non-blank line.

    Lines are read as bytes and held to the input grammar one by one
    (``streams.ledger.grammar.loads``): a line that is not UTF-8, not JSON,
    nested too deeply or holds a number in exponent form yields its error and
    the next line is read.
    """
    with path.open("rb") as fh:
        for number, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            raw = line.rstrip(b"\r\n")
            try:
                doc = grammar.loads(raw)
                if not isinstance(doc, dict):
                    raise ValueError("line is not a JSON object")
                yield number, doc, raw
            except ValueError as exc:
                yield number, exc, raw


def _note_client_error(errors: deque[str], err: Any) -> None:
    errors.append(f"{time.strftime('%H:%M:%S')} {err}")


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
        #: the client's own latest errors (connections refused, requests timed out, ...),
        #: named when records are not delivered: why is otherwise invisible
        self.client_errors: deque[str] = deque(maxlen=CLIENT_ERRORS_KEPT)
        # The callback holds the deque, not this producer: a bound method made a cycle
        # (producer -> client -> callback -> producer) that only a garbage collection
        # frees, and the client's threads went on retrying a stopped broker until then.
        conf["error_cb"] = functools.partial(_note_client_error, self.client_errors)
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

    def encode_event(self, event: dict[str, Any]) -> tuple[str, bytes, bytes, dt.datetime]:
        """(topic, key, framed value, time) of one fold-format dict, or ``InvalidEvent``.

        The event is held to the same rules as the fold and the worker
        (``parse_event``: the input grammar and each kind's signs), and its
        record to the broker's size limit, before anything is sent: a refused
        line never reaches ``venue.events``.
        """
        ev = parse_event(event)
        canonical = event_to_dict(ev)
        if isinstance(ev, Mark):
            rec = mark_to_record(canonical)
            topic, name, key, ts = "market.marks", "Mark", rec["symbol"], rec["ts"]
        else:
            rec = fold_dict_to_venue_record(canonical)
            topic, name, key, ts = ("venue.events", "VenueEvent", rec["account_id"],
                                    rec["ts_exchange"])
        try:
            value = self.codec.encode(name, rec)
        except (TypeError, ValueError, OverflowError) as exc:
            raise InvalidEvent(f"not encodable as {name}: {exc}") from None
        key_bytes = key.encode("utf-8")
        if len(value) + len(key_bytes) > grammar.MAX_RECORD_BYTES:
            raise InvalidEvent(f"record of {len(value) + len(key_bytes)} bytes exceeds "
                               f"{grammar.MAX_RECORD_BYTES} (the broker's message size limit)")
        return topic, key_bytes, value, ts

    def send_event(self, event: dict[str, Any]) -> None:
        """One fold-format dict: a mark goes to market.marks, anything else to venue.events."""
        topic, key, value, ts = self.encode_event(event)
        self.send_raw(topic, key, value, ts)

    def flush(self, timeout: float = 60.0) -> None:
        remaining = self._producer.flush(timeout)
        if remaining:
            raise TwinledgerError(f"{remaining} records not delivered within {timeout}s"
                                  + self._client_said())
        if self.errors:
            raise TwinledgerError(f"{len(self.errors)} records failed: {self.errors[0]}"
                                  + self._client_said())

    def _client_said(self) -> str:
        if not self.client_errors:
            return ""
        return "; the Kafka client's last errors: " + " | ".join(self.client_errors)


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
    from streams.helptext import parser as help_parser

    parser = help_parser("produce")
    parser.add_argument("file", type=Path,
                        help="JSON lines: fold-format events, or raw payloads with --venue")
    parser.add_argument("--venue", help="normalize raw payloads of this venue through its gateway")
    parser.add_argument("--account", help="account id for venues whose payloads name none")
    args = parser.parse_args(argv)

    from streams.ops import with_kafka

    settings = with_kafka(load_settings())
    producer = Producer(settings)
    started = time.monotonic()
    try:
        rejected = produce_file(producer, args.file, args.venue, args.account)
    except OSError as exc:
        producer.flush()
        print(f"twinledger produce: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return 2
    producer.flush()
    rate = producer.sent / max(time.monotonic() - started, 1e-9)
    print(f"produced {producer.sent} records ({rate:,.0f}/s), {rejected} rejected "
          f"to {settings.topic('ledger.deadletter')}", file=sys.stderr)
    return 0


def produce_file(producer: Producer, path: Path, venue: str | None = None,
                 account: str | None = None) -> int:
    """Send every line of ``path``; report and dead-letter each bad one; returns how many.

    A bad line (not UTF-8, not JSON, nested too deeply, against the grammar,
    refused by a gateway or too large for the broker) is reported on standard
    error with its line number and reason, dead-lettered with its bytes, and
    the lines before and after it are sent all the same.
    """
    rejected = 0
    if venue:
        from streams.gateways import OrderMemory, Rejection, normalize_payload

        memory = OrderMemory()
        with path.open("rb") as fh:
            for number, line in enumerate(fh, start=1):
                raw = line.rstrip(b"\r\n")  # the payload, without the file's line ending
                if not raw.strip():
                    continue
                result = normalize_payload(venue, raw, memory, account)
                if isinstance(result, Rejection):
                    rejected += 1
                    _reject(producer, venue, path, number, raw, result.reason)
                    continue
                try:
                    sends = [producer.encode_event(event) for event in result]
                    sends += [_anomaly_send(producer, anomaly) for anomaly in result.anomalies]
                except TwinledgerError as exc:
                    rejected += 1
                    _reject(producer, venue, path, number, raw, str(exc))
                    continue
                for anomaly in result.anomalies:
                    print(f"line {number}: anomaly {anomaly.code}: {anomaly.detail}",
                          file=sys.stderr)
                for send in sends:
                    producer.send_raw(*send)
                _progress(producer)
    else:
        for number, doc, raw in read_fold_lines(path):
            try:
                if isinstance(doc, Exception):
                    raise InvalidEvent(str(doc))
                producer.send_event(doc)
            except TwinledgerError as exc:
                rejected += 1
                _reject(producer, "fold", path, number, raw, str(exc))
            _progress(producer)
    return rejected


def _anomaly_send(producer: Producer, anomaly: Any) -> tuple[str, bytes, bytes, dt.datetime]:
    """A gateway's anomaly (suspicious but booked venue data) as an Anomaly record.

    It goes to ``ledger.anomalies`` next to the fold's own, keyed by account;
    its id derives from the event it concerns, so a re-sent frame repeats it
    and the sink keeps one row. ``event_seq`` 0: it comes before the fold.
    """
    ts = grammar.timestamp_value(anomaly.ts, "ts")
    record = {
        "event_id": f"{anomaly.event_id}:{anomaly.code}", "account_id": anomaly.account_id,
        "source_event_id": anomaly.event_id, "event_seq": 0, "ts": ts,
        "code": anomaly.code, "severity": "WARN", "detail": anomaly.detail,
    }
    return ("ledger.anomalies", anomaly.account_id.encode("utf-8"),
            producer.codec.encode("Anomaly", record), ts)


def _reject(producer: Producer, venue: str, path: Path, number: int, raw: bytes,
            reason: str) -> None:
    print(f"line {number}: rejected: {reason}", file=sys.stderr)
    _dead_letter_raw(producer, venue, path, number, raw, reason)


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
    if len(raw) > DEAD_LETTER_KEEP:
        # The dead letter must itself fit the broker: keep the head of the bytes.
        record["original_value"] = raw[:DEAD_LETTER_KEEP]
        record["reason"] = f"{reason} (original {len(raw)} bytes, first {DEAD_LETTER_KEEP} kept)"
    producer.send_raw("ledger.deadletter", None, producer.codec.encode("DeadLetter", record), None)
