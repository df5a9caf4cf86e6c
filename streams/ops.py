"""Operator subcommands: ``kafka``, ``topics``, ``replay``, ``report``, ``verify``.

Owns: small operational glue over the local broker script, the admin client
and the sink's read-only HTTP endpoint. Must not touch ClickHouse directly:
the sink process owns the chDB directory, so reads go through its endpoint.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from streams.config import Settings, load_settings
from streams.exceptions import TwinledgerError


def with_kafka(settings: Settings) -> Settings:
    """``settings`` with a bootstrap: its own, or the local broker's (started if needed)."""
    if settings.kafka_bootstrap:
        return settings
    from streams.infra.kafka_local import ensure_local_kafka

    return dataclasses.replace(settings, kafka_bootstrap=ensure_local_kafka())


def create_topics(settings: Settings, fix: bool = True) -> dict[str, int]:
    """Create every topic of topology.yaml (prefixed) that is missing, with its configs.

    Existing topics are checked: partition counts must match (a mismatch is
    refused, it cannot be fixed in place) and configs that drifted from the
    topology's (retention, timestamp type, cleanup policy) are set back when
    ``fix``; otherwise a drift raises :class:`TopicConfigDrift`.
    """
    from streams.infra.kafka_admin import align_topic_configs, describe_partitions, ensure_topics
    from streams.topology import load_topology

    topology = load_topology(settings.topology_path)
    wanted = {settings.topic(n): t.partitions for n, t in topology.topics.items()}
    configs = {settings.topic(n): dict(t.config) for n, t in topology.topics.items() if t.config}
    ensure_topics(settings.kafka_bootstrap, wanted, configs=configs)
    actual = describe_partitions(settings.kafka_bootstrap, list(wanted))
    topology.check_broker(actual, settings.topic_prefix)
    drift = align_topic_configs(settings.kafka_bootstrap, configs, fix=fix)
    if drift and not fix:
        raise TopicConfigDrift(drift)
    for topic, diff in sorted(drift.items()):
        for key, (had, want) in sorted(diff.items()):
            print(f"topics: {topic}: {key} was {had or '(unset)'}, set to {want}", file=sys.stderr)
    return actual


class TopicConfigDrift(TwinledgerError):
    """Existing topics whose configs differ from topology.yaml (``twinledger topics --check``)."""

    def __init__(self, drift: dict[str, dict[str, tuple[str, str]]]) -> None:
        self.drift = drift
        parts = [f"{t}: {k} is {h or '(unset)'}, topology wants {w}"
                 for t, d in sorted(drift.items()) for k, (h, w) in sorted(d.items())]
        super().__init__("topic configs differ from topology.yaml (run `twinledger topics` "
                         "to fix): " + "; ".join(parts))


