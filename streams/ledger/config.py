"""Ledger configuration: every reconcile bound, the settle tolerance and the streaming limits.

Owns: ``LedgerConfig`` (frozen, documented defaults) and ``load_ledger_config``
(YAML or JSON file). Must not touch: environment variables or topics (the app's
settings module reads those and may pass a file path here).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from streams.exceptions import ConfigError


@dataclass(frozen=True)
class LedgerConfig:
    """Every tunable of the fold. Amount bounds are in the account's margin currency.

    Reconcile (LEDGER A12; the classifier reads these, it hard-codes none):

    - ``r1_epsilon`` (0.01): |K capital - wallet balance| at or below this is OK.
    - ``r1_pending_fee_bound`` (5): above epsilon and at or below this is WARN
      ``UNSETTLED_FEE`` (fees booked by K that the wallet has not shown yet);
      beyond it ERROR ``CAPITAL_MISMATCH``.
    - ``r2_epsilon`` (0.01): |trade estimate - exchange-settled realized| at or
      below this is OK.
    - ``r2_rounding_bound`` (1): above epsilon and at or below this is WARN
      ``LOT_STEP_ROUNDING``; beyond it ERROR ``REALIZED_MISMATCH``.
    - ``r3_lot_step`` (0): |K qty - exchange qty| per (symbol, position_side)
      at or below the lot step is OK, else ERROR ``POSITION_QTY_MISMATCH``.
      ``lot_steps`` ({}) overrides it per symbol.
    - ``r4_epsilon`` (0.01) and ``r4_staleness_band`` (0.005, a fraction of the
      exchange notional): notional of the exchange quantity at K's mark vs at
      the exchange's mark; within epsilon OK, within the band WARN
      ``MARK_PRICE_STALENESS``, beyond ERROR ``MARK_MISMATCH``.
    - ``r5_epsilon`` (0.01) and ``r5_leverage_band`` (0.02, a fraction of the
      exchange used margin): K used margin vs exchange used margin; within
      epsilon OK, within the band WARN ``LEVERAGE_ROUNDING``, beyond ERROR
      ``MARGIN_MISMATCH``.
    - R6 (open position count) has no bound: any difference is ERROR.

    Settlement (LEDGER A7):

    - ``settle_tolerance`` (0.01): when the kernel estimate of a settled leg
      differs from the exchange figure by more, an anomaly
      ``SETTLE_MISMATCH`` is emitted (nothing is re-booked).

    Seeding (LEDGER A10/A11):

    - ``seed_k_from_first_wallet`` (True): an account that never received an
      ``anchor`` takes its K seed from its first valid wallet balance (one
      ``K_SEEDED_FROM_WALLET`` anomaly), so R1 compares like with like.

    Streaming limits (state must stay bounded; ``None`` = unlimited):

    The state is stored (RocksDB and its changelog) once per account per
    batch, so every byte here is written again and again; the defaults are
    sized for that. There is no outbox: outputs are flushed before the state
    is stored, so a duplicate re-sends nothing (``outbox_events`` in an
    older config file is accepted and ignored).

    - ``dedup_window`` (1024): recent event ids kept, each with an 8-byte
      payload digest (LEDGER A8, DESIGN section 4). Kafka redelivery is
      recognised by offset whatever this is; the window catches a gateway
      re-sending a frame, which happens within minutes, not thousands of events.
    - ``max_closed_trades`` (100): closed trades kept in state, for late
      settlements: a FillSettled for a trade that has left this window is
      ``UNRESOLVED`` (LEDGER A7). Kept encoded (~555 bytes each on the
      synthetic stream) in the account's history beside its hot state, which
      the worker writes only when it changes (``state.encode_split``).
    - ``max_trade_legs`` (500): legs kept per open trade; aggregates stay
      exact, a settlement for a dropped leg is ``UNRESOLVED``.
    - ``settle_reach`` (None): the (closed trades, legs per trade) a late
      settlement can reach, newest first; None is what the state keeps
      (``max_closed_trades``, ``max_trade_legs``). Not a file key: ``unbounded``
      sets it, so the offline fold, which keeps every trade for its listing,
      settles exactly what the stream can and the two agree.
    - ``max_anomalies`` (100): recent anomalies kept in state for the account
      view (every anomaly is still emitted as an output).

    Spot portfolios (LEDGER part B, booked by ``spot``):

    - ``spot_venues`` (["kraken", "deltadefi"]): accounts of these venues are
      spot portfolios from their first event. Any other account becomes one at
      its first spot fill or its first balance frame with per-asset balances;
      cash flows booked before that went to K capital raw (A11) and are not
      in its balances. A spot account books every cash flow into its balances
      and adds its base-currency value (not the raw amount) to K capital.
    - ``base_currency`` ("USD"): what every spot value, equity and PnL figure
      is expressed in; it values at 1.
    - ``valuation_pairs`` ({}): asset -> the mark symbol whose price values one
      unit of it in the base currency; an asset not listed uses
      ``<asset>/<base_currency>`` (the gateways' ``BASE/QUOTE`` spelling,
      e.g. ``XBT/USD``).
    - ``quote_assets`` (USDT, USDC, USD, EUR, GBP, XBT, BTC, ETH): the quote
      assets that split a spot symbol written without a separator: ``XBTUSD``,
      ``XBT/USD``, ``XBT-USD``, ``XBT_USD`` and Kraken's ``XXBTZUSD`` are one
      pair, ``XBT/USD`` (the canonical spelling of every output). Marks and
      valuation pairs are found in any of these spellings. A symbol that
      splits neither way is ``UNSUPPORTED_SYMBOL``.
    - ``cost_basis`` ("wac"): ``wac`` (weighted average cost) or ``fifo``.
    - ``track_manual_trades`` (True): when false, the account view's trades
      and PnL by strategy leave out ``manual`` (untagged) trades unless asked
      to include them; balances and cost basis always include every trade.
    - ``drift_tolerance`` (0.01, base currency): an exchange-reported asset
      total whose difference from the derived total is worth more than this
      raises ``DRIFT``: an anomaly with the details and a ``B8`` WARN result
      (code ``DRIFT``, field ``balance:<asset>``) in the reconcile status for
      as long as it lasts, so its start and end are reconcile transitions.
    - ``snapshot_interval_seconds`` (3600): event-time interval of portfolio
      snapshots (B9). The first event of a spot account in each interval
      (``floor(ts / interval)`` greater than the last one snapshotted) emits a
      ``portfolio`` output with the state after it. 0 turns them off.
      How long they are kept is the sink's ``TWINLEDGER_SNAPSHOT_RETENTION_DAYS``
      (a ClickHouse TTL), not a ledger setting.
    - ``max_cash_flows`` (50) and ``max_portfolio_snapshots`` (48): recent cash
      flows and portfolio snapshots kept in state for the live queries (B10);
      every one is still emitted, and ClickHouse keeps them all.
    - ``include_assets`` ([]: every asset) and ``exclude_assets`` ([]): the
      assets a spot portfolio tracks; an asset is tracked when the include
      list is empty or names it, and the exclude list does not (dust,
      airdrops, a venue's fee token kept apart). The base currency is always
      tracked. A spot fill on a pair with an untracked asset and a cash flow
      of one book nothing and raise ``ASSET_EXCLUDED`` (INFO); a fee paid in
      one is not taken from the balances and is booked at value 0 (the same
      anomaly); balance frames ignore untracked assets (no drift).
    - ``max_mark_age`` (null: off; seconds): a mark older than this at an
      event (event ts - the mark's own ts; marks without a ts have no known
      age) is stale. Valuations still use it, but never silently: every event
      whose snapshot valued a position or holding at a stale mark raises
      ``STALE_MARK`` (WARN) naming each symbol and its age, and the queries
      list it under ``stale_marks`` with ``mark_age_seconds``.
    - ``external_activity_share`` (null: off; a fraction, e.g. 0.1): a manual
      (untagged) spot trade whose value, or a cash flow whose value, is more
      than this share of the account's equity before it raises
      ``EXTERNAL_ACTIVITY`` (WARN) with the share. An account whose equity
      before was 0 or less has no share to compare (its first deposit).
    """

    r1_epsilon: Decimal = Decimal("0.01")
    r1_pending_fee_bound: Decimal = Decimal("5")
    r2_epsilon: Decimal = Decimal("0.01")
    r2_rounding_bound: Decimal = Decimal("1")
    r3_lot_step: Decimal = Decimal("0")
    lot_steps: Mapping[str, Decimal] = field(default_factory=dict)
    r4_epsilon: Decimal = Decimal("0.01")
    r4_staleness_band: Decimal = Decimal("0.005")
    r5_epsilon: Decimal = Decimal("0.01")
    r5_leverage_band: Decimal = Decimal("0.02")
    settle_tolerance: Decimal = Decimal("0.01")
    seed_k_from_first_wallet: bool = True
    dedup_window: int = 1024
    max_closed_trades: int | None = 100
    max_trade_legs: int | None = 500
    max_anomalies: int | None = 100
    settle_reach: tuple[int | None, int | None] | None = None
    spot_venues: tuple[str, ...] = ("kraken", "deltadefi")
    base_currency: str = "USD"
    valuation_pairs: Mapping[str, str] = field(default_factory=dict)
    quote_assets: tuple[str, ...] = ("USDT", "USDC", "USD", "EUR", "GBP", "XBT", "BTC", "ETH")
    cost_basis: str = "wac"
    track_manual_trades: bool = True
    drift_tolerance: Decimal = Decimal("0.01")
    snapshot_interval_seconds: int = 3600
    max_cash_flows: int | None = 50
    max_portfolio_snapshots: int | None = 48
    include_assets: tuple[str, ...] = ()
    exclude_assets: tuple[str, ...] = ()
    max_mark_age: int | None = None
    external_activity_share: Decimal | None = None

    def __post_init__(self) -> None:
        for name in _DECIMAL_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ConfigError(f"ledger config {name}: must be a finite decimal >= 0")
        for lo, hi in (
            ("r1_epsilon", "r1_pending_fee_bound"),
            ("r2_epsilon", "r2_rounding_bound"),
        ):
            if getattr(self, lo) > getattr(self, hi):
                raise ConfigError(f"ledger config {lo} must not exceed {hi}")
        for sym, step in self.lot_steps.items():
            if not isinstance(step, Decimal) or not step.is_finite() or step < 0:
                raise ConfigError(f"ledger config lot_steps[{sym!r}]: must be a decimal >= 0")
        window = self.dedup_window
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ConfigError("ledger config dedup_window: must be an integer >= 1")
        interval = self.snapshot_interval_seconds
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 0:
            raise ConfigError("ledger config snapshot_interval_seconds: must be an integer >= 0")
        for name in ("max_closed_trades", "max_trade_legs", "max_anomalies", "max_cash_flows",
                     "max_portfolio_snapshots"):
            value = getattr(self, name)
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 0
            ):
                raise ConfigError(f"ledger config {name}: must be an integer >= 0 or null")

        if not isinstance(self.base_currency, str) or not self.base_currency:
            raise ConfigError("ledger config base_currency: must be a non-empty asset code")
        if self.cost_basis not in ("wac", "fifo"):
            raise ConfigError("ledger config cost_basis: must be 'wac' or 'fifo'")
        if not isinstance(self.track_manual_trades, bool):
            raise ConfigError("ledger config track_manual_trades: must be true or false")
        for asset, sym in self.valuation_pairs.items():
            if not isinstance(asset, str) or not isinstance(sym, str) or not sym:
                raise ConfigError("ledger config valuation_pairs: expected asset -> mark symbol")
        for name in ("include_assets", "exclude_assets"):
            assets = getattr(self, name)
            if not isinstance(assets, tuple) or not all(
                    isinstance(a, str) and a for a in assets):
                raise ConfigError(f"ledger config {name}: expected a list of asset codes")
        if self.base_currency in self.exclude_assets:
            raise ConfigError("ledger config exclude_assets: the base currency "
                              f"{self.base_currency} is always tracked")
        age = self.max_mark_age
        if age is not None and (isinstance(age, bool) or not isinstance(age, int) or age < 0):
            raise ConfigError("ledger config max_mark_age: must be an integer >= 0 (seconds) "
                              "or null")
        share = self.external_activity_share
        if share is not None and (not isinstance(share, Decimal) or not share.is_finite()
                                  or share <= 0):
            raise ConfigError("ledger config external_activity_share: must be a decimal > 0 "
                              "or null")
        if not self.quote_assets or not all(
                isinstance(q, str) and q.isalnum() and q.isascii() for q in self.quote_assets):
            raise ConfigError("ledger config quote_assets: expected a list of asset codes")

    def valuation_symbol(self, asset: str) -> str:
        """B4: the mark symbol that values ``asset`` (override, else ``<asset>/<base>``).

        ``spot.price_of`` also finds it under the pair's other spellings.
        """
        return self.valuation_pairs.get(asset, f"{asset}/{self.base_currency}")

    def tracks(self, asset: str) -> bool:
        """Whether a spot portfolio books ``asset`` (``include_assets``/``exclude_assets``)."""
        if not self.include_assets and not self.exclude_assets:
            return True  # the default: every asset, decided without a lookup
        if asset == self.base_currency:
            return True
        if self.include_assets and asset not in self.include_assets:
            return False
        return asset not in self.exclude_assets

    def lot_step(self, symbol: str) -> Decimal:
        """The R3 tolerance for ``symbol``."""
        return self.lot_steps.get(symbol, self.r3_lot_step)

    def settle_bounds(self) -> tuple[int | None, int | None]:
        """(closed trades, legs per trade) a late FillSettled can reach (``settle_reach``)."""
        if self.settle_reach is not None:
            return self.settle_reach
        return self.max_closed_trades, self.max_trade_legs

    def unbounded(self) -> LedgerConfig:
        """The same bounds with unlimited history, as the offline fold uses.

        Settlement still reaches only what the stream keeps (``settle_reach``):
        listing more trades must not book differently.
        """
        return dataclasses.replace(
            self, max_closed_trades=None, max_trade_legs=None, max_anomalies=None,
            max_cash_flows=None, max_portfolio_snapshots=None,
            settle_reach=self.settle_bounds(),
        )


_DECIMAL_FIELDS = tuple(
    f.name for f in dataclasses.fields(LedgerConfig) if f.type in ("Decimal", Decimal)
)
_FIELDS = {f.name for f in dataclasses.fields(LedgerConfig)}
#: Keys of older config files that no longer mean anything (the state keeps no outbox).
_RETIRED = frozenset({"outbox_events"})
#: Fields no file sets: ``unbounded`` derives them.
_DERIVED = frozenset({"settle_reach"})


def _to_decimal(name: str, value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ConfigError(f"ledger config {name}: expected a decimal, got a boolean")
    if isinstance(value, float):
        # YAML reads 0.01 as a float; its shortest repr is the text the user wrote.
        value = repr(value)
    try:
        return Decimal(value) if isinstance(value, str | int | Decimal) else _bad(name, value)
    except InvalidOperation:
        raise ConfigError(f"ledger config {name}: {value!r} is not a decimal") from None


def _bad(name: str, value: Any) -> Decimal:
    raise ConfigError(f"ledger config {name}: expected a decimal, got {type(value).__name__}")


def config_from_mapping(data: Mapping[str, Any]) -> LedgerConfig:
    """Build a config from plain data (as read from YAML/JSON); unknown keys are errors."""
    unknown = sorted(set(data) - (_FIELDS - _DERIVED) - _RETIRED)
    if unknown:
        raise ConfigError(f"unknown ledger config key(s): {', '.join(unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name in _RETIRED:
            continue
        if name in _DECIMAL_FIELDS:
            kwargs[name] = _to_decimal(name, value)
        elif name == "spot_venues":
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError("ledger config spot_venues: expected a list of venue names")
            kwargs[name] = tuple(value)
        elif name in ("include_assets", "exclude_assets"):
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"ledger config {name}: expected a list of asset codes")
            kwargs[name] = tuple(value)
        elif name == "external_activity_share":
            kwargs[name] = None if value is None else _to_decimal(name, value)
        elif name == "quote_assets":
            if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
                raise ConfigError("ledger config quote_assets: expected a list of asset codes")
            kwargs[name] = tuple(value)
        elif name == "valuation_pairs":
            if not isinstance(value, Mapping):
                raise ConfigError("ledger config valuation_pairs: expected a mapping asset -> symbol")
            kwargs[name] = {str(k): v for k, v in value.items()}
        elif name == "lot_steps":
            if not isinstance(value, Mapping):
                raise ConfigError("ledger config lot_steps: expected a mapping symbol -> step")
            kwargs[name] = {str(k): _to_decimal(f"lot_steps[{k}]", v) for k, v in value.items()}
        else:
            kwargs[name] = value
    return LedgerConfig(**kwargs)


def load_ledger_config(path: str | None) -> LedgerConfig:
    """Read a YAML or JSON ledger config file; ``None`` gives the documented defaults.

    The file holds one mapping whose keys are ``LedgerConfig`` field names.
    Unknown keys, wrong types and bounds out of order raise ``ConfigError``.
    """
    if path is None:
        return LedgerConfig()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read ledger config {path}: {exc.strerror}") from None
    data: Any
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text, parse_float=Decimal)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as exc:  # noqa: BLE001 - any parser error is a config error
        raise ConfigError(f"ledger config {path} is not valid: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"ledger config {path}: expected a mapping at top level")
    return config_from_mapping(data)
