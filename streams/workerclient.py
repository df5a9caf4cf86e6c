"""A running worker's portfolio pages, read over HTTP.

Owns: the page of each portfolio query (:func:`worker_path`), the request
with the bearer token, and how the worker's error answers map back onto
``streams.exceptions`` (404 -> ``AccountNotFound``/``PositionNotFound``,
400 -> ``QueryError``). ``twinledger portfolio`` (without ``--file``) and the
demo's live queries both read the worker through it. Must not touch: argument
parsing or exit codes (``streams.cli``) or the answers themselves
(``streams.queries``, which the worker runs).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from streams.config import load_settings
from streams.exceptions import AccountNotFound, PositionNotFound, QueryError, TwinledgerError
from streams.httpsec import bearer_header
from streams.queries import PAGES


def query_worker(query: str, account: str, params: dict[str, Any],
                 base: str | None, timeout: float) -> dict[str, Any]:
    """One portfolio query answered by a worker's page (``base`` None: the local worker)."""
    if base is None:
        settings = load_settings()
        host = settings.worker_web_host
        if host in ("", "0.0.0.0", "::"):  # noqa: S104 - a wildcard bind, reached on loopback
            host = "127.0.0.1"
        base = f"http://{host}:{settings.worker_web_port}"
    path = worker_path(query, account, params)
    url = base.rstrip("/") + path
    if not url.startswith(("http://", "https://")):
        raise QueryError(f"--worker must be an http(s) URL, got {base!r}")
    req = urllib.request.Request(url, headers=bearer_header(load_settings().http_token))  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - http(s) checked
            return dict(json.loads(resp.read()))
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except ValueError:
            body = {}
        message = body.get("message") or f"HTTP {exc.code} from {url}"
        if exc.code == 404 and body.get("error") == "position_not_found":
            raise PositionNotFound(body.get("account_id", account),
                                   body.get("position", "")) from None
        if exc.code == 404 and body.get("error") == "account_not_found":
            raise AccountNotFound(body.get("account_id", account)) from None
        if exc.code == 400:
            raise QueryError(message) from None
        raise TwinledgerError(f"worker answered {exc.code} for {url}: {message}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TwinledgerError(f"cannot reach the worker at {base}: {reason}") from None


def worker_path(query: str, account: str, params: dict[str, Any]) -> str:
    """The worker page of a query: ``/accounts/<account>/<query>[/<symbol>]?<params>``.

    The account and the symbol are percent-encoded whole (``XBT/USD`` ->
    ``XBT%2FUSD``), which the worker decodes.
    """
    quote = urllib.parse.quote
    page = PAGES[query].replace("{symbol}", quote(str(params.get("symbol", "")), safe=""))
    query_params = {k: (str(v).lower() if isinstance(v, bool) else
                        v.isoformat() if hasattr(v, "isoformat") else str(v))
                    for k, v in params.items() if k != "symbol"}
    qs = f"?{urllib.parse.urlencode(query_params)}" if query_params else ""
    return f"/accounts/{quote(account, safe='')}{page}{qs}"
