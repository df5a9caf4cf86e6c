"""The named read queries: the only SQL a request can make the sink run.

Owns: the registry (name -> fixed SQL text with ``{param:Type}``
placeholders and the parameters it takes) and the validation of request
parameters (names, types, lengths, ranges). Must not touch: HTTP
(``sinks.http``) or connections (``sinks.backend``).

There is no free SQL: a request names a query and gives parameter values;
values travel as bound query parameters, never in the SQL text, and every
query runs on a read-only client with engine-enforced limits
(:data:`sinks.backend.READ_LIMITS`). Parameters, all optional:

- ``account``: one account id (1..128 printable characters); absent = all;
- ``since``/``until``: ISO-8601 times (a naive one is UTC), on the row's
  event time, ``since <= ts < until``, years 1970..2299;
- ``limit``: rows returned, 1..:data:`MAX_LIMIT` (default
  :data:`DEFAULT_LIMIT`); the answer says ``truncated`` when more matched;
- ``market``: ``trade_legs`` only, e.g. ``spot``;
- ``offset``: rows skipped before the first one returned, 0..:data:`MAX_OFFSET`
  (default 0), on the queries an export pages through (``twinledger export``:
  ``trade_pnl``, ``fills``, ``cash_flows``, ``snapshots``, ``balances``). Their
  order is total (it ends with a unique key), so pages do not overlap while no
  row is added.

An unknown query name is :class:`UnknownQuery` (404), an unknown or bad
parameter :class:`ParamError` (400).
"""

# ruff: noqa: S608 - the SQL below is built from module constants only; values are bound

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sinks.ddl import ident
from sinks.exceptions import SinkError

MAX_LIMIT = 10_000
#: Deepest page of a paged query (``offset``): ClickHouse still reads what it skips.
MAX_OFFSET = 10_000_000
DEFAULT_LIMIT = 1_000
#: Longest raw value of any parameter, checked before anything else looks at it.
MAX_RAW = 256
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
END_OF_TIME = dt.datetime(2299, 12, 31, 23, 59, 59, tzinfo=dt.UTC)

_NAME = re.compile(r"^[a-z_]{1,40}$")
_MARKET = re.compile(r"^[a-z_]{1,16}$")
_DIGITS = re.compile(r"^[0-9]{1,6}$")
_OFFSET_DIGITS = re.compile(r"^[0-9]{1,8}$")


class ParamError(SinkError, ValueError):
    """A request parameter that is unknown, repeated, too long or out of range (HTTP 400)."""


class UnknownQuery(SinkError, LookupError):
    """No named query of that name (HTTP 404)."""


def _account(raw: Any) -> str:
    if not isinstance(raw, str) or not 1 <= len(raw) <= 128:
        raise ParamError("account must be 1..128 characters")
    if not raw.isprintable():
        raise ParamError("account must be printable text")
    return raw


