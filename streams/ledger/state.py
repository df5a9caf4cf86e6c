"""Per-account ledger state and its byte codec (for the Kafka changelog / state store).

Owns: ``AccountState`` and its parts (positions, trades, legs, the dedup ring)
and ``encode_state`` / ``decode_state``. The codec is JSON plus a
raw byte ring: deterministic, exact (decimals travel as their own strings) and
never evaluates anything it reads (no pickle). Must not touch: booking rules
(``fold``), topics, stores.

Layout of an encoded state::

    b"TLS1\\n" <header JSON> b"\\n" <E facts (+ anomalies) JSON> b"\\n"
        (<position JSON> b"\\n")* (<closed trade JSON> b"\\n")* <dedup ring bytes>

The header says how many positions and closed trades follow and how long the
ring is. Every part but the header is encoded once and reused by later
encodes until it changes; closed trades are decoded only when read (a
settlement, the account view). States written while the state kept an outbox
list its entries in header slot 21 and their blobs after the closed trades;
the decoder skips them (a duplicate re-sends nothing, see ``fold.apply_event``)
and the encoder writes slot 21 empty.

Hot and cold (``encode_split``): what the store writes after every batch is
the *hot* part, the layout above without the closed trades and with only the
newest slots of the dedup ring (at most ``RING_TAIL`` of them). The closed
trades and the older ring slots are history, kept in blobs beside it:

- the *dedup* blob: the whole ring as it was when it was written; rewritten
  only when the ring's tail in the hot part has grown past ``RING_TAIL``
  slots (so the hot part carries at most ``RING_TAIL`` * 16 ring bytes)::

    b"TLD1 " <version> b" " <ring bytes> b"\n" <ring bytes>

- the *archive*: the closed trades as they were when it was written;
  rewritten only when a trade it holds is settled or the recent blob has
  grown past ``RECENT_MAX`` trades (before header version 5 it also held the
  older ring slots, and was rewritten with the ring)::

    b"TLA1 " <version> b" " <closed trades> b" 0 " <trade bytes> b"\n"
        (<closed trade JSON> b"\n")*

  (before version 5: ``b" " <ring bytes> b"\n" <ring bytes>`` in place of
  ``b" 0 " <trade bytes> b"\n"``)

- the *recent* blob: the trades closed since (at most ``RECENT_MAX``),
  rewritten when one more closes::

    b"TLR1 " <version> b" " <closed trades> b"\n" (<closed trade JSON> b"\n")*

- the *log*: the recent cash flows and portfolio snapshots (``SpotBook.flows``
  and ``snaps``) and the recent anomalies. The fold only appends to them (and
  drops the oldest); no event reads them, only queries of the decoded state
  do. Rewritten when one of them changes (``_log_mark``); version 0 is the
  empty log, never stored::

    b"TLL1 " <version> b"\n" <JSON [flows, snaps, anomalies]>

The hot header (version 5 with slot 27 set, so that a decoder older than the
archive, the log, compact position lines or the dedup blob refuses it; slots
26 to 33) names the versions of the four, how many of the dedup blob's ring
slots and the archive's closed trades have been evicted since and how many
recent trades there are; its book has no flows or snapshots and its cold line
no anomalies. Each blob's versions alternate between two store slots
(``a0``/``a1``, ``r0``/``r1``, ``l0``/``l1``, ``d0``/``d1``: ``version % 2``):
the store writes them before the hot part that names them, so a crash in
between leaves the previous hot part with its blobs intact, and the replay
writes the same ones again. ``encode_state`` is the whole state inline in
one blob (no archive, no log), under header version 5 too (slot 27 unset).
Hot parts of version 2 (before the log), 3 and 4 (before the dedup blob:
their older ring slots are in the archive; the next write moves them to a
dedup blob), and whole states of version 1, still decode: their position
lines list every field (``Position.decode``); since version 4 a position
line leaves out fields at their defaults (``_position_line``).
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import sys
from array import array
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from streams.exceptions import TwinledgerError

from .events import ExchangePosition
from .numbers import D0

MAGIC = b"TLS1\n"
ARCHIVE_MAGIC = b"TLA1 "
RECENT_MAGIC = b"TLR1 "
LOG_MAGIC = b"TLL1 "
DEDUP_MAGIC = b"TLD1 "
_SLOT = 16  # 8-byte event-id hash + 8-byte payload digest
#: Ring slots kept in the hot part before the ring is written to the dedup blob
#: (``encode_split``).
RING_TAIL = 24
#: Closed trades kept in the recent blob before they are moved to the archive.
RECENT_MAX = 16


class StateDecodeError(TwinledgerError):
    """Bytes that are not an encoded ``AccountState``."""


class Output(NamedTuple):
    """One record the fold emits: ``kind`` picks the topic, ``key`` is the account id."""

    kind: str  # 'snapshot' | 'trade' | 'reconcile' | 'anomaly'
    key: str
    record: dict[str, Any]


class RuleResult(NamedTuple):
    """One reconcile rule that is not OK (``reconcile``): encoded as its five fields."""

    rule: str  # R1..R6, B8
    status: str  # WARN | ERROR
    code: str  # e.g. CAPITAL_MISMATCH
    field: str  # what was compared: capital, <symbol>:<side>.qty, balance:<asset>, ...
    delta: Decimal  # K - E, at most 18 decimal places


class Lot(NamedTuple):
    """One FIFO lot of a spot holding: quantity and its cost basis in the base currency."""

    qty: Decimal
    cost: Decimal


class Drift(NamedTuple):
    """B8: one drifting asset of the last balance frame, as plain decimal strings."""

    derived: str
    exchange: str
    delta: str  # derived - exchange
    value: str | None  # |delta| in the base currency; None when the asset has no mark


class AssetBalance(NamedTuple):
    """One asset of the exchange's last spot balance frame (E), amounts as decimal strings."""

    asset: str
    free: str
    locked: str


class Record(dict[str, Any]):
    """An output sub-record (a position of a snapshot); read-only once emitted.

    The fold reuses an unchanged one in the next snapshot (``fold.position_record``).
    """

    __slots__ = ()


