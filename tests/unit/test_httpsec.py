"""The bind check and the bearer token check shared by the HTTP servers."""

from __future__ import annotations

import pytest

from streams.exceptions import ConfigError
from streams.httpsec import authorized, bearer_header, check_bind, is_loopback

TOKEN = "s3cret-token-0123456789"


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("", False), ("::", False),
    ("10.0.0.5", False), ("example.com", False),
])
def test_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_non_loopback_bind_needs_a_token() -> None:
    check_bind("127.0.0.1", "")
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(ConfigError, match="TWINLEDGER_HTTP_TOKEN"):
        check_bind("0.0.0.0", "")
    with pytest.raises(ConfigError, match="shorter"):
        check_bind("127.0.0.1", "short")


@pytest.mark.parametrize(("header", "ok"), [
    (f"Bearer {TOKEN}", True), (f"bearer {TOKEN}", True), (f"Bearer  {TOKEN} ", True),
    (None, False), ("", False), (f"Basic {TOKEN}", False), (f"Bearer {TOKEN}x", False),
    (f"Bearer {TOKEN[:-1]}", False), ("Bearer", False), (TOKEN, False),
    ("Bearer \udcff", False),
])
def test_authorized(header: str | None, ok: bool) -> None:
    assert authorized(header, TOKEN) is ok
    assert authorized(header, "") is True


def test_bearer_header() -> None:
    assert bearer_header("") == {}
    assert bearer_header(TOKEN) == {"Authorization": f"Bearer {TOKEN}"}