class SinkClient:
    """Reads ClickHouse through the sink's HTTP endpoint: ``/counts`` and the named read queries.

    There is no free SQL: :meth:`read` names a query of ``sinks.readqueries``
    (``GET /q`` lists them) and gives its parameters. Sends the bearer token
    of ``TWINLEDGER_HTTP_TOKEN`` when set, and retries briefly while the sink
    answers 503 (its one read slot is busy).
    """

    def __init__(self, settings: Settings, timeout: float = 30.0, busy_seconds: float = 10.0
                 ) -> None:
        from streams.httpsec import bearer_header

        self.base = f"http://{settings.sink_http_host}:{settings.sink_http_port}"
        self.timeout = timeout
        self.busy_seconds = busy_seconds
        self.headers = {"Content-Type": "application/json", **bearer_header(settings.http_token)}
        #: names of the reads whose answer was cut at their row limit
        self.truncated: set[str] = set()

    def _call(self, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        deadline = time.monotonic() + self.busy_seconds
        pause = 0.1
        while True:
            req = urllib.request.Request(self.base + path, data=data,  # noqa: S310 - our URL
                                         headers=self.headers)
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                    return json.loads(resp.read())
            except urllib.error.HTTPError as exc:
                text = exc.read()[:500].decode(errors="replace")
                if exc.code == 503 and time.monotonic() < deadline:
                    time.sleep(pause)
                    pause = min(pause * 2, 1.0)
                    continue
                raise TwinledgerError(f"sink endpoint {path.split('?')[0]}: HTTP {exc.code}: "
                                      f"{text}") from None
            except (urllib.error.URLError, OSError) as exc:
                raise TwinledgerError(f"sink endpoint {self.base} not reachable ({exc}); "
                                      "is `twinledger sink` running?") from None

    def counts(self) -> dict[str, Any]:
        return dict(self._call("/counts"))

    def conservation(self) -> dict[str, Any]:
        """Every offset the sink committed accounted for; snapshots without holes."""
        return dict(self._call("/conservation"))

    def named(self, name: str, **params: Any) -> dict[str, Any]:
        """The whole answer of a named read query (``columns``, ``rows``, ``truncated``)."""
        clean = {k: _param_text(v) for k, v in params.items() if v is not None}
        doc = dict(self._call("/q", {"name": name, "params": clean}))
        if doc.get("truncated"):
            self.truncated.add(name)
        return doc

    def read(self, name: str, **params: Any) -> list[dict[str, Any]]:
        """The rows of a named read query; ``None`` parameters are left out."""
        return list(self.named(name, **params)["rows"])

    def healthy(self) -> bool:
        try:
            self._call("/health")
            return True
        except TwinledgerError:
            return False


def _param_text(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


#: Rows per read in a report (the named queries' maximum).
REPORT_LIMIT = 10_000


def _by_account(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault(r.pop("account_id"), []).append(r)
    return out


def _strip(row: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in row.items()}


def report(client: SinkClient, account: str | None = None, since: str | None = None,
           until: str | None = None) -> list[dict[str, Any]]:
    """Latest snapshot, reconcile results and trades per account, read from ClickHouse.

    Every read is a named query (``sinks.readqueries``). Per account: the
    figures of its last snapshot (``net_cash_flows`` is K's net cash flows),
    ``positions`` (qty, average, mark, unrealized, leverage, used margin),
    ``reconcile`` (the latest reconcile event: status and the results of the
    rules that were not OK, with their deltas), ``trades`` (one record per
    trade, by time: open/close time, quantities, average prices, realized,
    fees, net, duration; see ``streams.reporttext.trades_from_legs``).
    Spot accounts also get ``asset_balances`` (``balances FINAL``: the latest
    row per asset with the exchange's total and the drift flag),
    ``cash_flows`` (the list) and ``portfolio_snapshots``. ``stale_marks``:
    symbol -> age in seconds of the marks the last snapshot was valued at that
    were older than ``max_mark_age`` (its ``STALE_MARK`` anomaly); ``since``/``until``
    (ISO-8601) bound the event time of every table read.
    """
    from streams.reporttext import json_list, stale_ages, trades_from_legs

    params: dict[str, Any] = {"account": account, "since": since, "until": until,
                              "limit": REPORT_LIMIT}
    accounts = [_strip(r, "last_") for r in client.read("accounts", **params)]
    trades = trades_from_legs(client.read("trade_legs", **params))
    reconciles = {r["account_id"]: _strip(r, "last_")
                  for r in client.read("reconcile_latest", **params)}
    drift = {r["account_id"]: r for r in client.read("drift", **params)}
    stale = {r["account_id"]: r for r in client.read("stale_marks", **params)}
    spot = {name: _by_account(client.read(query, **params))
            for name, query in (("asset_balances", "balances"), ("cash_flows", "cash_flows"),
                                ("portfolio_snapshots", "portfolio_snapshots"))}
    for a in accounts:
        a["net_cash_flows"] = a.pop("cash_flows", None)
        a["positions"] = json_list(a.get("positions"))
        for name, rows in spot.items():
            if a["account_id"] in rows:
                a[name] = rows[a["account_id"]]
        a["trades"] = trades.get(a["account_id"], [])
        rec = reconciles.get(a["account_id"])
        a["reconcile"] = None if rec is None else {
            "status": rec.get("status"), "event_seq": rec.get("event_seq"),
            "ts": rec.get("ts"), "results": json_list(rec.get("results"))}
        flagged = stale.get(a["account_id"])
        # the snapshot of the account's last event valued at stale marks: symbol -> age
        a["stale_marks"] = stale_ages(flagged["stale_detail"]) if flagged is not None and int(
            flagged["stale_event_seq"]) == int(a["event_seq"]) else {}
        d = drift.get(a["account_id"])
        a["drift"] = None if d is None else {"active": d["drift_code"] == "DRIFT",
                                              "detail": d["drift_detail"]}
    return accounts


def format_report(accounts: list[dict[str, Any]]) -> str:
    """The text of ``twinledger report`` (``streams.reporttext.format_accounts``)."""
    from streams.reporttext import format_accounts

    return format_accounts(accounts)


def ops_main(argv: list[str]) -> int:
    """kafka, topics, replay, report, verify: arguments are parsed (and ``--help``
    answered) before any broker is started or reached."""
    from streams.helptext import parser as help_parser

    command, rest = argv[0], argv[1:]
    if command == "kafka":
        from streams.infra.kafka_local import (
            ensure_local_kafka,
            local_kafka_status,
            stop_local_kafka,
        )

        parser = help_parser("kafka")
        parser.add_argument("action", choices=["start", "stop", "status"],
                            help="start (fetching the jars the first time), stop, or status")
        action = parser.parse_args(rest).action
        if action == "start":
            print(ensure_local_kafka())
        elif action == "stop":
            stop_local_kafka()
        else:
            code, line = local_kafka_status()
            print(line)
            return 0 if code == 0 else 1
        return 0
    if command == "topics":
        parser = help_parser("topics")
        parser.add_argument("--check", action="store_true",
                            help="only compare; report drift and exit 1 instead of fixing it")
        args = parser.parse_args(rest)
        settings = with_kafka(load_settings())
        try:
            print(json.dumps(create_topics(settings, fix=not args.check), indent=2,
                             sort_keys=True))
        except TopicConfigDrift as exc:
            print(f"twinledger topics: {exc}", file=sys.stderr)
            return 1
        return 0
    if command == "replay":
        return _replay(rest)
    settings = load_settings()
    if command == "report":
        parser = help_parser("report")
        parser.add_argument("--account", help="only this account (default: every account)")
        parser.add_argument("--since", help="ISO-8601 event time, inclusive")
        parser.add_argument("--until", help="ISO-8601 event time, exclusive")
        parser.add_argument("--json", action="store_true",
                            help="print JSON instead of text lines")
        args = parser.parse_args(rest)
        client = SinkClient(settings)
        accounts = report(client, args.account, args.since, args.until)
        print(json.dumps(accounts, indent=2, default=str) if args.json else format_report(accounts))
        if client.truncated:
            print(f"twinledger report: {', '.join(sorted(client.truncated))} cut at "
                  f"{REPORT_LIMIT} rows; narrow with --account or --since/--until",
                  file=sys.stderr)
        return 0
    if command == "verify":
        parser = help_parser("verify")
        parser.add_argument("--worker-url", default=None,
                            help="compare each account's live event_seq with ClickHouse "
                                 "(default: the local worker if it answers)")
        args = parser.parse_args(rest)
        client = SinkClient(settings)
        doc = verify_pipeline(settings, client, args.worker_url)
        print(json.dumps(doc, indent=2, default=str))
        for line in doc["problems"]:
            print(f"verify: {line}", file=sys.stderr)
        for line in doc["not_checked"]:
            print(f"verify: {line}", file=sys.stderr)
        return 0 if doc["ok"] else 1
    raise TwinledgerError(f"unknown command {command}")


def _outcome_refusals(folded: dict[str, Any]) -> str:
    """The sink's own dead letters of outcome records, when a fold finding may be one."""
    refused = {t: n for t, n in (folded.get("outcome_dead_letters") or {}).items() if n}
    if not refused:
        return ""
    named = ", ".join(f"{n} of {t}" for t, n in sorted(refused.items()))
    return (f"; unless the sink refused their outcome: it dead-lettered {named} "
            "(dead_letters, by source_topic), which names no venue event")


def verify_pipeline(settings: Settings, client: SinkClient,
                    worker_url: str | None = None) -> dict[str, Any]:
    """What ``twinledger verify`` prints: counts, conservation, lag per group, live vs stored.

    ``problems`` names everything that fails, one sentence each; ``ok`` is
    true when there is none. Lag is reported, not failed: a running
    pipeline always has some.
    """
    problems: list[str] = []
    counts = client.counts()
    for table, c in counts.get("tables", {}).items():
        if isinstance(c, dict) and not c.get("match", True):
            problems.append(f"table {table}: count {c.get('count')} != distinct event ids "
                            f"{c.get('uniq')} (or latest-row figures differ): {c}")
    cons = client.conservation()
    for part in cons["offsets"]["partitions"]:
        if part["missing"]:
            ranges = ", ".join(f"{r['first']}..{r['last']}" for r in part.get("missing_ranges",
                                                                              []))
            problems.append(
                f"{part['topic']}[{part['partition']}]: {part['missing']} of the "
                f"{part['committed']} offsets the sink committed are in no table "
                f"({part['table']}, dead_letters, sink_duplicates): offsets {ranges} — rows "
                "deleted from ClickHouse, or records deleted from the topic before the sink "
                "read them")
    folded = cons.get("folded", {})
    skipped: list[str] = []
    if not folded.get("checked", True):
        skipped.append("every event below the worker's committed offset folded: not checked, "
                       + str(folded.get("pending") or folded.get("error")))
    for part in folded.get("partitions", []):
        ranges = ", ".join(f"{r['first']}..{r['last']}" for r in part["ranges"])
        first = part["first_events"][0] if part["first_events"] else {}
        problems.append(
            f"{folded.get('topic')}[{part['partition']}]: {part['unfolded']} event(s) below "
            f"the worker's committed offset left no snapshot, anomaly or dead letter: offsets "
            f"{ranges} (first: account {first.get('account_id')}, event "
            f"{first.get('event_id')}) — the worker never folded them; re-ingest those "
            "events from the venue (a replay of the worker group answers them 'duplicate')"
            + _outcome_refusals(folded))
    for acc in cons["snapshots"]["accounts_with_holes"]:
        problems.append(f"account {acc['account_id']}: {acc['missing']} snapshot(s) missing "
                        f"(event_seq reaches {acc['last_event_seq']}, {acc['snapshots']} held)")
    lag = group_lag(settings)
    for topic_part, info in lag.get("sink", {}).items():
        if info.get("below_log_start"):
            problems.append(f"sink group: {topic_part} resumes at {info['committed']} but the "
                            f"log starts at {info['log_start']}: records deleted unread")
    for topic_part, info in lag.get("worker", {}).items():
        if info.get("below_log_start"):
            problems.append(f"worker group: {topic_part} resumes at {info['committed']} but the "
                            f"log starts at {info['log_start']}: records deleted unfolded")
    live = compare_worker(settings, client, worker_url, lag)
    problems.extend(live.pop("problems", []))
    return {"ok": not problems, "problems": problems, "not_checked": skipped,
            "counts": counts, "conservation": cons, "lag": lag, "worker": live}


def group_lag(settings: Settings) -> dict[str, Any]:
    """Per group and partition: committed offset, log start, end and lag, read from Kafka."""
    from streams.infra.kafka_admin import committed_offsets, watermarks
    from streams.topology import load_topology

    if not settings.kafka_bootstrap:
        from streams.infra.kafka_local import local_kafka_running

        if not local_kafka_running():
            return {"error": "no Kafka to read offsets from (KAFKA_BOOTSTRAP_SERVERS unset and "
                             "no local broker running)"}
        settings = with_kafka(settings)
    topology = load_topology(settings.topology_path)
    groups = {"worker": (settings.app_id, [settings.topic("venue.events")]),
              "sink": (settings.sink_group, [settings.topic(t) for t in topology.sinks.values()])}
    out: dict[str, Any] = {}
    try:
        for name, (group, topics) in groups.items():
            marks = watermarks(settings.kafka_bootstrap, topics)
            committed = committed_offsets(settings.kafka_bootstrap, group, topics)
            rows: dict[str, Any] = {}
            for (topic, part), (lo, hi) in sorted(marks.items()):
                c = committed.get((topic, part))
                pos = c if c is not None else lo
                rows[f"{topic}[{part}]"] = {
                    "committed": c, "log_start": lo, "end": hi, "lag": max(0, hi - max(pos, lo)),
                    "below_log_start": c is not None and c < lo}
            out[name] = rows
            out[f"{name}_total_lag"] = sum(r["lag"] for r in rows.values())
    except TwinledgerError as exc:
        return {"error": str(exc)}
    return out


def compare_worker(settings: Settings, client: SinkClient, worker_url: str | None,
                   lag: dict[str, Any]) -> dict[str, Any]:
    """Each account's live ``event_seq`` on the worker against ClickHouse's latest snapshot.

    Only when nothing waits (both groups at lag 0): otherwise a difference is
    just work in flight and the comparison is reported as skipped.
    """
    url = (worker_url or f"http://{settings.worker_web_host}:{settings.worker_web_port}")
    if lag.get("worker_total_lag", 1) or lag.get("sink_total_lag", 1):
        return {"compared": 0, "skipped": "lag is not 0 (or Kafka unreadable): live state and "
                                          "ClickHouse may legitimately differ"}
    headers = {}
    if settings.http_token:
        from streams.httpsec import bearer_header

        headers = bearer_header(settings.http_token)
    stored = {r["account_id"]: int(r["last_event_seq"]) for r in
              client.read("accounts", limit=10_000)}
    problems: list[str] = []
    compared = 0
    for account, seq in sorted(stored.items()):
        req = urllib.request.Request(  # noqa: S310 - an http(s) URL of our worker
            f"{url.rstrip('/')}/accounts/{urllib.parse.quote(account, safe='')}",
            headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310
                live = json.loads(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                problems.append(f"account {account}: in ClickHouse (event_seq {seq}) but the "
                                "worker has no state for it")
                continue
            return {"compared": compared, "skipped": f"worker answered HTTP {exc.code}"}
        except (urllib.error.URLError, OSError):
            return {"compared": compared, "skipped": f"no worker answers at {url}"}
        compared += 1
        live_seq = int(live.get("event_seq", -1))
        if live_seq != seq:
            problems.append(f"account {account}: the worker applied {live_seq} events, "
                            f"ClickHouse's latest snapshot has event_seq {seq}")
    return {"compared": compared, "problems": problems}


def _replay(argv: list[str]) -> int:
    """Reset a consumer group's committed offsets (the group must be stopped)."""
    from confluent_kafka import Consumer, TopicPartition

    from streams.helptext import parser as help_parser

    parser = help_parser("replay")
    parser.add_argument("--group", choices=["worker", "sink"], required=True,
                        help="the worker's group (venue.events) or the sink's")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--to-earliest", action="store_true",
                       help="back to the first record still in each partition")
    where.add_argument("--to-datetime", help="back to this time, ISO-8601, e.g. "
                                             "2024-05-01T00:00:00Z")
    args = parser.parse_args(argv)
    settings = with_kafka(load_settings())
    from streams.topology import load_topology

    topology = load_topology(settings.topology_path)
    if args.group == "worker":
        group, topics = settings.app_id, [settings.topic("venue.events")]
    else:
        group, topics = settings.sink_group, [settings.topic(t) for t in topology.sinks.values()]
    conf = {"bootstrap.servers": settings.kafka_bootstrap, "group.id": group,
            "enable.auto.commit": False}
    conf.update(settings.kafka_security)
    consumer = Consumer(conf)
    try:
        meta = consumer.list_topics(timeout=10)
        tps = [TopicPartition(t, p) for t in topics for p in meta.topics[t].partitions]
        if args.to_earliest:
            for tp in tps:
                tp.offset = consumer.get_watermark_offsets(tp, timeout=10)[0]
        else:
            when = dt.datetime.fromisoformat(args.to_datetime.replace("Z", "+00:00"))
            for tp in tps:
                tp.offset = int(when.timestamp() * 1000)
            tps = consumer.offsets_for_times(tps, timeout=10)
        consumer.commit(offsets=tps, asynchronous=False)
    finally:
        consumer.close()
    for tp in tps:
        print(f"{group} {tp.topic}[{tp.partition}] -> {tp.offset}", file=sys.stderr)
    return 0