class Leg:
    """One fill's part in a trade. ``pnl`` is booked realized; ``exch`` the exchange figure."""

    __slots__ = ("event_id", "order_id", "action", "qty", "price", "pnl", "fee", "cum",
                 "source", "exch", "hold", "flags", "json", "hot")

    def __init__(self, event_id: str, order_id: str, action: str, qty: Decimal, price: Decimal,
                 pnl: Decimal, fee: Decimal, cum: Decimal, source: str, exch: Decimal | None,
                 hold: int, flags: list[str]) -> None:
        self.event_id = event_id
        self.order_id = order_id
        self.action = action
        self.qty = qty
        self.price = price
        self.pnl = pnl
        self.fee = fee
        self.cum = cum
        self.source = source
        self.exch = exch
        self.hold = hold
        self.flags = flags
        self.json: bytes | None = None  # encoded form; whoever changes the leg clears it
        self.hot: bytes | None = None  # and its compact form (in a position line); likewise

    def encode(self) -> list[Any]:
        return [self.event_id, self.order_id, self.action, str(self.qty), str(self.price),
                str(self.pnl), str(self.fee), str(self.cum), self.source,
                None if self.exch is None else str(self.exch), self.hold, self.flags]

    def to_json(self) -> bytes:
        if self.json is None:
            self.json = _dumps(self.encode()).encode()
        return self.json

    def hot_json(self) -> bytes:
        """This leg as a position line holds it (``_leg_hot``), cached like ``to_json``."""
        if self.hot is None:
            self.hot = _dumps(_leg_hot(self.encode())).encode()
        return self.hot

    @classmethod
    def decode(cls, a: list[Any]) -> Leg:
        return cls(a[0], a[1], a[2], Decimal(a[3]), Decimal(a[4]), Decimal(a[5]), Decimal(a[6]),
                   Decimal(a[7]), a[8], None if a[9] is None else Decimal(a[9]), a[10],
                   list(a[11]))


class Trade:
    """One position lifecycle from flat to flat (LEDGER A13)."""

    __slots__ = ("trade_id", "no", "symbol", "position_side", "side", "market", "open_event_id",
                 "open_ts", "closed", "realized", "fees", "_legs", "_raw_legs", "dropped_legs",
                 "strategy_tag", "json")

    def __init__(self, trade_id: str, no: int, symbol: str, position_side: str, side: str,
                 market: str, open_event_id: str, open_ts: datetime, strategy_tag: str,
                 closed: bool = False, realized: Decimal = D0, fees: Decimal = D0,
                 legs: list[Leg] | None = None, dropped_legs: int = 0) -> None:
        self.trade_id = trade_id
        self.no = no
        self.symbol = symbol
        self.position_side = position_side
        self.side = side
        self.market = market
        self.open_event_id = open_event_id
        self.open_ts = open_ts
        self.strategy_tag = strategy_tag
        self.closed = closed
        self.realized = realized
        self.fees = fees
        self._legs: list[Leg] | None = [] if legs is None else legs
        # legs as decoded JSON lists, turned into Leg objects on first read:
        # restoring a state does not pay for legs the next events never touch
        self._raw_legs: list[Any] | None = None
        self.dropped_legs = dropped_legs
        # Encoded form, reused by every encode_state until the fold changes the
        # trade (a fill adds a leg, a settlement edits legs) and clears it.
        self.json: bytes | None = None

    def add_leg(self, leg: Leg, limit: int | None) -> None:
        """Append a leg, keeping at most ``limit`` (the oldest go, counted in ``dropped_legs``)."""
        self.json = None
        legs = self.legs
        legs.append(leg)
        if limit is not None and len(legs) > limit:
            drop = len(legs) - limit
            del legs[:drop]
            self.dropped_legs += drop

    def settled(self) -> None:
        """Its legs' figures were settled (``fold._settle``): encode it and them afresh."""
        self.json = None
        for leg in self.legs:
            leg.json = leg.hot = None

    @property
    def legs(self) -> list[Leg]:
        if self._legs is None:
            self._legs = [Leg.decode(x) for x in self._raw_legs or ()]
            self._raw_legs = None
        return self._legs

    def to_json(self) -> bytes:
        """This trade as JSON, cached until the fold changes the trade (and clears it)."""
        if self.json is None:
            head = _dumps([self.trade_id, self.no, self.symbol, self.position_side, self.side,
                           self.market, self.open_event_id, self.open_ts.isoformat(),
                           self.strategy_tag, self.closed, str(self.realized), str(self.fees),
                           self.dropped_legs])
            if self._legs is None:  # still as decoded: the lists are their own JSON
                legs = _dumps(self._raw_legs or []).encode()[1:-1]
            else:
                legs = b",".join([leg.to_json() for leg in self._legs])
            self.json = b"%s,[%s]]" % (head[:-1].encode(), legs)
        return self.json

    @classmethod
    def decode(cls, a: list[Any]) -> Trade:
        t = cls(a[0], a[1], a[2], a[3], a[4], a[5], a[6], datetime.fromisoformat(a[7]), a[8],
                a[9], Decimal(a[10]), Decimal(a[11]), None, a[12])
        t._legs = None
        t._raw_legs = a[13]
        return t


class Position:
    """K's position for (symbol, position_side); figures are those of the current lifecycle."""

    __slots__ = ("symbol", "position_side", "market", "qty", "avg", "basis_qty",
                 "basis_missing", "realized", "fees", "funding", "leverage", "trade", "snap",
                 "json")

    def __init__(self, symbol: str, position_side: str, market: str = "futures",
                 qty: Decimal = D0, avg: Decimal = D0, basis_qty: Decimal = D0,
                 basis_missing: bool = False, realized: Decimal = D0, fees: Decimal = D0,
                 funding: Decimal = D0, leverage: Decimal = Decimal(1),
                 trade: Trade | None = None) -> None:
        self.symbol = symbol
        self.position_side = position_side
        self.market = market
        self.qty = qty
        self.avg = avg
        self.basis_qty = basis_qty
        self.basis_missing = basis_missing
        self.realized = realized
        self.fees = fees
        self.funding = funding
        self.leverage = leverage
        self.trade = trade
        # The last PositionState record built for this position (a memo, never
        # encoded): valid while the position is untouched and its mark unchanged.
        self.snap: Record | None = None
        self.json: bytes | None = None  # encoded form; the fold clears it when it changes

    def changed(self) -> None:
        """The event changed it (``Step.touch``): its record and its line are made afresh."""
        self.json = None
        self.snap = None

    def to_json(self) -> bytes:
        """This position's line (``_position_line``), cached until it changes."""
        if self.json is None:
            self.json = _position_line(self)
        return self.json

    @classmethod
    def decode(cls, a: list[Any]) -> Position:
        """A position line of header version 1 to 3 (keys and every field in full)."""
        return cls(a[0], a[1], a[2], Decimal(a[3]), Decimal(a[4]), Decimal(a[5]), a[6],
                   Decimal(a[7]), Decimal(a[8]), Decimal(a[9]), Decimal(a[10]),
                   None if a[11] is None else Trade.decode(a[11]))


class Holding:
    """One asset of a spot book: quantity held and its cost basis in the base currency.

    ``lots`` (``Lot``, oldest first) is kept only under FIFO cost basis;
    its sums are ``qty`` and ``cost`` exactly.
    """

    __slots__ = ("qty", "cost", "lots")

    def __init__(self, qty: Decimal = D0, cost: Decimal = D0,
                 lots: list[Lot] | None = None) -> None:
        self.qty = qty
        self.cost = cost
        self.lots: list[Lot] = [] if lots is None else lots


