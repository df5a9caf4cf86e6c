"""The one exception root of twinledger and the errors of the stream side.

Every error the project raises on purpose derives from ``TwinledgerError`` so a
caller can catch ours without catching Python's. Decode errors keep the raw
bytes and the source coordinates: the dead-letter path needs both.
"""

from __future__ import annotations


class TwinledgerError(Exception):
    """Root of every error twinledger raises on purpose."""


class ConfigError(TwinledgerError):
    """A setting (environment variable or file) is missing or malformed."""


class TopologyError(TwinledgerError):
    """topology.yaml is malformed or disagrees with the broker."""


class PartitionsMismatch(TopologyError):
    """Co-keyed topics must have the same partition count."""

    def __init__(self, topic: str, expected: int, actual: int, reference: str) -> None:
        self.topic = topic
        self.expected = expected
        self.actual = actual
        self.reference = reference
        super().__init__(
            f"topic {topic!r} has {actual} partitions but is co-keyed with "
            f"{reference!r} which has {expected}; co-keyed topics must match"
        )


class InvalidEvent(TwinledgerError):
    """An event that decodes but cannot be booked (NaN, negative quantity, missing field...)."""


class DecodeError(TwinledgerError):
    """Bytes that could not be turned into a record.

    Keeps the original bytes and where they came from so the record can be
    dead-lettered as it was received.
    """

    def __init__(
        self,
        reason: str,
        raw: bytes | None = None,
        topic: str | None = None,
        partition: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = reason
        self.raw = raw
        self.topic = topic
        self.partition = partition
        self.offset = offset
        super().__init__(reason)


class UnknownSchemaId(DecodeError):
    """The Confluent frame names a schema id we do not know."""


class QueryError(TwinledgerError):
    """A portfolio query (LEDGER B10) asked with a bad parameter (HTTP 400, CLI exit 2)."""

    code = "bad_request"


class NotFound(TwinledgerError):
    """A portfolio query named something the ledger does not hold (HTTP 404, CLI exit 3)."""

    code = "not_found"

    def __init__(self, message: str, account_id: str) -> None:
        self.account_id = account_id
        super().__init__(message)


class AccountNotFound(NotFound):
    """No state for this account (never seen, or held by another worker's partitions)."""

    code = "account_not_found"

    def __init__(self, account_id: str) -> None:
        super().__init__(f"account {account_id!r} not found", account_id)


class PositionNotFound(NotFound):
    """The account holds no position for this symbol and no balance of this asset."""

    code = "position_not_found"

    def __init__(self, account_id: str, key: str) -> None:
        self.key = key
        super().__init__(f"account {account_id!r} has no position or asset {key!r}",
                         account_id)
