"""The sink's dashboard in a real headless Chromium, on the demo's sample through a real pipeline.

Checks, per demo account, that the equity curve's polyline has one point per
snapshot the offline fold emitted; that an account id carrying HTML is shown
as text (no element made of it); that nothing runs (the page has no script,
the Content-Security-Policy forbids one); and saves screenshots of the index
and of one account under the test's tmp dir (their paths are printed).

Skips with the reason when no Chromium is installed (Debian: ``apt-get install
chromium``).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import urllib.parse
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streams.foldfile import run_fold
from streams.ledger import load_ledger_config
from streams.resources import demo_sample
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.integration

CHROMIUM = next((p for p in (shutil.which("chromium"), shutil.which("chromium-browser"),
                             shutil.which("google-chrome")) if p), None)
EVIL = 'acct-<img src=x onerror="alert(1)">'


def _chromium(tmp: Path, *args: str) -> str:
    assert CHROMIUM is not None
    out = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
         "--disable-dev-shm-usage", f"--user-data-dir={tmp / 'chromium-profile'}", *args],
        capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def _url(p: Pipeline, path: str) -> str:
    return f"http://{p.settings.sink_http_host}:{p.settings.sink_http_port}{path}"


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on PATH (Debian: apt-get install "
                                              "chromium); the dashboard test needs a real browser")
def test_dashboard_draws_each_demo_account_in_chromium(pipeline: Pipeline,
                                                       tmp_path: Path) -> None:
    p = pipeline
    lines = [line for line in Path(str(demo_sample())).read_text().splitlines() if line.strip()]
    events: list[dict[str, Any]] = [json.loads(line) for line in lines]
    events.append({"kind": "anchor", "event_id": "evil-1", "account_id": EVIL,
                   "venue": "bingx", "ts": "2024-05-06T09:00:00Z", "capital": "1000"})
    run = run_fold([json.dumps(e) for e in events], load_ledger_config(None))
    assert not run.rejected
    snapshots = Counter(o.record["account_id"] for o in run.outputs if o.kind == "snapshot")
    p.start_sink()
    p.start_worker()
    p.produce(events)
    p.wait_for({"account_snapshots": sum(snapshots.values())})

    with urllib.request.urlopen(_url(p, "/dashboard"), timeout=20) as resp:  # noqa: S310
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/html")
        assert "default-src 'none'" in resp.headers["Content-Security-Policy"]

    index = _chromium(tmp_path, "--dump-dom", _url(p, "/dashboard"))
    for account in snapshots:
        href = "/dashboard/" + urllib.parse.quote(account, safe="")
        assert f'href="{href}"' in index.replace("&amp;", "&"), account
    assert "<img" not in index and "&lt;img src=x" in index and "<script" not in index
    drift_row = re.search(r"<tr>(?:(?!</tr>).)*acct-eth-drift(?:(?!</tr>).)*</tr>", index, re.S)
    assert drift_row is not None and "ERROR" in drift_row.group(0)
    assert "frozen" in drift_row.group(0)

    for account, n in sorted(snapshots.items()):
        dom = _chromium(tmp_path, "--dump-dom",
                        _url(p, "/dashboard/" + urllib.parse.quote(account, safe="")))
        m = re.search(r'<polyline class="equity"[^>]*\spoints="([^"]*)"', dom)
        assert m is not None, (account, dom[:500])
        points = m.group(1).split()
        assert len(points) == n, (account, len(points), n)
        assert all(re.fullmatch(r"-?\d+(\.\d+)?,-?\d+(\.\d+)?", pt) for pt in points)
        assert "<img" not in dom and "<script" not in dom
        if account == "acct-eth-drift":  # the demo's frozen account says why
            assert "CAPITAL_MISMATCH: capital off by 494" in dom

    shots = {}
    for name, path in (("index", "/dashboard"), ("account", "/dashboard/acct-eth-drift")):
        shot = tmp_path / f"dashboard-{name}.png"
        _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,900",
                  "--hide-scrollbars", _url(p, path))
        assert shot.exists() and shot.stat().st_size > 10_000, shot
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        shots[name] = shot
    print(f"dashboard screenshots: {shots['index']} {shots['account']}")