class SpotBook:
    """The spot portfolio of an account (LEDGER part B): holdings, per-pair figures, drift.

    ``spot``: whether the account is a spot portfolio (``LedgerConfig.spot_venues``).
    ``pairs``: symbol -> [realized, fees] booked through that pair. ``drift``: asset -> its
    ``Drift`` while a DRIFT is active, else empty.
    ``fees``: fee asset -> [quantity paid, base-currency value booked] (B3, for the fee
    summary of B10). ``flows``: recent cash-flow records, ``[event_id, ts, flow, asset, amount,
    value, currency, price or None]`` as strings, oldest first. ``snaps``: recent portfolio
    snapshots (B9) ``[event_id, bucket_start, ts, equity, realized, fees, unrealized,
    cash_flows, drift]``. ``last_bucket``: the event-time interval of the last portfolio
    snapshot. ``published``: asset -> the balance figures last emitted as a ``balance``
    output, so one is emitted only when they change. ``manual_pairs`` and
    ``manual_fees``: the part of ``pairs`` and ``fees`` that ``manual`` (untagged)
    fills booked, so summaries can leave it out (B7).
    """

    __slots__ = ("spot", "assets", "pairs", "drift", "fees", "flows", "snaps", "last_bucket",
                 "published", "manual_pairs", "manual_fees")

    def __init__(self) -> None:
        self.spot = False
        self.assets: dict[str, Holding] = {}
        self.pairs: dict[str, list[Decimal]] = {}
        self.drift: dict[str, Drift] = {}
        self.fees: dict[str, list[Decimal]] = {}
        self.flows: list[list[Any]] = []
        self.snaps: list[list[Any]] = []
        self.last_bucket: int | None = None
        self.published: dict[str, list[Any]] = {}
        self.manual_pairs: dict[str, list[Decimal]] = {}
        self.manual_fees: dict[str, list[Decimal]] = {}

    def holding(self, asset: str) -> Holding:
        h = self.assets.get(asset)
        if h is None:
            h = self.assets[asset] = Holding()
        return h

    def encode(self, history: bool = True) -> list[Any]:
        """The book as JSON data; ``history=False``: ``flows`` and ``snaps`` left empty
        (a hot part keeps them in its log blob, see the module docstring)."""
        return [self.spot,
                [[a, str(h.qty), str(h.cost), [[str(q), str(c)] for q, c in h.lots]]
                 for a, h in self.assets.items()],
                [[s, str(r), str(f)] for s, (r, f) in self.pairs.items()],
                [[a, *v] for a, v in self.drift.items()],
                [[a, str(q), str(v)] for a, (q, v) in self.fees.items()],
                self.flows if history else [], self.snaps if history else [],
                self.last_bucket,
                [[a, *v] for a, v in self.published.items()],
                [[s, str(r), str(f)] for s, (r, f) in self.manual_pairs.items()],
                [[a, str(q), str(v)] for a, (q, v) in self.manual_fees.items()]]

    @classmethod
    def decode(cls, a: list[Any]) -> SpotBook:
        b = cls()
        b.spot = a[0]
        for asset, q, c, lots in a[1]:
            b.assets[asset] = Holding(Decimal(q), Decimal(c),
                                      [Lot(Decimal(x), Decimal(y)) for x, y in lots])
        b.pairs = {s: [Decimal(r), Decimal(f)] for s, r, f in a[2]}
        b.drift = {asset: Drift(*d) for asset, *d in a[3]}
        if len(a) > 4:  # states written before fees, flows and portfolio snapshots have none
            b.fees = {x: [Decimal(q), Decimal(v)] for x, q, v in a[4]}
            b.flows = a[5]
            b.snaps = a[6]
            b.last_bucket = a[7]
            b.published = {p[0]: list(p[1:]) for p in a[8]}
        if len(a) > 9:
            b.manual_pairs = {s: [Decimal(r), Decimal(f)] for s, r, f in a[9]}
            b.manual_fees = {x: [Decimal(q), Decimal(v)] for x, q, v in a[10]}
        return b


#: The attributes of an ``AccountState`` (its ``__slots__``; a compiled class has none to read).
STATE_SLOTS: tuple[str, ...] = (
    "account_id", "venue", "event_seq", "seeded", "seed", "capital", "capital_source",
    "peak_capital", "k_realized", "k_fees", "k_funding", "k_cash",
    "e_wallet", "e_available", "e_used", "e_maint", "e_assets", "e_positions",
    "positions", "closed_trades", "trade_count", "status", "results", "anomalies",
    "offsets", "ring", "_ids", "cold", "book", "headroom", "rules_memo",
    "archive_version", "archived_slots", "archive_skip", "archived_closed",
    "closed_skip", "recent_version", "recent", "log_version", "log_mark", "dedup_version",
    "closed_objects", "closed_changed",
)


