"""The worker's web pages as an attacker on the loopback would try them (real worker process).

Faust's generic /table and /router pages are off; every page but the probes
wants the bearer token when one is set; parameters are validated with a 400
(a 5,000-digit limit once answered 500); oversized request lines, headers and
bodies are refused by the server's parser; the worker keeps folding.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from streams.ledger.synth import generate_events
from tests.integration.pipeline import Pipeline

pytestmark = pytest.mark.integration

TOKEN = "t0ken-for-the-worker-web-test"


def _get(pipeline: Pipeline, path: str, token: str | None = TOKEN) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{pipeline.settings.worker_web_port}{path}",
                                 headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 - loopback test URL
            body = resp.read()
            return resp.status, json.loads(body) if body[:1] in (b"{", b"[") else body
    except urllib.error.HTTPError as exc:
        body = exc.read()
        return exc.code, json.loads(body) if body[:1] in (b"{", b"[") else body
    except (urllib.error.URLError, ConnectionError) as exc:  # not listening yet
        return 0, str(exc)


def _raw(pipeline: Pipeline, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", pipeline.settings.worker_web_port),
                                  timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
        except TimeoutError:
            pass
        return b"".join(chunks)


def test_worker_pages_refuse_what_they_should(pipeline: Pipeline):
    pipeline.env["TWINLEDGER_HTTP_TOKEN"] = TOKEN
    events = [e for e in generate_events(200, 4, seed=21) if e["account_id"]]
    account = events[0]["account_id"]
    pipeline.start_worker()
    pipeline.produce(events)
    deadline = time.monotonic() + 120
    while _get(pipeline, f"/accounts/{account}")[0] != 200:
        assert time.monotonic() < deadline, pipeline.logs()
        assert pipeline.worker is not None and pipeline.worker.alive(), pipeline.logs()
        time.sleep(0.3)
    # The token.
    assert _get(pipeline, f"/accounts/{account}", token=None)[0] == 401
    assert _get(pipeline, f"/accounts/{account}", token="wrong-token-wrong-token")[0] == 401
    assert _get(pipeline, "/metrics/prometheus", token=None)[0] == 401
    assert _get(pipeline, "/ready", token=None)[0] in (200, 503)  # probes need none
    # Faust's generic pages: raw state bytes and the topology are not served.
    for path in ("/table/account_to_ledger/", f"/table/account_to_ledger/{account}/",
                 "/router/", "/graph/"):
        assert _get(pipeline, path)[0] == 404, path
    # Parameters.
    status, doc = _get(pipeline, f"/accounts/{account}/trades?limit=" + "9" * 5000)
    assert status in (400, 414), (status, doc)
    status, doc = _get(pipeline, f"/accounts/{account}/trades?limit=" + "9" * 3000)
    assert status == 400 and doc["error"] == "bad_request"
    assert _get(pipeline, f"/accounts/{account}/trades?limit=-1")[0] == 400
    assert _get(pipeline, f"/accounts/{account}/trades?nope=1")[0] == 400
    assert _get(pipeline, "/accounts/" + "a" * 300)[0] == 400
    # The parser's bounds.
    big_header = (b"GET /ready HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n")
    assert _raw(pipeline, big_header).split(b" ", 2)[1] in (b"400", b"431")
    many = b"GET /ready HTTP/1.1\r\nHost: x\r\n" + b"".join(
        b"X-%d: 1\r\n" % i for i in range(500)) + b"\r\n"
    assert _raw(pipeline, many).split(b" ", 2)[1] in (b"400", b"431")
    body = b"x" * (64 * 1024)
    post = (b"POST /accounts/%s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            b"Content-Length: %d\r\n\r\n" % (account.encode(), TOKEN.encode(), len(body)) + body)
    assert _raw(pipeline, post).split(b" ", 2)[1] in (b"405", b"413")
    # Still alive and answering.
    assert pipeline.worker is not None and pipeline.worker.alive()
    assert _get(pipeline, f"/accounts/{account}")[0] == 200


def test_worker_refuses_a_non_loopback_bind_without_a_token(pipeline: Pipeline):
    pipeline.env["TWINLEDGER_WORKER_WEB_HOST"] = "0.0.0.0"  # noqa: S104 - the refused case
    pipeline.env.pop("TWINLEDGER_HTTP_TOKEN", None)
    worker = pipeline.start_worker()
    deadline = time.monotonic() + 60
    while worker.alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not worker.alive()
    assert worker.proc.returncode != 0
    assert "refusing to serve the worker web pages" in worker.log_path.read_text()
