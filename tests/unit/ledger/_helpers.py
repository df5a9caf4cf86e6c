"""Builders shared by the ledger unit tests: fold-format dicts, a tiny runner, Avro schemas."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro

from streams.catalogue import RECORD_OF_KIND
from streams.ledger import (
    AccountState,
    LedgerConfig,
    Output,
    apply_event,
    parse_event,
)
from streams.ledger.events import Mark

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SCHEMA_DIR = Path(__file__).resolve().parents[3] / "streams" / "resources" / "avro"
OUTPUT_SCHEMA = {kind: f"twinledger.v1.{name}" for kind, name in RECORD_OF_KIND.items()}


class Events:
    """Makes fold-format dicts with unique ids and rising timestamps for one account."""

    def __init__(self, account: str = "acc-1", venue: str = "test") -> None:
        self.account = account
        self.venue = venue
        self.n = itertools.count(1)

    def __call__(self, kind: str, eid: str | None = None, **fields: Any) -> dict[str, Any]:
        i = next(self.n)
        d: dict[str, Any] = {"kind": kind, "event_id": eid or f"{self.account}-{i}",
                             "account_id": self.account, "venue": self.venue,
                             "ts": (T0 + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%SZ")}
        d.update({k: (str(v) if isinstance(v, int | Decimal) else v) for k, v in fields.items()})
        return d

    def fill(self, side: str, qty: Any, price: Any, symbol: str = "FET-USDT", **kw: Any,
             ) -> dict[str, Any]:
        return self("fill", symbol=symbol, side=side, qty=qty, price=price, **kw)


class Run:
    """Folds dicts one by one like the agent would, keeping every output."""

    def __init__(self, config: LedgerConfig | None = None) -> None:
        self.config = config or LedgerConfig()
        self.states: dict[str, AccountState] = {}
        self.marks: dict[str, Decimal] = {}
        self.outputs: list[Output] = []
        self.statuses: list[str] = []

    def __call__(self, *dicts: Mapping[str, Any], source: tuple[int, int] | None = None,
                 ) -> list[Output]:
        new: list[Output] = []
        for d in dicts:
            ev = parse_event(d)
            if isinstance(ev, Mark):
                self.marks[ev.symbol] = ev.price
                continue
            res = apply_event(self.states.get(ev.account_id), ev, self.marks, self.config,
                              source)
            self.states[ev.account_id] = res.state
            self.statuses.append(res.status)
            new.extend(res.outputs)
        self.outputs.extend(new)
        return new

    def state(self, account: str = "acc-1") -> AccountState:
        return self.states[account]

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [o.record for o in self.outputs if o.kind == kind]

    def last_snapshot(self) -> dict[str, Any]:
        return self.of("snapshot")[-1]

    def codes(self) -> list[str]:
        return [r["code"] for r in self.of("anomaly")]


def of(outputs: Iterable[Output], kind: str) -> list[dict[str, Any]]:
    return [o.record for o in outputs if o.kind == kind]


def load_schemas() -> dict[str, Any]:
    """Every .avsc parsed together, named types resolved across files."""
    raw = {p.stem: json.loads(p.read_text()) for p in sorted(SCHEMA_DIR.glob("*.avsc"))}
    named: dict[str, Any] = {}
    parsed: dict[str, Any] = {}
    pending = dict(raw)
    while pending:
        progress = False
        for name, schema in list(pending.items()):
            try:
                parsed[f"twinledger.v1.{name}"] = fastavro.parse_schema(schema, named)
            except fastavro.schema.UnknownType:
                continue
            del pending[name]
            progress = True
        assert progress, f"unresolvable schemas: {sorted(pending)}"
    return parsed


def avro_bytes(schemas: Mapping[str, Any], out: Output) -> bytes:
    import io

    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schemas[OUTPUT_SCHEMA[out.kind]], out.record)
    return buf.getvalue()


def avro_roundtrip(schemas: Mapping[str, Any], out: Output) -> dict[str, Any]:
    import io

    buf = io.BytesIO(avro_bytes(schemas, out))
    schema = schemas[OUTPUT_SCHEMA[out.kind]]
    return fastavro.schemaless_reader(buf, schema, schema)  # type: ignore[return-value]
