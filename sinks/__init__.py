"""ClickHouse sinks: the exactly-once boundary between Kafka topics and ClickHouse tables.

Modules, lowest layer first: ``exceptions``; ``ddl`` (tables, the one source
of column truth); ``backend`` (clickhouse-connect to chDB or a server,
parameters only); ``migrate`` (runs the DDL on a backend at start); ``rows``
(record -> row, pure); ``batching`` (batch ranges and their recovery, pure);
``runner`` (the consumer and the numbered exactly-once flow); ``readqueries``
(the named read queries, the only SQL a request can run) and ``http`` (the
read-only endpoint); ``metrics``; ``main`` (``twinledger sink`` and
``verify``). This package imports ``streams.codec`` and ``streams.config``,
and ``streams.ledger.parse_event`` (the one rule of what is bookable); nothing
else of ``streams``.
"""
