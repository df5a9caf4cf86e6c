"""Errors of the gateway normalizers.

Owns: the typed error a normalizer raises when a raw venue payload cannot be
trusted. Must not touch: how rejections are reported (the dispatcher in
``streams.gateways`` turns every ``PayloadRejected`` into a ``Rejection``
value; ``normalize_payload`` itself never raises).
"""

from __future__ import annotations

from streams.exceptions import TwinledgerError


class GatewayError(TwinledgerError):
    """Root of the errors of ``streams.gateways``."""


class PayloadRejected(GatewayError):
    """A raw venue payload that cannot be turned into trustworthy venue events.

    ``reason`` is clear text for a human (it names the field and the value that
    failed); the caller keeps the original bytes.
    """

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