class AccountState:
    """Everything the fold knows about one account: K, E, positions, trades, dedup.

    ``apply_event`` updates a state in place and returns it (the caller hands
    the state over; keep ``encode_state`` bytes to hold an earlier version).
    All amounts have at most 18 decimal places.
    """

    __slots__ = STATE_SLOTS

    def __init__(self, account_id: str, venue: str = "") -> None:
        self.account_id = account_id
        self.venue = venue
        self.event_seq = 0
        self.seeded = False
        self.seed = D0
        self.capital = D0
        self.capital_source = "seed"
        self.peak_capital = D0
        self.k_realized = D0
        self.k_fees = D0
        self.k_funding = D0
        self.k_cash = D0
        self.e_wallet: Decimal | None = None
        self.e_available = D0
        self.e_used = D0
        self.e_maint = D0
        self.e_assets: list[AssetBalance] = []
        self.e_positions: dict[tuple[str, str], ExchangePosition] | None = None
        self.positions: dict[tuple[str, str], Position] = {}
        # Closed trades, oldest first; an item stays encoded (a slice of the
        # decoded state's bytes) until it is read.
        self.closed_trades: list[Trade | bytes | memoryview] = []
        self.trade_count = 0
        self.status = "OK"
        # last reconcile results (the rules that are not OK)
        self.results: list[RuleResult] = []
        self.anomalies: list[dict[str, str]] = []
        self.offsets: dict[int, int] = {}
        self.ring = bytearray()
        self._ids: set[int] | None = None
        # encoded e_assets / e_positions (``_cold_json``); whoever changes them or the
        # anomalies clears it
        self.cold: bytes | None = None
        self.book = SpotBook()
        # An upper bound of the magnitudes the state holds (``headroom``); not encoded:
        # None until first needed, after a decode too.
        self.headroom: int | None = None
        # The last R3/R4/R6 results with their inputs, a ``reconcile.RulesMemo``
        # (``reconcile.position_rules``, which types it; this module does not import
        # reconcile, which imports it); not encoded: None after a decode, the next
        # evaluation fills it.
        self.rules_memo: Any = None
        # The archive (``encode_split``): its version (encoded) and the encoded closed
        # trades it holds (not encoded: None = unknown, write it afresh). How many of
        # the oldest ``ring`` slots the dedup blob holds (the archive, before header
        # version 5) and how many of its slots were evicted since it was written (both
        # encoded in the hot header).
        self.archive_version = 0
        self.archived_slots = 0
        self.archive_skip = 0
        self.archived_closed: list[bytes | memoryview] | None = None
        # The archived closed trades evicted since it was written, the recent blob's
        # version (encoded) and the encoded closed trades it holds (not encoded).
        self.closed_skip = 0
        self.recent_version = 0
        self.recent: list[bytes | memoryview] = []
        # The log blob (``encode_split``): its version (encoded) and what the lists it
        # holds were when it was written (``_log_mark``; not encoded: None = unknown).
        self.log_version = 0
        self.log_mark: tuple[Any, ...] | None = None
        # The dedup blob (``encode_split``): its version (encoded). ``archived_slots``
        # and ``archive_skip`` count the ring slots it holds and those evicted since.
        self.dedup_version = 0
        # Not encoded: whether ``closed_trades`` may hold ``Trade`` objects (a trade closed
        # or read since ``compact``), and whether it changed since the last
        # ``encode_split`` (appended, evicted or read: a read trade may be settled). A
        # state that never closes or reads a trade costs ``encode_split`` no scan of them.
        self.closed_objects = False
        self.closed_changed = False

    # -- E facts and anomalies (the cold line caches their encoding) ------------------
    def set_exchange_assets(self, rows: list[AssetBalance]) -> None:
        self.e_assets = rows
        self.cold = None

    def set_exchange_positions(self, positions: dict[tuple[str, str], ExchangePosition]) -> None:
        self.e_positions = positions
        self.cold = None

    def add_anomaly(self, record: dict[str, str], limit: int | None) -> None:
        """Keep an anomaly; at most ``limit`` of them, the newest."""
        self.anomalies.append(record)
        self.cold = None
        if limit is not None and len(self.anomalies) > limit:
            del self.anomalies[: len(self.anomalies) - limit]

    # -- K ---------------------------------------------------------------------------
    @property
    def k_capital(self) -> Decimal:
        """LEDGER A11: seed + realized - fees - funding + cash flows."""
        return self.seed + self.k_realized - self.k_fees - self.k_funding + self.k_cash

    # -- dedup ring ----------------------------------------------------------------
    def _id_set(self) -> set[int]:
        if self._ids is None:
            words = array("Q")
            words.frombytes(bytes(self.ring))
            self._ids = set(words[::2])
        return self._ids

    def seen_digest(self, idh: bytes) -> bytes | None:
        """The payload digest recorded for an event-id hash, or None if not in the window."""
        if int.from_bytes(idh, sys.byteorder) not in self._id_set():
            return None
        ring = self.ring
        pos = ring.find(idh)
        while pos != -1 and pos % _SLOT:
            pos = ring.find(idh, pos + 1)
        return None if pos == -1 else bytes(ring[pos + 8:pos + _SLOT])

    def remember(self, idh: bytes, digest: bytes, window: int) -> None:
        ids = self._id_set()
        self.ring += idh + digest
        ids.add(int.from_bytes(idh, sys.byteorder))
        while len(self.ring) > window * _SLOT:
            ids.discard(int.from_bytes(self.ring[:8], sys.byteorder))
            del self.ring[:_SLOT]
            if self.archived_slots:  # the oldest slot was one the dedup blob holds
                self.archived_slots -= 1
                self.archive_skip += 1

    def _closed_at(self, i: int) -> Trade:
        t = self.closed_trades[i]
        if isinstance(t, Trade):
            return t
        raw = bytes(t)
        trade = Trade.decode(json.loads(raw))
        trade.json = raw
        self.closed_trades[i] = trade
        self.closed_objects = self.closed_changed = True
        return trade

    def close_trade(self, trade: Trade, limit: int | None) -> None:
        """Keep a trade that closed; at most ``limit`` closed trades, the newest."""
        ct = self.closed_trades
        ct.append(trade)
        if limit is not None and len(ct) > limit:
            del ct[: len(ct) - limit]
        self.closed_objects = self.closed_changed = True

    def closed(self) -> list[Trade]:
        """The closed trades kept in state, oldest first, decoded."""
        return [self._closed_at(i) for i in range(len(self.closed_trades))]

    def closed_mentioning(self, text: str, reach: int | None = None) -> list[Trade]:
        """Closed trades, newest first, whose encoded form contains ``text`` as a JSON string.

        A settlement looks for its fill or order id here: only the trades that
        can match are decoded. ``reach``: only the newest that many are looked at.
        """
        needle = _dumps(text).encode()
        out = []
        n = len(self.closed_trades)
        stop = -1 if reach is None else max(-1, n - 1 - reach)
        for i in range(n - 1, stop, -1):
            t = self.closed_trades[i]
            raw = t.to_json() if isinstance(t, Trade) else t
            if needle in (raw if isinstance(raw, bytes) else bytes(raw)):
                out.append(self._closed_at(i))
        return out

    def compact(self) -> None:
        """Keep closed trades as their encoded bytes (fewer live objects; decoded on read)."""
        if not self.closed_objects:
            return
        ct = self.closed_trades
        for i, t in enumerate(ct):
            if isinstance(t, Trade):
                ct[i] = t.to_json()
        self.closed_objects = False

    def trades(self) -> list[Trade]:
        """Every trade kept in state, in opening order."""
        out = list(self.closed())
        out.extend(p.trade for p in self.positions.values() if p.trade is not None)
        out.sort(key=lambda t: t.no)
        return out


# ----------------------------------------------------------------------------- codec


def _no_default(o: Any) -> Any:
    raise TypeError(f"cannot encode {type(o).__name__} in an account state")


def _make_dumps() -> Callable[[Any], str]:
    """Compact JSON text of plain data, with one reusable C encoder (this runs per record)."""
    c_make = getattr(json.encoder, "c_make_encoder", None)
    if c_make is None:  # pragma: no cover - CPython always has the C accelerator
        return json.JSONEncoder(separators=(",", ":"), default=_no_default).encode
    # markers=None: the state codec never builds cyclic data, so skip the cycle check
    encoder = c_make(None, _no_default, json.encoder.encode_basestring_ascii, None, ":", ",",
                     False, False, True)

    def dumps(obj: Any) -> str:
        return "".join(encoder(obj, 0))

    return dumps


