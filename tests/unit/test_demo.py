"""The demo's choices that do not need a broker."""

import datetime as dt

from streams.demo import SAMPLE, load_sample, retention_for


def test_sample_snapshots_outlive_the_ttl_only_when_the_retention_is_too_short():
    events = [{"ts": "2024-05-06T09:00:00Z"}, {"ts": "2024-05-07T09:00:00Z"}]
    today = dt.date(2026, 11, 21)
    age = (today - dt.date(2024, 5, 6)).days
    assert retention_for(events, 365, today) == age + 30
    assert retention_for(events, age + 31, today) is None  # already long enough
    assert retention_for(events, 0, today) is None  # no TTL at all
    assert retention_for([], 365, today) is None


def test_demo_sample_has_a_spot_account_with_two_pairs_a_third_asset_fee_and_drift():
    events = load_sample(SAMPLE)
    spot = [e for e in events if e.get("account_id") == "acct-spot"]
    fills = [e for e in spot if e["kind"] == "fill"]
    assert {e["symbol"] for e in fills} >= {"XBT/USD", "ETH/USD"}
    assert any(e.get("fee_asset") not in e["symbol"].split("/") for e in fills)
    assert any(not e.get("strategy_tag") for e in fills)  # a manual trade
    assert any(e["kind"] == "cash_flow" for e in spot)
    assert any(e["kind"] == "balance" and e.get("assets") for e in spot)
