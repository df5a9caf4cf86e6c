"""Local infrastructure glue: the local Kafka broker of ops/kafka and topic admin.

Owns: driving ``ops/kafka/kafka.sh`` from Python (``kafka_local``) and creating,
describing and deleting topics with the client security settings taken from the
environment (``kafka_admin``). Must not hold business logic, read topology beyond
topic names and partition counts, or start anything but the local broker.
"""
