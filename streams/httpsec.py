"""Who may talk to twinledger's HTTP servers: the bind check and the bearer token.

Owns: deciding whether a bind address is loopback, refusing a non-loopback
bind without a token, and checking an ``Authorization`` header against the
token in constant time. Must not touch: any server (the sink's endpoint and
the worker's pages both call these two functions).

``TWINLEDGER_HTTP_TOKEN`` unset: servers bind to loopback only, and anyone on
the machine may read. Set: every endpoint but ``/health`` wants
``Authorization: Bearer <token>``, and a non-loopback bind is allowed.
"""

from __future__ import annotations

import hmac
import ipaddress

from streams.exceptions import ConfigError

#: Shortest token accepted: a guessable token is no lock.
MIN_TOKEN = 16


def is_loopback(host: str) -> bool:
    """``localhost`` or a loopback IP; anything else (``0.0.0.0``, ``""``, a name) is not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str, what: str = "HTTP endpoint") -> None:
    """Raise :class:`ConfigError` unless ``host`` is loopback or a good token is configured."""
    if token and len(token) < MIN_TOKEN:
        raise ConfigError(f"TWINLEDGER_HTTP_TOKEN is shorter than {MIN_TOKEN} characters")
    if not token and not is_loopback(host):
        raise ConfigError(
            f"refusing to serve the {what} on {host!r} without a token: a non-loopback "
            "address is reachable from other machines. Set TWINLEDGER_HTTP_TOKEN (clients "
            "then send 'Authorization: Bearer <token>') or bind to 127.0.0.1.")


def authorized(header_value: str | None, token: str) -> bool:
    """Whether an ``Authorization`` header value carries ``token``; always true without one."""
    if not token:
        return True
    if not header_value:
        return False
    scheme, _, given = header_value.strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8", "replace"), token.encode("utf-8"))


def bearer_header(token: str) -> dict[str, str]:
    """The header a client sends (none without a token)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


__all__ = ["MIN_TOKEN", "authorized", "bearer_header", "check_bind", "is_loopback"]
