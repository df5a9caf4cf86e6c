"""The pure ledger core: a deterministic fold of venue events into K/E account state.

Owns: events, state and its codec, booking rules, reconcile, output records,
the account view and the synthetic event generator. Must not touch: Faust,
Kafka, ClickHouse, clocks, randomness or I/O (a unit test enforces the imports).
"""

from __future__ import annotations

from ._native import select as _select

#: ``"compiled"`` (mypyc, built by ``make install``) or ``"python"``: see ``_native``.
MODE = _select()

from .config import LedgerConfig, load_ledger_config
from .events import Event, event_to_dict, parse_event
from .fold import FoldResult, apply, apply_event
from .state import AccountState, Output, StateDecodeError, decode_state, encode_state
from .summary import account_summary

__all__ = [
    "MODE",
    "AccountState",
    "Event",
    "FoldResult",
    "LedgerConfig",
    "Output",
    "StateDecodeError",
    "account_summary",
    "apply",
    "apply_event",
    "decode_state",
    "encode_state",
    "event_to_dict",
    "load_ledger_config",
    "parse_event",
]
