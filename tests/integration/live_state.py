"""Live state against the offline fold: the checks the pipeline tests and the soak share.

Owns: the offline reference of a list of fold-format events (``twinledger fold``'s
document, plus the same events folded with the worker's own bounded config), and
the comparisons of it with what the running pipeline says: the worker's
``GET /accounts/{account}`` and the sink's ``accounts`` read query. Each
comparison returns the mismatches (empty = equal) so a test can assert on them
and the soak can print them. Must not start processes or touch Kafka.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from streams.foldfile import fold_lines
from streams.ledger import apply_event, load_ledger_config, parse_event
from streams.ledger.summary import account_summary

#: Summary fields that are histories, bounded in the worker (ledger config) and
#: unbounded in `twinledger fold`: compared with the fold under the worker's config.
BOUNDED_FIELDS = ("trades", "anomalies", "pnl_by_strategy")


@dataclass
class Reference:
    """What the offline fold says of the events, for comparison with the live pipeline."""

    #: the `twinledger fold` document (``streams.foldfile.fold_lines``)
    doc: dict[str, Any]
    #: account -> summary of the same fold under the worker's (bounded) config
    bounded: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: output kind -> records the fold emitted (what the output topics carry)
    outputs: Counter[str] = field(default_factory=Counter)
    event_ids: int = 0


def jsonable(value: Any) -> Any:
    """The JSON the worker's pages answer for a value (Decimals and datetimes as text)."""
    from streams.codec import dec_str, iso

    if isinstance(value, Decimal):
        return dec_str(value)
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def fold_as_worker(events: Iterable[dict[str, Any]], config: Any
                   ) -> tuple[dict[str, Any], list[Any]]:
    """The worker's fold of ``events`` in order, with no marks: final states and outputs."""
    states: dict[str, Any] = {}
    emitted: list[Any] = []
    for d in events:
        ev = parse_event(d)
        res = apply_event(states.get(ev.account_id), ev, {}, config)
        states[ev.account_id] = res.state
        emitted.extend(res.outputs)
    return states, emitted


def offline_reference(events: Iterable[dict[str, Any]]) -> Reference:
    """Fold the events twice offline: as `twinledger fold` does, and as the worker does."""
    events = list(events)
    config = load_ledger_config(None)
    doc = fold_lines([json.dumps(e) for e in events], config)
    states, emitted = fold_as_worker(events, config)
    outputs = Counter(out.kind for out in emitted)
    bounded = {a: jsonable(account_summary(s, {}, config)) for a, s in states.items()}
    return Reference(doc=doc, bounded=bounded, outputs=outputs,
                     event_ids=len({e["event_id"] for e in events}))


def expected_rows(ref: Reference) -> dict[str, int]:
    """Rows each event table must hold: one per logical event or output record."""
    out = ref.outputs
    return {
        "venue_events": ref.event_ids,
        "account_snapshots": out["snapshot"],
        "trade_events": out["trade"],
        "reconcile_events": out["reconcile"],
        "anomaly_events": out["anomaly"],
        "cash_flows": out["cashflow"],
        "portfolio_snapshots": out["portfolio"],
    }


def worker_state_mismatches(ref: Reference, view: Callable[[str], dict[str, Any] | None],
                            limit: int = 20) -> list[str]:
    """Every account's live view (``GET /accounts/{account}``) against the offline fold.

    Every field of the summary equals `twinledger fold`'s, except the bounded
    histories, which equal the fold under the worker's config. Returns at most
    ``limit`` mismatches, each naming the account and field.
    """
    bad: list[str] = []
    for account, summary in ref.doc["accounts"].items():
        live = view(account)
        if live is None:
            bad.append(f"{account}: not found in the worker")
        else:
            want = jsonable(summary)
            for key in sorted(set(want) | set(live)):
                expected = ref.bounded[account].get(key) if key in BOUNDED_FIELDS else want.get(key)
                if live.get(key) != expected:
                    bad.append(f"{account}.{key}: live {_short(live.get(key))} "
                               f"!= fold {_short(expected)}")
        if len(bad) >= limit:
            break
    return bad[:limit]


def sink_state_mismatches(ref: Reference, rows: Iterable[Mapping[str, Any]],
                          limit: int = 20) -> list[str]:
    """The last snapshot per account in ClickHouse (read query ``accounts``) against the fold."""
    by_account = {r["account_id"]: r for r in rows}
    accounts = ref.doc["accounts"]
    bad: list[str] = []
    if set(by_account) != set(accounts):
        missing = sorted(set(accounts) - set(by_account))
        extra = sorted(set(by_account) - set(accounts))
        bad.append(f"accounts differ: missing in the sink {missing[:5]} ({len(missing)}), "
                   f"unknown to the fold {extra[:5]} ({len(extra)})")
    for account, summary in accounts.items():
        row = by_account.get(account)
        if row is None:
            continue
        checks = {
            "event_seq": (int(row["last_event_seq"]), summary["event_seq"]),
            "capital": (Decimal(str(row["last_capital"])), Decimal(summary["capital"])),
            "k_capital": (Decimal(str(row["last_k_capital"])), Decimal(summary["k_capital"])),
            "capital_source": (row["last_capital_source"], summary["capital_source"]),
            "reconcile": (row["last_reconcile_status"], summary["reconcile"]["status"]),
        }
        bad += [f"{account}.{k}: sink {got} != fold {want}"
                for k, (got, want) in checks.items() if got != want]
        if len(bad) >= limit:
            break
    return bad[:limit]


def _short(value: Any, n: int = 160) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= n else text[:n] + "..."