_dumps = _make_dumps()


def hash_event_id(event_id: str) -> bytes:
    """The 8-byte (64-bit) blake2b hash of an event id the dedup ring remembers.

    Deterministic across processes (never Python's ``hash()``). Two distinct
    ids of one account's window share a hash with probability about
    n**2 / 2**65 for n remembered ids (n = ``dedup_window``, 1024 by default:
    ~3e-14 per full window); a new id matches one of them with about
    n / 2**64 (~6e-17 per event). Such a match is never booked silently: with
    a different payload digest it is an ``EVENT_ID_CONFLICT`` (not booked,
    reported); only a payload digest colliding too (another 2**-64) would
    make it a silent duplicate.
    """
    return hashlib.blake2b(event_id.encode(), digest_size=8).digest()


# ------------------------------------------- position lines (header versions 4 and 5)
#
# A position line is a positional JSON array that leaves out its trailing fields
# equal to their defaults (``_trim``); the open trade in it leaves out what it
# shares with the position, its legs the trailing fields at their defaults. The
# field orders put the fields most often at their default last. Decimals stay
# their own strings, and a default is matched as the exact same JSON value
# ("0" is a default, "0.0" is not; 0 is not false), so decoding restores every
# field exactly. Each list below names the fields in line order; ``_REQ`` marks
# those always written, the rest are defaults (some taken from the position).
#
#   position: symbol qty avg realized fees leverage | trade=null
#             basis_qty=qty-without-its-sign funding="0" basis_missing=false
#             position_side="BOTH" market="futures"
#   trade:    trade_id no side open_ts legs | realized=position's fees=position's
#             strategy_tag="" dropped_legs=0 open_event_id=first-leg's closed=false
#             symbol=position's position_side=position's market=position's
#   leg:      event_id order_id action qty price | fee="0" hold=0 pnl="0" cum="0"
#             source="kernel_estimate" exch=null flags=[]
#
# Since version 5, ``open_ts`` is whole UTC seconds as a number when it can be
# (``_hot_time``) and a leg's action one letter (``_ACTION_CODE``); lines written
# before read the same.
#
# Closed trades (the archive, the recent blob, a whole state) keep ``Trade.to_json``.

_REQ = object()
#: Where each field of a leg line comes from in ``Leg.encode()``, and its default.
_LEG_ORDER = (0, 1, 2, 3, 4, 6, 10, 5, 7, 8, 9, 11)
_LEG_DEFAULTS: tuple[Any, ...] = (_REQ, _REQ, _REQ, _REQ, _REQ, "0", 0, "0", "0",
                                  "kernel_estimate", None, [])


def _trim(a: list[Any], defaults: list[Any] | tuple[Any, ...]) -> list[Any]:
    """``a`` without its trailing fields equal (same JSON value) to their defaults."""
    n = len(a)
    while n:
        d, x = defaults[n - 1], a[n - 1]
        if d is _REQ or type(x) is not type(d) or x != d:
            break
        n -= 1
    del a[n:]
    return a


def _untrim(a: list[Any], defaults: list[Any] | tuple[Any, ...]) -> list[Any]:
    """``a`` with its left-out trailing fields put back (``_trim`` undone)."""
    if len(a) > len(defaults) or any(d is _REQ for d in defaults[len(a):]):
        raise StateDecodeError("a position line has too few or too many fields")
    return a + [list(d) if type(d) is list else d for d in defaults[len(a):]]


#: A leg's action as a position line spells it since header version 5: one letter for
#: the fold's actions (none of which is one letter long), any other action as it is.
_ACTION_CODE = {"open": "o", "increase": "i", "reduce": "r", "close": "c", "flip": "f"}
_CODE_ACTION = {v: k for k, v in _ACTION_CODE.items()}


def _leg_hot(full: list[Any]) -> list[Any]:
    """A leg as ``Leg.encode()`` lists it, as a position line holds it."""
    a = [full[i] for i in _LEG_ORDER]
    a[2] = _ACTION_CODE.get(a[2], a[2])
    return _trim(a, _LEG_DEFAULTS)


def _leg_full(hot: list[Any]) -> list[Any]:
    """A leg of a position line as ``Leg.encode()`` lists it (``Leg.decode`` reads it).

    A line of header version 4 spells actions in full: read as they are too (a
    stored line is written back unchanged while its position is).
    """
    a = _untrim(hot, _LEG_DEFAULTS)
    a[2] = _CODE_ACTION.get(a[2], a[2])
    full: list[Any] = [None] * len(_LEG_ORDER)
    for j, i in enumerate(_LEG_ORDER):
        full[i] = a[j]
    return full


def _position_line(p: Position) -> bytes:
    """The line of ``p`` and its open trade (see above)."""
    qty = str(p.qty)
    head = _dumps([p.symbol, qty, str(p.avg), str(p.realized), str(p.fees), str(p.leverage)])
    tail = _trim([str(p.basis_qty), str(p.funding), p.basis_missing, p.position_side,
                  p.market], [qty.lstrip("-"), "0", False, "BOTH", "futures"])
    t = p.trade
    if t is None and not tail:
        return head.encode()
    parts = [head[:-1].encode(), b"null" if t is None else _trade_hot(t, p)]
    if tail:
        parts.append(_dumps(tail)[1:-1].encode())
    return b",".join(parts) + b"]"


def _trade_hot(t: Trade, p: Position) -> bytes:
    if t._legs is None:  # still as decoded
        raw = t._raw_legs or []
        legs = b",".join([_dumps(_leg_hot(x)).encode() for x in raw])
        first = raw[0][0] if raw else None
    else:
        legs = b",".join([leg.hot_json() for leg in t._legs])
        first = t._legs[0].event_id if t._legs else None
    head = _dumps([t.trade_id, t.no, t.side, _hot_time(t.open_ts)])
    tail = _trim([str(t.realized), str(t.fees), t.strategy_tag, t.dropped_legs,
                  t.open_event_id, t.closed, t.symbol, t.position_side, t.market],
                 [str(p.realized), str(p.fees), "", 0, first, False, p.symbol,
                  p.position_side, p.market])
    out = b"%s,[%s]" % (head[:-1].encode(), legs)
    if tail:
        out += b"," + _dumps(tail)[1:-1].encode()
    return out + b"]"


def _hot_time(ts: datetime) -> int | str:
    """An open trade's time in a position line: whole UTC seconds as a number (version 5)."""
    if ts.tzinfo is UTC and not ts.microsecond:
        return int(ts.timestamp())
    return ts.isoformat()


def _hot_time_read(value: int | str) -> datetime:
    if type(value) is int:
        return datetime.fromtimestamp(value, UTC)
    if isinstance(value, str):
        return datetime.fromisoformat(value)
    raise StateDecodeError(f"an open trade's time is neither seconds nor text: {value!r}")


