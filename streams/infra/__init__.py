"""Infrastructure glue: the local Kafka broker of ops/kafka, topic admin, and the Kafka
client corrections and shortcuts the worker relies on.

Owns: driving ``ops/kafka/kafka.sh`` from Python (``kafka_local``); creating,
describing and deleting topics with the client security settings taken from the
environment (``kafka_admin``); Faust's seek and commit corrections
(``faust_seek``, ``faust_commit``); the garbage collector's settings of a long
running process (``gctune``); sending a batch's records as record batches and
confirming them (``record_batches``). Must not hold business logic, read
topology beyond topic names and partition counts, or start anything but the
local broker.
"""
