"""Helpers shared by the gateway tests: fixture loading and a strict normalize call."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from streams.gateways import OrderMemory, Rejection, normalize_payload

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "venues"


def fixture_text(venue: str, name: str) -> str:
    return (FIXTURES / venue / name).read_text(encoding="utf-8")


def fixture_json(venue: str, name: str) -> Any:
    """A fixture decoded as a gateway decodes it: JSON numbers as exact decimals."""
    return json.loads(fixture_text(venue, name), parse_float=Decimal)


def fixture_lines(venue: str, name: str) -> list[str]:
    return [line for line in fixture_text(venue, name).splitlines() if line.strip()]


def events(venue: str, raw: object, memory: OrderMemory | None = None,
           account: str | None = "acct-1") -> list[dict[str, Any]]:
    """Normalize and insist on success: a rejection fails the test with its reason."""
    result = normalize_payload(venue, raw, memory if memory is not None else OrderMemory(),
                               account)
    if isinstance(result, Rejection):
        pytest.fail(f"unexpected rejection: {result.reason}")
    return result


def rejection(venue: str, raw: object, memory: OrderMemory | None = None,
              account: str | None = "acct-1") -> Rejection:
    result = normalize_payload(venue, raw, memory if memory is not None else OrderMemory(),
                               account)
    assert isinstance(result, Rejection), f"expected a rejection, got {result!r}"
    return result