def _decode_position_line(a: list[Any]) -> Position:
    """The position of a line ``_position_line`` wrote (JSON-decoded)."""
    if len(a) < 6:
        raise StateDecodeError("a position line has too few fields")
    symbol, qty, avg, realized, fees, leverage = a[:6]
    trade, basis_qty, funding, basis_missing, position_side, market = _untrim(
        a[6:], [None, qty.lstrip("-"), "0", False, "BOTH", "futures"])
    p = Position(symbol, position_side, market, Decimal(qty), Decimal(avg), Decimal(basis_qty),
                 basis_missing, Decimal(realized), Decimal(fees), Decimal(funding),
                 Decimal(leverage))
    if trade is not None:
        if len(trade) < 5:
            raise StateDecodeError("a trade in a position line has too few fields")
        legs = trade[4]
        (trade_id, no, side, open_ts, _, t_realized, t_fees, tag, dropped, open_event_id,
         closed, t_symbol, t_side, t_market) = _untrim(
            trade, [_REQ] * 5 + [realized, fees, "", 0, legs[0][0] if legs else None, False,
                                 symbol, position_side, market])
        t = Trade(trade_id, no, t_symbol, t_side, side, t_market, open_event_id,
                  _hot_time_read(open_ts), tag, closed, Decimal(t_realized),
                  Decimal(t_fees), None, dropped)
        t._legs = None
        t._raw_legs = [_leg_full(x) for x in legs]
        p.trade = t
    return p


_VERSION = 1
#: The header version of a hot part (``encode_split``) before the log blob: its book
#: and cold line still hold the cash flows, portfolio snapshots and anomalies.
_SPLIT_VERSION = 2
#: The header version of a hot part since: they are in the log blob. A decoder that
#: predates the archive or the log refuses it ("unsupported state version").
_LOG_VERSION = 3
#: The header version of every state written since position lines are compact
#: (``_position_line``): a hot part (header slot 27 is 1) as in version 3, a whole
#: state as in version 1. Older decoders refuse it.
_COMPACT_VERSION = 4
#: The header version of every state written since the older ring slots have a blob
#: of their own (the dedup blob) instead of the archive: as version 4, plus slot 33.
_DEDUP_VERSION = 5


def _cold_json(s: AccountState, anomalies: bool) -> bytes:
    """The cold line: E assets, E positions and (``anomalies``: a whole state) the anomalies.

    E facts change rarely, so they are encoded once (``s.cold``, without the
    closing bracket); the anomalies of a hot part are in its log blob.
    """
    if s.cold is None:
        s.cold = _dumps([
            s.e_assets,
            None if s.e_positions is None else [
                [p.symbol, p.position_side, str(p.qty), str(p.entry_price), str(p.mark_price),
                 str(p.leverage)] for p in s.e_positions.values()],
        ]).encode()[:-1]
    if anomalies:
        return b"%s,%s]" % (s.cold, _dumps(s.anomalies).encode())
    return s.cold + b"]"


def _log_mark(s: AccountState) -> tuple[Any, ...]:
    """What the log's lists are now: their lengths and newest records (the objects).

    The fold only appends to them and drops their oldest records (never edits
    one), so any change changes a length or a newest record's identity; the
    mark holds those records, so no other object can take their ``id``.
    """
    b = s.book
    return (len(b.flows), b.flows[-1] if b.flows else None, len(b.snaps),
            b.snaps[-1] if b.snaps else None, len(s.anomalies),
            s.anomalies[-1] if s.anomalies else None)


def _same_mark(a: tuple[Any, ...] | None, b: tuple[Any, ...]) -> bool:
    return a is not None and all(x is y for x, y in zip(a, b, strict=True))


def _log_json(s: AccountState) -> bytes:
    return _dumps([s.book.flows, s.book.snaps, s.anomalies]).encode()


def _header(s: AccountState, n_closed: int, ring_len: int, split: bool) -> bytes:
    return MAGIC + _dumps([
        _DEDUP_VERSION, s.account_id, s.venue, s.event_seq, s.seeded,
        str(s.seed), str(s.capital),
        s.capital_source, str(s.peak_capital), str(s.k_realized), str(s.k_fees),
        str(s.k_funding), str(s.k_cash), _opt(s.e_wallet), str(s.e_available), str(s.e_used),
        str(s.e_maint), s.trade_count, s.status,
        [[r.rule, r.status, r.code, r.field, str(r.delta)] for r in s.results],
        [[p, o] for p, o in s.offsets.items()],
        [],  # once the outbox (see the module docstring)
        len(s.positions), n_closed, ring_len,
        s.book.encode(history=not split),
        # the archive's version, whether this blob leaves the closed trades and the
        # older ring slots to their blobs, how many ring slots of the dedup blob (the
        # archive, before version 5) were evicted since it was written; the archive's
        # closed trades evicted since, the recent blob's version and length
        s.archive_version, 1 if split else 0, s.archive_skip if split else 0,
        s.closed_skip if split else 0, s.recent_version, len(s.recent) if split else 0,
        # the log blob's version (0: the empty log, never stored)
        s.log_version,
        # the dedup blob's version (0: no older ring slots, never stored); slot 28
        # (``archive_skip``) counts its slots evicted since it was written
        s.dedup_version,
    ]).encode()


def encode_state(state: AccountState) -> bytes:
    """Serialize a state: deterministic bytes; ``decode_state`` restores it exactly.

    The whole state in one blob (closed trades and the whole ring inline). As a
    side effect closed trades are kept as their bytes afterwards (see
    ``AccountState.compact``): nothing the fold computes changes.
    """
    s = state
    s.compact()
    parts: list[bytes | memoryview] = [
        _header(s, len(s.closed_trades), len(s.ring), False), _cold_json(s, True)]
    parts.extend([p.to_json() for p in s.positions.values()])
    parts.extend(s.closed_trades)  # type: ignore[arg-type]  # all bytes after compact()
    parts.append(bytes(s.ring))
    return b"\n".join(parts)


