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
