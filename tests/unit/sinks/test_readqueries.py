"""The named read queries: the registry's SQL shape and the parameter validator."""

from __future__ import annotations

import datetime as dt

import pytest

from sinks.readqueries import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    QUERIES,
    ParamError,
    UnknownQuery,
    bind_params,
    catalog,
    get_query,
)


def test_every_query_is_fixed_text_with_bound_values_only() -> None:
    for q in QUERIES.values():
        if q.name == "counts":
            continue
        text = q.text("tl")
        assert text.lstrip().startswith("SELECT") and ";" not in text
        assert "$db." not in text and " tl." in text
        for p in q.params:
            if p == "limit":
                assert "{limit_plus_one:UInt32}" in text
            else:
                assert "{" + p + ":" in text, (q.name, p)
    assert {"counts", "accounts", "trades", "snapshots", "cash_flows", "balances",
            "dead_letters", "anomalies"} <= set(QUERIES)
    assert [c["name"] for c in catalog()] == list(QUERIES)


def test_defaults_cover_everything() -> None:
    bound = bind_params(get_query("trades"), {})
    assert bound["account"] == "" and bound["limit_plus_one"] == DEFAULT_LIMIT + 1
    assert bound["since"] < bound["until"]


def test_values_are_typed() -> None:
    bound = bind_params(get_query("trade_legs"), {
        "account": "acc-1", "since": "2024-05-01T00:00:00Z", "until": "2024-05-02T02:00:00+02:00",
        "limit": "10", "market": "spot"})
    assert bound["since"] == dt.datetime(2024, 5, 1, tzinfo=dt.UTC)
    assert bound["until"] == dt.datetime(2024, 5, 2, tzinfo=dt.UTC)
    assert bound["limit_plus_one"] == 11 and bound["market"] == "spot"
    assert bind_params(get_query("accounts"), {"limit": MAX_LIMIT})["limit_plus_one"] == \
        MAX_LIMIT + 1
    # SQL-looking text is just an account id: it is bound, never spliced.
    assert bind_params(get_query("snapshots"), {"account": "x' OR 1=1 --"})["account"] == \
        "x' OR 1=1 --"


@pytest.mark.parametrize("params", [
    {"limit": "9" * 5000},
    {"limit": "0"}, {"limit": str(MAX_LIMIT + 1)}, {"limit": "-1"}, {"limit": "1e3"},
    {"limit": True}, {"limit": 1.5}, {"limit": [1]},
    {"account": ""}, {"account": "a" * 129}, {"account": "a\x00b"}, {"account": "a\nb"},
    {"account": 5}, {"account": {"$ne": 1}},
    {"since": "yesterday"}, {"since": "1969-12-31T00:00:00Z"}, {"until": "2300-01-01"},
    {"since": "2024-05-02", "until": "2024-05-01"},
    {"since": "2" * 300},
    {"sql": "SELECT 1"}, {"settings": "readonly=0"}, {"market": "spot"},
    {"format": "TSV"},
])
def test_bad_parameters_are_refused(params: dict[str, object]) -> None:
    with pytest.raises(ParamError):
        bind_params(get_query("snapshots"), params)


@pytest.mark.parametrize("name", ["nope", "counts; DROP TABLE x", "", "../counts", "COUNTS",
                                  "x" * 5000, None, 5, ["counts"]])
def test_unknown_names_are_refused(name: object) -> None:
    with pytest.raises(UnknownQuery):
        get_query(name)


def test_counts_takes_no_parameters() -> None:
    assert bind_params(get_query("counts"), {}) == {}
    with pytest.raises(ParamError):
        bind_params(get_query("counts"), {"account": "a"})


def test_paged_queries_take_a_bounded_offset() -> None:
    from sinks.readqueries import MAX_OFFSET

    for name in ("trade_pnl", "fills", "cash_flows", "snapshots", "balances"):
        q = get_query(name)
        assert "offset" in q.params and "OFFSET {offset:UInt32}" in q.text("tl"), name
        assert bind_params(q, {})["offset"] == 0
        assert bind_params(q, {"offset": "25"})["offset"] == 25
        assert bind_params(q, {"offset": MAX_OFFSET})["offset"] == MAX_OFFSET
        for bad in ("-1", str(MAX_OFFSET + 1), "1e3", "", True, 1.5, "9" * 300):
            with pytest.raises(ParamError):
                bind_params(q, {"offset": bad})
    # Queries that are not paged refuse it like any unknown parameter.
    with pytest.raises(ParamError):
        bind_params(get_query("accounts"), {"offset": "1"})