def encode_split(state: AccountState) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    """The state as its hot part and the blobs beside it that changed: ``(hot, writes)``.

    The hot part is what the store writes every time; ``writes`` are the
    archive and recent blobs (module docstring) that changed, as (name, bytes)
    with name ``a0``/``a1`` or ``r0``/``r1``, to store *before* ``hot``.
    ``decode_state(hot, blob_of)`` restores the state exactly.
    """
    s = state
    s.compact()
    closed: list[bytes | memoryview] = s.closed_trades  # type: ignore[assignment]  # compact()
    tail = len(s.ring) - s.archived_slots * _SLOT
    writes: list[tuple[bytes, bytes]] = []
    if not s.archive_version and not closed and not s.recent:
        s.archived_closed = []  # version 0: the empty archive, never stored
    # Where the stored blobs' trades are in ``closed``: the fold only appends
    # closed trades and evicts the oldest; an unchanged one is the same object
    # (or, read since, the same bytes). Anything else: a new archive.
    old = s.archived_closed
    full = old is None
    if not full and s.closed_changed:
        assert old is not None
        live = old + s.recent
        evicted = len(live)
        if closed:
            first = closed[0]
            evicted = next((k for k, x in enumerate(live) if x is first or x == first), -1)
        o_off = min(evicted, len(old))
        o_keep = len(old) - o_off
        new = closed[o_keep:]
        if (evicted < 0 or o_keep > len(closed) or len(new) > RECENT_MAX
                or not all(a is b or a == b
                           for a, b in zip(old[o_off:], closed, strict=False))):
            full = True
        else:
            s.closed_skip += o_off
            s.archived_closed = old[o_off:]
            r_off = evicted - o_off
            if not new:
                s.recent = []  # the hot header then names no recent blob
            elif r_off or len(new) != len(s.recent) or not all(
                    a is b or a == b for a, b in zip(s.recent, new, strict=True)):
                s.recent_version += 1
                s.recent = list(new)
                head = b"%s%d %d\n" % (RECENT_MAGIC, s.recent_version, len(new))
                writes.append((b"r%d" % (s.recent_version % 2), head + b"\n".join(new)))
    if full:
        # a new archive: every closed trade as it is (no ring since version 5)
        body = b"\n".join(closed)
        s.archive_version += 1
        s.archived_closed = list(closed)
        s.closed_skip = 0
        s.recent = []
        head = b"%s%d %d 0 %d\n" % (ARCHIVE_MAGIC, s.archive_version, len(closed), len(body))
        writes.append((b"a%d" % (s.archive_version % 2), head + body))
    if tail > RING_TAIL * _SLOT or (s.archived_slots and not s.dedup_version):
        # a new dedup blob: the whole ring (also the first write after a state whose
        # older slots were in its archive, header version 4)
        s.dedup_version += 1
        s.archived_slots = len(s.ring) // _SLOT
        s.archive_skip = 0
        tail = 0
        ring = bytes(s.ring)
        head = b"%s%d %d\n" % (DEDUP_MAGIC, s.dedup_version, len(ring))
        writes.append((b"d%d" % (s.dedup_version % 2), head + ring))
    s.closed_changed = False
    mark = _log_mark(s)
    if not _same_mark(s.log_mark, mark):
        s.log_mark = mark
        if s.log_version or mark != (0, None, 0, None, 0, None):
            s.log_version += 1
            head = b"%s%d\n" % (LOG_MAGIC, s.log_version)
            writes.append((b"l%d" % (s.log_version % 2), head + _log_json(s)))
    parts: list[bytes | memoryview] = [_header(s, len(closed), tail, True),
                                       _cold_json(s, False)]
    parts.extend([p.to_json() for p in s.positions.values()])
    parts.append(bytes(s.ring[len(s.ring) - tail:]))
    return b"\n".join(parts), writes


def decode_state(data: bytes,
                 blob_of: Callable[[bytes], bytes | None] | None = None) -> AccountState:
    """Restore a state from ``encode_state`` or ``encode_split`` bytes.

    ``blob_of(name)``: the stored blob of that name (``encode_split``; its hot
    bytes need their archive and recent blobs). Raises ``StateDecodeError`` on
    bad input.
    """
    if not data.startswith(MAGIC):
        raise StateDecodeError("not an encoded twinledger account state (bad magic)")
    try:
        nl = data.index(b"\n", len(MAGIC))
        h = json.loads(data[len(MAGIC):nl])
        version = h[0]
        if version not in (_VERSION, _SPLIT_VERSION, _LOG_VERSION, _COMPACT_VERSION,
                           _DEDUP_VERSION):
            raise StateDecodeError(f"unsupported state version {version!r}")
        n_pos, n_closed, ring_len = h[22], h[23], h[24]
        split = version in (_SPLIT_VERSION, _LOG_VERSION) or (
            version >= _COMPACT_VERSION and h[27] == 1)
        n_out = len(h[21])
        n_lines = 1 + n_pos + (0 if split else n_closed + n_out)
        # Find the lines without copying them: closed trades stay slices of
        # ``data`` until read, and are written back as they are.
        view = memoryview(data)
        end = len(data) - ring_len
        if end <= nl:
            raise StateDecodeError("encoded state is truncated")
        lines: list[memoryview] = []
        start = nl + 1
        for _ in range(n_lines):
            stop = data.find(b"\n", start, end)
            if stop == -1:
                raise StateDecodeError("encoded state is truncated")
            lines.append(view[start:stop])
            start = stop + 1
        if start != end:
            raise StateDecodeError("encoded state is truncated or has trailing bytes")
        ring = data[end:]
        s = AccountState(h[1], h[2])
        s.event_seq = h[3]
        s.seeded = h[4]
        s.seed = Decimal(h[5])
        s.capital = Decimal(h[6])
        s.capital_source = h[7]
        s.peak_capital = Decimal(h[8])
        s.k_realized = Decimal(h[9])
        s.k_fees = Decimal(h[10])
        s.k_funding = Decimal(h[11])
        s.k_cash = Decimal(h[12])
        s.e_wallet = None if h[13] is None else Decimal(h[13])
        s.e_available = Decimal(h[14])
        s.e_used = Decimal(h[15])
        s.e_maint = Decimal(h[16])
        s.trade_count = h[17]
        s.status = h[18]
        s.results = [RuleResult(rule, status, code, field, Decimal(delta))
                     for rule, status, code, field, delta in h[19]]
        s.offsets = {int(p): int(o) for p, o in h[20]}
        if len(h) > 25:  # states written before the spot book have none
            s.book = SpotBook.decode(h[25])
        if len(h) > 26:  # states written before the archive have none
            s.archive_version = h[26]
        if len(h) > 30:  # nor those written before the recent trades
            s.recent_version = h[30]
        if len(h) > 32:  # nor those written before the log
            s.log_version = h[32]
        if len(h) > 33:  # nor those written before the dedup blob
            s.dedup_version = h[33]
        cold = bytes(lines[0])
        e_assets, e_positions, *anomalies = json.loads(cold)
        s.e_assets = [AssetBalance(*a) for a in e_assets]
        s.anomalies = anomalies[0] if anomalies else []
        if e_positions is not None:
            s.e_positions = {}
            for a in e_positions:
                ep = ExchangePosition(a[0], a[1], Decimal(a[2]), Decimal(a[3]), Decimal(a[4]),
                                      Decimal(a[5]))
                s.e_positions[(ep.symbol, ep.position_side)] = ep
        if not anomalies:  # the cold line as ``_cold_json`` keeps it
            s.cold = cold[:-1]
        compact = version >= _COMPACT_VERSION
        for line in lines[1:1 + n_pos]:
            raw = bytes(line)
            if compact:
                p = _decode_position_line(json.loads(raw))
                p.json = raw  # as ``to_json`` writes it
            else:
                p = Position.decode(json.loads(raw))
            s.positions[(p.symbol, p.position_side)] = p
        if split:
            if version >= _DEDUP_VERSION:  # the older ring slots are in the dedup blob
                ring = _read_dedup(s, blob_of, h[28]) + ring
                _read_archive(s, blob_of, n_closed - h[31], 0, h[29], ring=False)
            else:  # in the archive
                ring = _read_archive(s, blob_of, n_closed - h[31], h[28], h[29]) + ring
            s.recent = _read_recent(blob_of, h[30], h[31])
            s.closed_trades.extend(s.recent)
            if version >= _LOG_VERSION:
                _read_log(s, blob_of)
        else:
            s.closed_trades = list(lines[1 + n_pos:1 + n_pos + n_closed])
            # the lines after them, if any, are an old state's outbox: not read
        s.ring = bytearray(ring)
        if len(s.ring) % _SLOT:
            raise StateDecodeError("dedup ring length is not a whole number of slots")
        return s
    except StateDecodeError:
        raise
    except (ValueError, IndexError, TypeError, KeyError, ArithmeticError) as exc:
        raise StateDecodeError(f"malformed encoded account state: {exc}") from None


