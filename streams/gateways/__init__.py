"""Gateways: raw venue payloads -> normalized venue events (FOLD_FORMAT dicts).

Owns: the boundary where venue quirks are normalized (LEDGER A4, A5, B1, B3,
B5, B7) and untrustworthy payloads are rejected with a reason. One module per
venue (``binance``, ``bingx``, ``kraken``, ``deltadefi``); this module is the
dispatcher and the public API. Must not touch: Kafka (``twinledger produce``
sends what this returns) or ledger rules (the fold decides what facts mean).

API::

    normalize_payload(venue, raw, memory, account_id=None) -> list[dict] | Rejection

``raw`` is one payload as the venue sent it (WebSocket frame or REST JSON;
bytes, text or an already decoded mapping). It may be wrapped by the gateway
as ``{"received_at": <ms or ISO-8601>, "frame": <payload>}``: the receive
time becomes ``ts_ingest`` (and ``ts`` for frames that carry no clock). The
call never raises: anything that cannot be trusted comes back as a
``Rejection`` with ``.reason`` and ``.raw`` (the original bytes/text), and a
rejected payload leaves ``memory`` untouched. The events come as a
``Normalized`` list whose ``.anomalies`` lists what was suspicious but
bookable (a cumulative figure that went down, say): booked per the venue's
documentation, and reported (``twinledger normalize`` prints them,
``twinledger produce`` sends them to ``ledger.anomalies``). Normalizing is deterministic:
the same payload with the same memory gives the same events and event ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from decimal import localcontext
from types import ModuleType
from typing import Any

from streams.exceptions import InvalidEvent
from streams.gateways import binance, bingx, deltadefi, kraken
from streams.gateways.common import (
    EXACT,
    KINDS,
    Context,
    GatewayAnomaly,
    Normalized,
    OrderMemory,
    Rejection,
    decode,
    original_bytes,
    ts_any,
)
from streams.gateways.exceptions import GatewayError, PayloadRejected
from streams.ledger import parse_event

__all__ = [
    "VENUES",
    "GatewayAnomaly",
    "GatewayError",
    "Normalized",
    "OrderMemory",
    "PayloadRejected",
    "Rejection",
    "normalize_payload",
    "normalizer_for",
]

_MODULES: dict[str, ModuleType] = {
    "binance": binance,
    "bingx": bingx,
    "kraken": kraken,
    "deltadefi": deltadefi,
}
VENUES: tuple[str, ...] = tuple(_MODULES)

Normalizer = Callable[..., "list[dict[str, Any]] | Rejection"]
_ENVELOPE_KEYS = frozenset({"received_at", "frame"})


def normalizer_for(venue: str) -> Normalizer:
    """The normalizer of one venue: ``f(raw, memory, account_id=None)``.

    Unknown venues raise ``GatewayError`` here (a configuration mistake, found
    at start), unlike ``normalize_payload`` which never raises.
    """
    if venue not in _MODULES:
        raise GatewayError(f"unknown venue {venue!r}; known: {', '.join(VENUES)}")

    def normalize(raw: object, memory: OrderMemory,
                  account_id: str | None = None) -> list[dict[str, Any]] | Rejection:
        return normalize_payload(venue, raw, memory, account_id)

    normalize.__name__ = f"normalize_{venue}"
    return normalize


def normalize_payload(venue: str, raw: object, memory: OrderMemory,
                      account_id: str | None = None) -> Normalized | Rejection:
    """One raw venue payload -> zero or more FOLD_FORMAT events, or a Rejection. Never raises."""
    kept = original_bytes(raw)
    try:
        module = _MODULES.get(venue)
        if module is None:
            raise PayloadRejected(f"unknown venue {venue!r}; known: {', '.join(VENUES)}")
        if not isinstance(memory, OrderMemory):
            raise PayloadRejected("memory must be an OrderMemory")
        if account_id is not None and (not isinstance(account_id, str) or not account_id.strip()):
            raise PayloadRejected("account_id must be a non-empty string")
        if _is_heartbeat(module, raw):
            return Normalized()
        payload = decode(raw)
        received_at = None
        if isinstance(payload, Mapping) and set(payload) == _ENVELOPE_KEYS:
            received_at = ts_any(payload["received_at"], "received_at")
            frame = payload["frame"]
            # The gateway may keep the frame as the text it received (BingX "Ping").
            payload = decode(frame) if isinstance(frame, str) and \
                frame.lstrip()[:1] in ("{", "[") else frame
        elif isinstance(payload, str):
            payload = payload.strip()
        txn = memory.begin()
        ctx = Context(venue=venue, account_id=account_id.strip() if account_id else None,
                      received_at=received_at)
        with localcontext(EXACT):
            events = Normalized(module.normalize(payload, txn, ctx))
        for event in events:
            _self_check(event)
        txn.commit()
        events.anomalies = tuple(ctx.anomalies)
        return events
    except PayloadRejected as exc:
        return Rejection(venue=str(venue), reason=exc.reason, raw=kept)
    except RecursionError:
        return Rejection(venue=str(venue), reason="payload nested too deeply", raw=kept)
    except Exception as exc:  # the promise is "never raises": a bug becomes a visible rejection
        return Rejection(venue=str(venue),
                         reason=f"normalizer error ({type(exc).__name__}): {exc}"[:300], raw=kept)


def _is_heartbeat(module: ModuleType, raw: object) -> bool:
    """Keep-alive texts some venues interleave with frames (BingX ``Ping``): nothing to book."""
    beats: frozenset[str] = getattr(module, "HEARTBEATS", frozenset())
    if isinstance(raw, bytes | bytearray) and len(raw) <= 16:
        raw = bytes(raw).decode("ascii", "replace")
    return isinstance(raw, str) and raw.strip() in beats


def _self_check(event: Mapping[str, Any]) -> None:
    """Guard the output contract: known kind, ids and times as text, no float anywhere."""
    if event.get("kind") not in KINDS:
        raise PayloadRejected(f"internal: unknown kind {event.get('kind')!r}")
    for key in ("event_id", "venue", "ts"):
        if not isinstance(event.get(key), str) or not event[key]:
            raise PayloadRejected(f"internal: event without {key}")
    if not isinstance(event.get("account_id"), str):
        raise PayloadRejected("internal: event without account_id")
    _no_float(event)
    try:
        # The ledger's own rules (input grammar, signs per kind): what a gateway emits
        # is what the fold and the worker accept, or the payload is rejected here.
        parse_event(event)
    except InvalidEvent as exc:
        raise PayloadRejected(f"event {event.get('event_id')}: {exc}") from None


def _no_float(value: object) -> None:
    if isinstance(value, float):
        raise PayloadRejected("internal: a float reached an event")
    if isinstance(value, Mapping):
        for v in value.values():
            _no_float(v)
    elif isinstance(value, list):
        for v in value:
            _no_float(v)
    elif not isinstance(value, str | bool) and value is not None:
        raise PayloadRejected(f"internal: {type(value).__name__} in an event (amounts are text)")
