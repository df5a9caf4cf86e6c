"""The dashboard's HTML from fixed named-query answers: escaping, the curve, the links."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sinks.dashboard import HEADERS, account_href, curve_svg, money, page

EVIL = 'acc-<img src=x onerror="alert(1)">&\'/'


def _reader(snapshots: int) -> Any:
    calls: list[tuple[str, dict[str, Any]]] = []

    def read(name: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        calls.append((name, dict(params)))
        if name == "accounts":
            return {"truncated": False, "rows": [{
                "account_id": EVIL, "last_event_seq": 7, "last_capital": "50277.0212",
                "last_equity": "50577.0249", "last_realized_pnl": "-1.5", "last_fees": "0.1",
                "last_reconcile_status": "ERROR", "last_capital_frozen": True,
                "last_positions": '[{"symbol": "<b>X</b>", "qty": "0.3", "market": "futures",'
                                  ' "position_side": "BOTH", "avg_entry_price": "60000",'
                                  ' "mark_price": "61000", "unrealized_pnl": "300.0",'
                                  ' "realized_pnl": "0", "leverage": "5"}]'}]}
        if name == "equity_curve":  # newest first, as the query answers
            return {"truncated": False, "rows": [
                {"ts": f"2024-05-06T09:{59 - i:02d}:00+00:00", "equity": str(1000 + (snapshots - i) * 3),
                 "capital": "1000", "event_seq": snapshots - i} for i in range(snapshots)]}
        if name == "recent_trades":
            return {"rows": [{"opened_at": "2024-05-06T09:01:00+00:00",
                              "trade_symbol": "<script>x</script>", "trade_side": "LONG",
                              "last_action": "close", "entry_qty": "1", "exit_qty": "1",
                              "trade_realized_pnl": "12.345", "trade_total_fees": "0.5"}]}
        if name == "recent_reconciles":
            return {"rows": [{"ts": "2024-05-06T09:02:00+00:00", "status": "ERROR",
                              "previous_status": "OK", "capital_frozen": True,
                              "explanations": ["R2 <wallet> differs by 494"],
                              "results": '[{"rule": "R1", "status": "ERROR", "code": '
                                         '"CAPITAL_MISMATCH", "field": "<capital>", '
                                         '"delta": "494"}, {"rule": "R3", "status": "OK"}]'}]}
        raise AssertionError(name)

    read.calls = calls  # type: ignore[attr-defined]
    return read


def test_values_from_topics_are_escaped_everywhere() -> None:
    read = _reader(5)
    status, body = page("/dashboard", read)
    text = body.decode()
    assert status == 200 and "<img" not in text and "&lt;img src=x" in text
    assert 'href="/dashboard/acc-%3Cimg%20src%3Dx%20onerror%3D%22alert%281%29%22%3E%26%27%2F"' \
        in text
    assert "50,277.02" in text and 'class="bad">ERROR' in text and "frozen" in text
    status, body = page(account_href(EVIL).replace("&amp;", "&"), read)
    text = body.decode()
    assert status == 200
    for raw in ("<img", "<b>X</b>", "<script>x", "<wallet>"):
        assert raw not in text, raw
    assert "&lt;script&gt;x&lt;/script&gt;" in text
    assert "R1 CAPITAL_MISMATCH: &lt;capital&gt; off by 494" in text and "R3" not in text
    # Every read is a named query with an account and a limit.
    assert {n for n, _ in read.calls} == {"accounts", "equity_curve", "recent_trades",
                                           "recent_reconciles"}
    assert all(p.get("limit") for _, p in read.calls)


def test_the_curve_has_one_point_per_snapshot_in_time_order() -> None:
    status, body = page("/dashboard/acc-1", _reader(12))
    assert status == 200
    text = body.decode()
    points = re.search(r'<polyline class="equity"[^>]* points="([^"]+)"', text)
    assert points is not None
    xy = [tuple(map(float, p.split(","))) for p in points.group(1).split()]
    assert len(xy) == 12
    assert [x for x, _ in xy] == sorted(x for x, _ in xy)
    # equity rises with time here, so y (downwards) falls
    assert [y for _, y in xy] == sorted((y for _, y in xy), reverse=True)
    assert "2024-05-06 09:48:00" in text and "2024-05-06 09:59:00" in text
    # x follows time: equally spaced snapshots, equally spaced points; a dot on each
    gaps = {round(b[0] - a[0], 1) for a, b in zip(xy, xy[1:], strict=False)}
    assert max(gaps) - min(gaps) <= 0.2
    assert text.count("<circle ") == 12


def test_unknown_account_is_a_404_page_and_nothing_runs() -> None:
    def read(name: str, params: Mapping[str, Any]) -> Mapping[str, Any]:
        return {"rows": []}

    status, body = page("/dashboard/nobody", read)
    assert status == 404 and b"no snapshot of this account" in body
    assert "script-src" not in HEADERS["Content-Security-Policy"]
    assert "default-src 'none'" in HEADERS["Content-Security-Policy"]
    assert b"<script" not in page("/dashboard", _reader(1))[1]
    assert curve_svg([]) .startswith("<p")
    assert money("1234567.005") == "1,234,567.00" and money("x<") == "x&lt;"


class _NoRows:
    """A backend whose every read answers no rows (the HTTP layer is what is tested)."""

    kind = "chdb"
    database = "tl"

    def reader(self, limits: Any = None) -> _NoRows:
        return self

    def query_with_names(self, sql: str, params: Any = None) -> tuple[list[str], list[Any]]:
        return [], []

    def close(self) -> None:
        pass


def test_with_a_token_the_dashboard_wants_the_bearer_header_and_never_a_url_token() -> None:
    import urllib.error
    import urllib.request

    from sinks.http import SinkHTTPServer

    token = "dashboard-token-0123456789"
    server = SinkHTTPServer(_NoRows(), "127.0.0.1", 0, token=token).start()  # type: ignore[arg-type]
    try:
        def get(path: str, headers: dict[str, str]) -> tuple[int, Any, bytes]:
            req = urllib.request.Request(server.url + path, headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    return resp.status, resp.headers, resp.read()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.headers, exc.read()

        for path in ("/dashboard", "/dashboard/acc-1", f"/dashboard?token={token}"):
            assert get(path, {})[0] == 401, path
        status, headers, body = get("/dashboard", {"Authorization": f"Bearer {token}"})
        assert status == 200 and body.startswith(b"<!doctype html>")
        assert headers["Content-Type"] == "text/html; charset=utf-8"
        assert headers["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        status, _, body = get("/dashboard/acc-1", {"Authorization": f"Bearer {token}"})
        assert status == 404 and b"no snapshot of this account" in body
        status, _, body = get("/dashboard/" + "a" * 200, {"Authorization": f"Bearer {token}"})
        assert status == 400 and b"account must be" in body
    finally:
        server.stop()