def _lines(data: bytes, start: int, n: int) -> list[bytes | memoryview]:
    """``n`` newline-separated slices of ``data`` from ``start`` to its end, not copied."""
    view = memoryview(data)
    out: list[bytes | memoryview] = []
    for i in range(n):
        stop = data.find(b"\n", start) if i < n - 1 else len(data)
        if stop == -1:
            raise StateDecodeError("a stored archive is truncated")
        out.append(view[start:stop])
        start = stop + 1
    if (start != len(data) + 1) if n else (start != len(data)):
        raise StateDecodeError("a stored archive has trailing bytes")
    return out


def _stored_blob(blob_of: Callable[[bytes], bytes | None] | None, slot: bytes, magic: bytes,
                 version: int, noun: str, count: int | None = None,
                 ) -> tuple[bytes, int, list[bytes]]:
    """The history blob of ``version`` the hot header names: ``(bytes, body start, fields)``.

    It is stored under ``slot`` + ``version % 2`` (``a1``, ``d0``...); its first
    line is ``magic``, the version and ``fields``, whose first is its number of
    items when ``count`` is given. Missing, or of another kind, version or
    count: refused, naming ``noun`` ("archive", "recent trades"...).
    """
    verb = "are" if noun.endswith("s") else "is"
    data = None if blob_of is None else blob_of(b"%s%d" % (slot, version % 2))
    if not data:
        raise StateDecodeError(f"the {noun} (version {version}) of the state {verb} missing")
    nl = data.index(b"\n")
    first, ver, *fields = data[:nl].split(b" ")
    if (first + b" " != magic or int(ver) != version
            or (count is not None and int(fields[0]) != count)):
        raise StateDecodeError(f"the stored {noun} {verb} not version {version} of the state")
    return data, nl + 1, fields


def _read_archive(s: AccountState, blob_of: Callable[[bytes], bytes | None] | None,
                  n_closed: int, skip: int, closed_skip: int, ring: bool = True) -> bytes:
    """Fill ``s`` from the archive its hot header names; return the archived ring still live.

    ``n_closed``: the archive's closed trades still kept (``closed_skip`` were evicted).
    ``ring`` False: a version 5 hot part, whose ring slots are in the dedup blob
    (``_read_dedup``), not in its archive.
    """
    version = s.archive_version
    if not version and not n_closed and not skip and not closed_skip:
        s.archived_closed = []
        return b""  # version 0: the empty archive, never stored
    data, start, (n, ring_len, *body_len) = _stored_blob(
        blob_of, b"a", ARCHIVE_MAGIC, version, "archive", n_closed + closed_skip)
    if body_len and int(body_len[0]) != len(data) - start - int(ring_len):
        raise StateDecodeError("the stored archive is truncated")
    ring_end = start + int(ring_len)
    if ring_end > len(data) or int(ring_len) % _SLOT or skip * _SLOT > int(ring_len):
        raise StateDecodeError("the stored archive is truncated")
    closed = _lines(data, ring_end, int(n))[closed_skip:]
    s.closed_trades = closed  # type: ignore[assignment]
    s.archived_closed = list(closed)
    s.closed_skip = closed_skip
    if not ring:  # an archive written before version 5 still holds ring slots: not read
        return b""
    s.archived_slots = int(ring_len) // _SLOT - skip
    s.archive_skip = skip
    return data[start + skip * _SLOT:ring_end]


def _read_dedup(s: AccountState, blob_of: Callable[[bytes], bytes | None] | None,
                skip: int) -> bytes:
    """The older ring slots still live, from the dedup blob the hot header names.

    ``skip``: its oldest slots evicted from the window since it was written.
    """
    version = s.dedup_version
    if not version:  # version 0: no older slots, never stored
        if skip:
            raise StateDecodeError("the state names evicted slots of a dedup blob it has not")
        return b""
    data, start, (ring_len,) = _stored_blob(blob_of, b"d", DEDUP_MAGIC, version, "dedup ring")
    n = int(ring_len)
    if len(data) - start != n or n % _SLOT or skip * _SLOT > n:
        raise StateDecodeError("the stored dedup ring is truncated")
    s.archived_slots = n // _SLOT - skip
    s.archive_skip = skip
    return data[start + skip * _SLOT:]


def _read_recent(blob_of: Callable[[bytes], bytes | None] | None, version: int,
                 n: int) -> list[bytes | memoryview]:
    """The closed trades of the recent blob the hot header names (none when ``n`` is 0)."""
    if not n:
        return []
    data, start, (_,) = _stored_blob(blob_of, b"r", RECENT_MAGIC, version, "recent trades", n)
    return _lines(data, start, n)


def _read_log(s: AccountState, blob_of: Callable[[bytes], bytes | None] | None) -> None:
    """Fill ``s`` with the cash flows, portfolio snapshots and anomalies of its log blob."""
    version = s.log_version
    if version:  # version 0: the empty log, never stored
        data, start, () = _stored_blob(blob_of, b"l", LOG_MAGIC, version, "log")
        s.book.flows, s.book.snaps, s.anomalies = json.loads(data[start:])
    s.log_mark = _log_mark(s)


def _opt(d: Decimal | None) -> str | None:
    return None if d is None else str(d)
