"""Errors of the ClickHouse sinks, all under the project root ``TwinledgerError``.

Owns: the error types that sink code raises on purpose. Must not touch: the
stream-side errors (``streams.exceptions``), which the sink only catches.
Messages never carry credentials: backends mask URLs before raising.
"""

from __future__ import annotations

from streams.exceptions import TwinledgerError


class SinkError(TwinledgerError):
    """Root of the sink's own errors."""


class BackendError(SinkError):
    """ClickHouse (chDB or a server) refused or failed a statement."""


class BackendUnavailable(BackendError):
    """The backend cannot be opened (server unreachable, chDB directory locked)."""


class DDLError(SinkError):
    """Sink tables could not be created or do not match what the sink writes."""


class RangeStateError(SinkError):
    """The BEFORE/AFTER range state is inconsistent with what the consumer sees."""


class RowRejected(SinkError):
    """A decoded record that cannot become a row (wrong record type, value out of range).

    The runner turns it into a ``dead_letters`` row: inserting it would fail
    the whole batch again on every retry and stall the partition.
    """
