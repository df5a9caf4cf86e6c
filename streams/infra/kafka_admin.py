"""Topic administration with confluent-kafka's AdminClient, and client security from env.

Owns: creating missing topics (replication 1 is the default; a multi-broker
cluster can ask for more) with their topic configs, checking and restoring the
configs of existing topics (retention is part of the contract), describing
partition counts, deleting topics and records, reading committed offsets and
watermarks, the
``topics_from_topology`` shortcut (names and partition counts, read through
``streams.topology``) and ``client_config_from_env``, the one place
the Kafka TLS/SASL variables become client settings. Must never log or raise
with secret values in the message; alters an existing topic's configs only
through :func:`align_topic_configs`, and only the keys it was asked to.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from streams.exceptions import TwinledgerError

T = TypeVar("T")

log = logging.getLogger(__name__)

_SECRET_KEYS = frozenset({"sasl.password", "ssl.key.password", "ssl.keystore.password"})
_TIMEOUT_S = 30.0


class KafkaAdminError(TwinledgerError):
    """A topic could not be created, described or deleted."""


def client_config_from_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Security settings (confluent/librdkafka keys) from ``KAFKA_*`` variables.

    Read by :func:`streams.config.load_settings`, the one place settings are
    parsed. The password is in the returned dict (the client needs it); never
    log the dict itself, use :func:`redacted`.
    """
    from streams.config import load_settings

    return dict(load_settings(env).kafka_security)