def _time(raw: Any, name: str) -> dt.datetime:
    if not isinstance(raw, str) or not 1 <= len(raw) <= 40:
        raise ParamError(f"{name} must be an ISO-8601 time of at most 40 characters")
    try:
        value = dt.datetime.fromisoformat(raw.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ParamError(f"{name} is not an ISO-8601 time") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    if not EPOCH <= value <= END_OF_TIME:
        raise ParamError(f"{name} must be between 1970 and 2299")
    return value.astimezone(dt.UTC)


def _limit(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ParamError("limit must be an integer")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and _DIGITS.match(raw):
        value = int(raw)
    else:
        raise ParamError(f"limit must be an integer 1..{MAX_LIMIT}")
    if not 1 <= value <= MAX_LIMIT:
        raise ParamError(f"limit must be 1..{MAX_LIMIT}")
    return value


def _offset(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ParamError("offset must be an integer")
    if isinstance(raw, int):
        value = raw
    elif isinstance(raw, str) and _OFFSET_DIGITS.match(raw):
        value = int(raw)
    else:
        raise ParamError(f"offset must be an integer 0..{MAX_OFFSET}")
    if not 0 <= value <= MAX_OFFSET:
        raise ParamError(f"offset must be 0..{MAX_OFFSET}")
    return value


def _market(raw: Any) -> str:
    if not isinstance(raw, str) or not _MARKET.match(raw):
        raise ParamError("market must be 1..16 lowercase letters or _")
    return raw


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "account": _account,
    "since": lambda raw: _time(raw, "since"),
    "until": lambda raw: _time(raw, "until"),
    "limit": _limit,
    "market": _market,
    "offset": _offset,
}
_DEFAULTS: dict[str, Any] = {"account": "", "since": EPOCH, "until": END_OF_TIME,
                             "limit": DEFAULT_LIMIT, "market": "", "offset": 0}

ACCOUNT = "({account:String} = '' OR account_id = {account:String})"
TIME_RANGE = "ts >= {since:DateTime64(6, 'UTC')} AND ts < {until:DateTime64(6, 'UTC')}"
RANGE = f"{ACCOUNT} AND {TIME_RANGE}"
#: One row more than asked, so the answer can say it was truncated.
LIMIT = "LIMIT {limit_plus_one:UInt32}"
#: A page of a paged query: ``LIMIT`` after ``offset`` rows.
PAGE = LIMIT + " OFFSET {offset:UInt32}"
PAGED = ("account", "since", "until", "limit", "offset")
#: Trade legs that open or add to a trade, and those that take from it (futures and spot).
_ENTRY = "action IN ('open', 'increase', 'buy')"
_EXIT = "action IN ('reduce', 'close', 'flip', 'sell')"
#: One row per trade (``trade_pnl`` and ``recent_trades``): the trade's whole history,
#: the trade chosen by its opening time (``since <= opened_at < until``). Notionals are
#: exact sums of qty x price in Decimal(76, 36) (two Decimal(38, 18) factors).
_TRADE_PNL = (
    "SELECT account_id, trade_id, any(market) AS trade_market, any(symbol) AS trade_symbol,"
    " any(side) AS trade_side, any(position_side) AS trade_position_side,"
    " any(strategy_tag) AS trade_strategy_tag, min(ts) AS opened_at, max(ts) AS last_at,"
    " argMax(action, (event_seq, event_id)) AS last_action, count() AS legs,"
    f" sumIf(qty, {_ENTRY}) AS entry_qty,"
    f" sumIf(toDecimal256(qty, 18) * toDecimal256(price, 18), {_ENTRY}) AS entry_notional,"
    f" sumIf(qty, {_EXIT}) AS exit_qty,"
    f" sumIf(toDecimal256(qty, 18) * toDecimal256(price, 18), {_EXIT}) AS exit_notional,"
    # the fold's cost basis of a spot trade's legs (NULL for futures and for rows
    # written before the fold carried it)
    " sumIf(cost_basis, market = 'spot') AS spot_cost_basis,"
    " argMax(avg_entry_price, (event_seq, event_id)) AS last_avg_entry_price,"
    " argMax(position_qty, (event_seq, event_id)) AS last_position_qty,"
    " argMax(cumulative_pnl, (event_seq, event_id)) AS trade_realized_pnl,"
    " argMax(trade_fees, (event_seq, event_id)) AS trade_total_fees,"
    " max(holding_seconds) AS trade_holding_seconds,"
    " arrayStringConcat(arraySort(groupUniqArray(pnl_source)), ',') AS pnl_sources"
    f" FROM $db.trade_events WHERE {ACCOUNT}"
    " GROUP BY account_id, trade_id"
    " HAVING opened_at >= {since:DateTime64(6, 'UTC')} AND opened_at < {until:DateTime64(6, 'UTC')}")


@dataclass(frozen=True)
class ReadQuery:
    """One named query: fixed SQL over ``$db.`` tables and the parameters it takes."""

    name: str
    doc: str
    sql: str = ""
    params: tuple[str, ...] = ("account", "since", "until", "limit")

    def text(self, database: str) -> str:
        return self.sql.replace("$db.", f"{ident(database)}.")


_LATEST = ("capital", "capital_source", "k_capital", "equity", "realized_pnl", "fees",
           "reconcile_status", "capital_frozen", "positions", "balances", "ts",
           "unrealized_pnl", "funding", "cash_flows", "wallet_balance", "used_margin",
           "k_used_margin", "peak_capital")

# Aliases differ from column names: ClickHouse resolves an alias before a column of the
# same name, which would nest one aggregate inside another.
QUERIES: dict[str, ReadQuery] = {q.name: q for q in (
    ReadQuery("counts", "per table count() and uniqExact(event_id) without FINAL and the "
              "verify verdict (what GET /counts answers)", params=()),
    ReadQuery(
        "accounts", "latest state per account (its last snapshot, by event_seq)",
        "SELECT account_id, max(event_seq) AS last_event_seq, "
        + ", ".join(f"argMax({c}, event_seq) AS last_{c}" for c in _LATEST)
        + f" FROM $db.account_snapshots WHERE {RANGE}"
        f" GROUP BY account_id ORDER BY account_id {LIMIT}"),
    ReadQuery(
        "snapshots", "account snapshots in a time range (paged: offset)",
        "SELECT account_id, event_id, event_seq, event_kind, ts, capital, capital_source,"
        " k_capital, equity, peak_capital, unrealized_pnl, realized_pnl, fees, funding,"
        " cash_flows, reconcile_status, capital_frozen"
        f" FROM $db.account_snapshots WHERE {RANGE}"
        f" ORDER BY account_id, event_seq, event_id {PAGE}", params=PAGED),
    ReadQuery(
        "equity_curve", "the most recent account snapshots, newest first: time, capital, "
                        "equity (the dashboard's curve)",
        "SELECT account_id, event_seq, ts, capital, equity, reconcile_status, capital_frozen"
        f" FROM $db.account_snapshots WHERE {RANGE}"
        f" ORDER BY account_id, event_seq DESC, event_id DESC {LIMIT}"),
    ReadQuery(
        "trades", "one row per trade: its last action, realized PnL and fees",
        "SELECT account_id, trade_id, any(symbol) AS trade_symbol, any(side) AS trade_side,"
        " argMax(action, event_seq) AS last_action,"
        " argMax(cumulative_pnl, event_seq) AS trade_realized_pnl,"
        " argMax(trade_fees, event_seq) AS trade_total_fees, count() AS legs"
        f" FROM $db.trade_events WHERE {RANGE}"
        f" GROUP BY account_id, trade_id ORDER BY account_id, trade_id {LIMIT}"),
    ReadQuery(
        "trade_pnl", "one row per trade with its cost basis, as a PnL report: opening and "
                     "last time, entry and exit quantity and notional (qty x price), "
                     "realized PnL, fees; trades chosen by opening time (paged: offset)",
        _TRADE_PNL + f" ORDER BY account_id, opened_at, trade_id {PAGE}", params=PAGED),
    ReadQuery(
        "recent_trades", "trade_pnl rows, the most recently opened first",
        _TRADE_PNL + f" ORDER BY account_id, opened_at DESC, trade_id DESC {LIMIT}"),
    ReadQuery(
        "fills", "fills as the venue reported them (venue_events of kind fill; paged: offset)",
        "SELECT account_id, event_id, venue, ts, symbol, side, position_side, market, qty,"
        " price, fee, fee_asset, leverage, realized_pnl, venue_order_id, client_order_id,"
        f" strategy_tag FROM $db.venue_events WHERE kind = 'fill' AND {RANGE}"
        f" ORDER BY account_id, ts, event_id {PAGE}", params=PAGED),
    ReadQuery(
        "trade_legs", "trade events (legs) in a time range, optionally of one market",
        "SELECT account_id, event_id, trade_id, event_seq, ts, symbol, side, position_side,"
        " action, market, qty, price, pnl_leg, fee_leg, cumulative_pnl, trade_fees, pnl_source,"
        " holding_seconds, position_qty, strategy_tag, flags"
        f" FROM $db.trade_events WHERE {RANGE}"
        " AND ({market:String} = '' OR market = {market:String})"
        f" ORDER BY account_id, event_seq, event_id {LIMIT}",
        params=("account", "since", "until", "limit", "market")),
    ReadQuery(
        "trade_counts", "trade events per market",
        "SELECT market, count() AS n"
        f" FROM $db.trade_events WHERE {RANGE} GROUP BY market ORDER BY market {LIMIT}"),
    ReadQuery(
        "cash_flows", "deposits, withdrawals and transfers in a time range (paged: offset)",
        "SELECT account_id, event_id, ts, flow, asset, amount, value, currency, price, unvalued,"
        f" balance_after FROM $db.cash_flows WHERE {RANGE}"
        f" ORDER BY account_id, event_seq, event_id {PAGE}", params=PAGED),
    ReadQuery(
        "portfolio_snapshots", "interval portfolio snapshots in a time range",
        "SELECT account_id, bucket_start, equity, realized_pnl, fees, unrealized_pnl,"
        " cash_flows, drift, drift_assets"
        f" FROM $db.portfolio_snapshots WHERE {RANGE}"
        f" ORDER BY account_id, bucket_start {LIMIT}"),
    ReadQuery(
        "balances", "latest balance per (account, asset) (balances FINAL; paged: offset)",
        "SELECT account_id, asset, version, event_id, ts, total, free, locked, avg_cost,"
        " cost_basis, value, unvalued, exchange_total, drift"
        f" FROM $db.balances FINAL WHERE {RANGE}"
        f" ORDER BY account_id, asset {PAGE}", params=PAGED),
    ReadQuery(
        "dead_letters", "records that could not be booked, with the reason; the original "
                        "bytes as UTF-8 text (original_text, invalid sequences replaced) and as base64",
        "SELECT account_id, event_id, source_topic, source_partition, source_offset, ts,"
        " error_type, reason, original_key, toValidUTF8(original_value) AS original_text,"
        " base64Encode(original_value) AS original_value_base64"
        f" FROM $db.dead_letters WHERE {RANGE}"
        f" ORDER BY source_topic, source_partition, source_offset {LIMIT}"),
    ReadQuery(
        "anomalies", "anomaly events in a time range",
        "SELECT account_id, event_id, source_event_id, event_seq, ts, code, severity, detail"
        f" FROM $db.anomaly_events WHERE {RANGE}"
        f" ORDER BY account_id, event_seq, event_id {LIMIT}"),
    ReadQuery(
        "drift", "the latest DRIFT / DRIFT_CLEARED anomaly per account",
        "SELECT account_id, argMax(code, (event_seq, event_id)) AS drift_code,"
        " argMax(detail, (event_seq, event_id)) AS drift_detail"
        f" FROM $db.anomaly_events WHERE code IN ('DRIFT', 'DRIFT_CLEARED') AND {RANGE}"
        f" GROUP BY account_id ORDER BY account_id {LIMIT}"),
    ReadQuery(
        "stale_marks", "the latest STALE_MARK anomaly per account (symbols valued at a mark "
                       "older than max_mark_age, with their age) and its event_seq",
        "SELECT account_id, max(event_seq) AS stale_event_seq,"
        " argMax(detail, (event_seq, event_id)) AS stale_detail"
        f" FROM $db.anomaly_events WHERE code = 'STALE_MARK' AND {RANGE}"
        f" GROUP BY account_id ORDER BY account_id {LIMIT}"),
    ReadQuery(
        "reconciles", "reconcile events in a time range",
        "SELECT account_id, event_id, event_seq, ts, status, previous_status, capital_frozen,"
        f" results, explanations FROM $db.reconcile_events WHERE {RANGE}"
        f" ORDER BY account_id, event_seq, event_id {LIMIT}"),
    ReadQuery(
        "recent_reconciles", "reconcile events, newest first (the dashboard's timeline)",
        "SELECT account_id, event_id, event_seq, ts, status, previous_status, capital_frozen,"
        f" results, explanations FROM $db.reconcile_events WHERE {RANGE}"
        f" ORDER BY account_id, event_seq DESC, event_id DESC {LIMIT}"),
    ReadQuery(
        "reconcile_latest", "the latest reconcile event per account: its status and the "
                            "results of the rules that were not OK (rule, code, field, delta)",
        "SELECT account_id, max(event_seq) AS last_event_seq,"
        " argMax(ts, event_seq) AS last_ts, argMax(status, event_seq) AS last_status,"
        " argMax(capital_frozen, event_seq) AS last_capital_frozen,"
        " argMax(results, event_seq) AS last_results"
        f" FROM $db.reconcile_events WHERE {RANGE}"
        f" GROUP BY account_id ORDER BY account_id {LIMIT}"),
    ReadQuery(
        "reconcile_rule_counts", "reconcile events per (rule, code) of their results",
        "SELECT JSONExtractString(r, 'rule') AS rule, JSONExtractString(r, 'code') AS code,"
        " uniqExact(event_id) AS events"
        f" FROM $db.reconcile_events ARRAY JOIN JSONExtractArrayRaw(results) AS r"
        f" WHERE {RANGE} GROUP BY rule, code ORDER BY rule, code {LIMIT}"),
)}


def get_query(name: Any) -> ReadQuery:
    if not isinstance(name, str) or not _NAME.match(name) or name not in QUERIES:
        shown = name[:40] if isinstance(name, str) else type(name).__name__
        raise UnknownQuery(f"no named query {shown!r}; GET /q lists them")
    return QUERIES[name]


def bind_params(query: ReadQuery, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Checked, typed values for every parameter ``query`` takes (defaults filled in)."""
    if len(raw) > len(_CHECKS):
        raise ParamError("too many parameters")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if not isinstance(key, str) or key not in query.params:
            shown = key[:40] if isinstance(key, str) else type(key).__name__
            raise ParamError(f"unknown parameter {shown!r} for {query.name} "
                             f"(takes {', '.join(query.params) or 'none'})")
        if isinstance(value, str) and len(value) > MAX_RAW:
            raise ParamError(f"{key} is longer than {MAX_RAW} characters")
        out[key] = _CHECKS[key](value)
    bound = {p: out.get(p, _DEFAULTS[p]) for p in query.params}
    if "since" in bound and bound["since"] >= bound["until"]:
        raise ParamError("since must be before until")
    if "limit" in bound:
        bound["limit_plus_one"] = bound.pop("limit") + 1
    return bound


def catalog() -> list[dict[str, Any]]:
    """What ``GET /q`` answers: every query with its parameters."""
    return [{"name": q.name, "doc": q.doc, "params": list(q.params)} for q in QUERIES.values()]
