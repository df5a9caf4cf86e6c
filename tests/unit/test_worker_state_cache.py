"""The worker's decoded-state cache never serves a state the table no longer holds."""

from streams.codec import Codec
from streams.config import load_settings
from streams.ledger import apply_event, encode_state, load_ledger_config, parse_event
from streams.topology import load_topology


def _worker(cache_size: int = 10):
    from streams.app import Worker

    settings = load_settings({"TWINLEDGER_WORKER_STATE_CACHE": str(cache_size)})
    return Worker(settings=settings, topology=load_topology(settings.topology_path),
                  codec=Codec.load(), ledger_config=load_ledger_config(None), app=None)


def _state(account: str, capital: str = "1000"):
    ev = parse_event({"kind": "anchor", "event_id": f"a-{account}-{capital}", "account_id": account,
                      "venue": "x", "ts": "2024-01-01T00:00:00Z", "capital": capital})
    return apply_event(None, ev, {}, load_ledger_config(None)).state


def test_a_cached_state_is_used_while_the_table_holds_its_bytes():
    w = _worker()
    state = _state("a1")
    blob = encode_state(state)
    w._remember_state("a1", blob, state)
    assert w._cached_state("a1", bytes(blob)) is state
    # Taken out while in use: a batch failing half-way cannot leave it behind.
    assert "a1" not in w.state_cache


def test_other_bytes_in_the_table_mean_decode_not_cache():
    w = _worker()
    state = _state("a1")
    w._remember_state("a1", encode_state(state), state)
    other = encode_state(_state("a1", "2000"))
    got = w._cached_state("a1", other)
    assert got is not state and encode_state(got) == other
    assert w._cached_state("a1", None) is None


def test_the_cache_is_bounded_least_recently_stored_first():
    w = _worker(cache_size=2)
    for acct in ("a1", "a2", "a3"):
        s = _state(acct)
        w._remember_state(acct, encode_state(s), s)
    assert list(w.state_cache) == ["a2", "a3"]