def redacted(conf: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a client config that is safe to log (secrets replaced by ``***``)."""
    return {k: ("***" if k in _SECRET_KEYS or "password" in k else v) for k, v in conf.items()}


def _admin(bootstrap: str) -> AdminClient:
    conf: dict[str, Any] = client_config_from_env()
    conf["bootstrap.servers"] = bootstrap
    return AdminClient(conf)


def _partition_counts(admin: AdminClient, names: Iterable[str] | None) -> dict[str, int]:
    meta = admin.list_topics(timeout=_TIMEOUT_S)
    wanted = None if names is None else set(names)
    return {
        name: len(t.partitions)
        for name, t in meta.topics.items()
        if t.error is None and (wanted is None or name in wanted)
    }


#: How long a process starting while the broker is unreachable (restarting, a
#: leader moving) keeps trying its first admin request before it gives up.
STARTUP_WAIT_S = 120.0


def until_reachable(what: str, fn: Callable[[], T], wait_s: float = STARTUP_WAIT_S,
                    sleep: Callable[[float], None] = time.sleep) -> T:
    """``fn()``, tried again while it fails because no broker answers, for ``wait_s``.

    Only transport failures are retried (no broker reachable, a request that
    timed out); any other error, and the last failure after ``wait_s``, is raised.
    """
    deadline = time.monotonic() + wait_s
    delay = 0.5
    while True:
        try:
            return fn()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            unreachable = isinstance(err, KafkaError) and err.code() in (
                KafkaError._TRANSPORT, KafkaError._ALL_BROKERS_DOWN, KafkaError._TIMED_OUT)
            if not unreachable or time.monotonic() + delay > deadline:
                raise
            log.warning("%s: no broker answers (%s); trying again in %.1f s", what,
                        err.str() if isinstance(err, KafkaError) else exc, delay)
            sleep(delay)
            delay = min(delay * 2, 5.0)


def ensure_topics(
    bootstrap: str,
    topics: Mapping[str, int],
    config: Mapping[str, str] | None = None,
    replication: int = 1,
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> None:
    """Create the topics of ``topics`` ({name: partitions}) that do not exist yet.

    Existing topics are left alone whatever their partition count (comparing is
    the topology validator's job, see :func:`describe_partitions`). ``config``
    is topic-level configuration for every created topic, e.g.
    ``{"cleanup.policy": "compact"}``; ``configs`` adds per-topic configs
    ({name: {key: value}}), which win. Returns once the new topics are visible
    in the metadata with all their partitions.
    """
    admin = _admin(bootstrap)
    existing = _partition_counts(admin, topics)
    missing = {n: p for n, p in topics.items() if n not in existing}
    if not missing:
        return
    new = [
        NewTopic(name, num_partitions=parts, replication_factor=replication,
                 config={**dict(config or {}), **dict((configs or {}).get(name, {}))})
        for name, parts in sorted(missing.items())
    ]
    failures: list[str] = []
    for name, future in admin.create_topics(new, request_timeout=_TIMEOUT_S).items():
        try:
            future.result(_TIMEOUT_S)
            log.info("created topic %s (%d partitions)", name, missing[name])
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            # Someone else (another worker, a parallel test) created it meanwhile.
            if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            failures.append(f"{name}: {err.str() if isinstance(err, KafkaError) else exc}")
    if failures:
        raise KafkaAdminError("could not create topics: " + "; ".join(failures))
    _wait_visible(admin, missing)


def _wait_visible(admin: AdminClient, topics: Mapping[str, int]) -> None:
    # CreateTopics returns when the controller has the topic; the metadata the
    # next client reads can trail by a moment.
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        counts = _partition_counts(admin, topics)
        if all(counts.get(n, 0) >= p for n, p in topics.items()):
            return
        if time.monotonic() > deadline:
            late = sorted(n for n, p in topics.items() if counts.get(n, 0) < p)
            raise KafkaAdminError(f"topics created but not visible after {_TIMEOUT_S:.0f} s: "
                                  f"{', '.join(late)}")
        time.sleep(0.1)


def describe_topic_configs(bootstrap: str, names: Iterable[str]) -> dict[str, dict[str, str]]:
    """The effective configs (broker defaults included) of each named, existing topic."""
    from confluent_kafka.admin import ConfigResource, ResourceType

    admin = _admin(bootstrap)
    existing = _partition_counts(admin, names)
    resources = [ConfigResource(ResourceType.TOPIC, n) for n in sorted(existing)]
    if not resources:
        return {}
    out: dict[str, dict[str, str]] = {}
    for res, future in admin.describe_configs(resources, request_timeout=_TIMEOUT_S).items():
        try:
            entries = future.result(_TIMEOUT_S)
        except KafkaException as exc:
            raise KafkaAdminError(f"cannot describe configs of {res.name}: {exc}") from None
        out[res.name] = {k: ("" if e.value is None else str(e.value)) for k, e in entries.items()}
    return out


def config_drift(wanted: Mapping[str, Mapping[str, str]],
                 actual: Mapping[str, Mapping[str, str]]) -> dict[str, dict[str, tuple[str, str]]]:
    """{topic: {key: (have, want)}} for every wanted key whose effective value differs."""
    drift: dict[str, dict[str, tuple[str, str]]] = {}
    for topic, want in wanted.items():
        have = actual.get(topic)
        if have is None:
            continue
        diff = {k: (have.get(k, ""), str(v)) for k, v in want.items()
                if have.get(k, "") != str(v)}
        if diff:
            drift[topic] = diff
    return drift


def align_topic_configs(bootstrap: str, wanted: Mapping[str, Mapping[str, str]],
                        fix: bool = True) -> dict[str, dict[str, tuple[str, str]]]:
    """Compare existing topics' configs with ``wanted``; with ``fix``, set the wanted keys.

    Only the keys named in ``wanted`` are changed (incremental alter: other
    configs an operator set stay). Returns the drift found before fixing,
    ``{topic: {key: (had, wanted)}}``; empty means every topic already matched.
    """
    from confluent_kafka.admin import (
        AlterConfigOpType,
        ConfigEntry,
        ConfigResource,
        ResourceType,
    )

    drift = config_drift(wanted, describe_topic_configs(bootstrap, wanted))
    if not drift or not fix:
        return drift
    admin = _admin(bootstrap)
    resources = [
        ConfigResource(ResourceType.TOPIC, topic, incremental_configs=[
            ConfigEntry(k, want, incremental_operation=AlterConfigOpType.SET)
            for k, (_, want) in sorted(diff.items())])
        for topic, diff in sorted(drift.items())
    ]
    failures: list[str] = []
    for res, future in admin.incremental_alter_configs(resources,
                                                       request_timeout=_TIMEOUT_S).items():
        try:
            future.result(_TIMEOUT_S)
            log.warning("topic %s: configs restored to the topology's %s", res.name,
                        {k: w for k, (_, w) in drift[res.name].items()})
        except KafkaException as exc:
            failures.append(f"{res.name}: {exc}")
    if failures:
        raise KafkaAdminError("could not set topic configs: " + "; ".join(failures))
    return drift


def delete_records_before(bootstrap: str, offsets: Mapping[tuple[str, int], int]) -> None:
    """Delete every record below ``offsets[(topic, partition)]`` (what retention does).

    For operators and the tests that prove the pipeline survives and reports
    records deleted under it; never called by the pipeline itself.
    """
    from confluent_kafka import TopicPartition

    admin = _admin(bootstrap)
    tps = [TopicPartition(t, p, o) for (t, p), o in sorted(offsets.items())]
    if not tps:
        return
    futures = admin.delete_records(tps, request_timeout=_TIMEOUT_S)
    for tp, future in futures.items():
        try:
            future.result(_TIMEOUT_S)
        except KafkaException as exc:
            raise KafkaAdminError(f"delete records {tp.topic}[{tp.partition}]: {exc}") from None


@contextmanager
def _offsets_consumer(bootstrap: str, group: str) -> Iterator[Any]:
    """A consumer that never subscribes: it only reads offsets, as ``group``."""
    from confluent_kafka import Consumer

    conf: dict[str, Any] = client_config_from_env()
    conf.update({"bootstrap.servers": bootstrap, "group.id": group,
                 "enable.auto.commit": False})
    consumer = Consumer(conf)
    try:
        yield consumer
    finally:
        consumer.close()


def _topic_partitions(consumer: Any, topics: Iterable[str],
                      errors: list[str] | None = None) -> list[Any]:
    """Every partition of the named topics that exist, in (topic, partition) order.

    A topic the broker names with an error (no leader yet, as during a restart)
    is left out too, and appended to ``errors`` when given: it exists, but its
    partitions could not be read, unlike a topic that does not exist.
    """
    from confluent_kafka import TopicPartition

    meta = consumer.list_topics(timeout=_TIMEOUT_S)
    topics = list(topics)
    if errors is not None:
        errors.extend(t for t in topics if t in meta.topics and meta.topics[t].error is not None)
    return [TopicPartition(t, p) for t in topics
            if t in meta.topics and meta.topics[t].error is None
            for p in sorted(meta.topics[t].partitions)]


def watermarks(bootstrap: str, topics: Iterable[str], errors: list[str] | None = None
               ) -> dict[tuple[str, int], tuple[int, int]]:
    """{(topic, partition): (log start offset, end offset)} of every partition of ``topics``.

    Topics that exist but whose metadata came with an error are appended to
    ``errors`` when given (a topic that does not exist has no partitions).
    """
    with _offsets_consumer(bootstrap, "twinledger-watermarks") as consumer:
        out: dict[tuple[str, int], tuple[int, int]] = {}
        for tp in _topic_partitions(consumer, topics, errors):
            lo, hi = consumer.get_watermark_offsets(tp, timeout=_TIMEOUT_S)
            out[(tp.topic, tp.partition)] = (int(lo), int(hi))
        return out


def committed_offsets(bootstrap: str, group: str, topics: Iterable[str]
                      ) -> dict[tuple[str, int], int | None]:
    """{(topic, partition): committed offset or None} of ``group`` on every partition."""
    with _offsets_consumer(bootstrap, group) as consumer:
        tps = _topic_partitions(consumer, topics)
        if not tps:
            return {}
        got = consumer.committed(tps, timeout=_TIMEOUT_S)
        return {(tp.topic, tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in got}


def describe_partitions(bootstrap: str, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each named topic that exists; missing topics are absent."""
    return _partition_counts(_admin(bootstrap), list(names))


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Delete the named topics; topics that do not exist are ignored."""
    admin = _admin(bootstrap)
    names = list(names)
    if not names:
        return
    failures: list[str] = []
    for name, future in admin.delete_topics(names, request_timeout=_TIMEOUT_S).items():
        try:
            future.result(_TIMEOUT_S)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if isinstance(err, KafkaError) and err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                continue
            failures.append(f"{name}: {err.str() if isinstance(err, KafkaError) else exc}")
    if failures:
        raise KafkaAdminError("could not delete topics: " + "; ".join(failures))
    # Deletion completes asynchronously on the broker: wait until the topics are
    # gone, or a create right after would see them, skip them, and lose them.
    deadline = time.monotonic() + _TIMEOUT_S
    while True:
        left = [n for n in names if n in admin.list_topics(timeout=_TIMEOUT_S).topics]
        if not left:
            return
        if time.monotonic() > deadline:
            raise KafkaAdminError(f"topics still present after delete: {', '.join(left)}")
        time.sleep(0.2)


def topics_from_topology(path: str | Path | None = None) -> dict[str, int]:
    """``{topic: partitions}`` of a topology file, as ``streams.topology`` resolves it.

    ``None`` reads the packaged default topology. The output topics the file
    leaves to ``output_topic_defaults:`` are included: this reads the file
    through the one loader rather than its ``topics:`` alone.
    """
    from streams.resources import default_topology
    from streams.topology import load_topology

    p = default_topology() if path is None else Path(path)
    try:
        topology = load_topology(p)
    except TwinledgerError as exc:
        raise KafkaAdminError(str(exc)) from None
    return {name: spec.partitions for name, spec in topology.topics.items()}
