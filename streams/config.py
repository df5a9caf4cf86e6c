"""Every setting of twinledger, read from the environment in this one place.

Owns: names, defaults and parsing of environment variables. Must not touch:
Kafka, ClickHouse or Faust objects (it builds plain values that they consume).
Secrets (SASL password, ClickHouse password) are kept out of ``repr`` so they
never reach logs, errors or reports.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

from streams.exceptions import ConfigError
from streams.resources import default_topology

#: The directory above the package: the repository root in a checkout,
#: ``site-packages`` once installed. Files read at run time are package data
#: (``streams.resources``), never looked up here.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _is_checkout(root: Path) -> bool:
    return (root / "pyproject.toml").is_file() and (root / "streams" / "resources").is_dir()


def default_data_dir() -> Path:
    """``<repo>/.data`` in a checkout; ``$XDG_DATA_HOME/twinledger`` when installed."""
    if _is_checkout(PROJECT_ROOT):
        return PROJECT_ROOT / ".data"
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    return (Path(xdg) if xdg else Path("~/.local/share").expanduser()) / "twinledger"

#: Every variable with its default and meaning; the README table is this list.
ENV_DOC: dict[str, tuple[str, str]] = {
    "KAFKA_BOOTSTRAP_SERVERS": ("", "Kafka to use; empty = start/use the local broker of ops/kafka"),
    "TWINLEDGER_KAFKA_PORT": ("39092", "port of the local broker (loopback only)"),
    "KAFKA_SECURITY_PROTOCOL": ("PLAINTEXT", "PLAINTEXT | SSL | SASL_PLAINTEXT | SASL_SSL"),
    "KAFKA_SASL_MECHANISM": ("", "PLAIN | SCRAM-SHA-256 | SCRAM-SHA-512"),
    "KAFKA_SASL_USERNAME": ("", "SASL user"),
    "KAFKA_SASL_PASSWORD": ("", "SASL password (never logged)"),
    "KAFKA_SSL_CAFILE": ("", "CA bundle for TLS"),
    "TWINLEDGER_SCHEMA_REGISTRY_URL": ("", "Schema Registry; empty = the schema ids shipped "
                                       "with the package"),
    "TWINLEDGER_TOPOLOGY": ("the packaged topology.yaml", "topology file (the repository's "
                            "topology.yaml is that file)"),
    "TWINLEDGER_TOPIC_PREFIX": ("", "prefix added to every topic name (tests, multi-tenant)"),
    "TWINLEDGER_DATA_DIR": ("<repo>/.data", "runtime data: Kafka logs, Faust state, chDB "
                            "(installed package: ~/.local/share/twinledger)"),
    "TWINLEDGER_CACHE_DIR": ("~/.cache/twinledger", "downloaded Kafka jars"),
    "TWINLEDGER_CHDB_PATH": ("<data>/chdb", "chDB data directory (default sink backend)"),
    "CLICKHOUSE_URL": ("", "ClickHouse server (http://user:pass@host:8123); set = use it, not chDB"),
    "TWINLEDGER_CLICKHOUSE_DATABASE": ("twinledger", "database of the sink tables"),
    "TWINLEDGER_CLICKHOUSE_CLUSTER": ("", "ON CLUSTER name for DDL (Replicated tables)"),
    "TWINLEDGER_LEDGER_CONFIG": ("", "YAML/JSON file with reconcile bounds and ledger limits"),
    "TWINLEDGER_APP_ID": ("twinledger", "Faust app id (consumer group, changelog prefix)"),
    "TWINLEDGER_WORKER_WEB_HOST": ("127.0.0.1", "worker HTTP bind host (live state, metrics)"),
    "TWINLEDGER_WORKER_WEB_PORT": ("6066", "worker HTTP port"),
    "TWINLEDGER_WORKER_ADVERTISED_URL": ("http://<web host>:<web port>", "URL the other "
                                         "workers forward an account's page requests to "
                                         "(this worker's pages as they reach it); with a "
                                         "wildcard web host (0.0.0.0, ::) the default "
                                         "uses this machine's host name"),
    "TWINLEDGER_SINK_HTTP_HOST": ("127.0.0.1", "sink HTTP bind host (read-only queries, metrics)"),
    "TWINLEDGER_SINK_HTTP_PORT": ("8765", "sink HTTP port"),
    "TWINLEDGER_HTTP_TOKEN": ("", "bearer token the HTTP endpoints require (all but /health) "
                              "when set; needed to bind them to a non-loopback address "
                              "(never logged)"),
    "TWINLEDGER_SINK_GROUP": ("twinledger-sink", "consumer group of the sink"),
    "TWINLEDGER_SINK_BATCH_ROWS": ("10000", "max rows per insert batch"),
    "TWINLEDGER_SINK_BATCH_SECONDS": ("1.0", "max seconds a batch waits to fill"),
    "TWINLEDGER_SNAPSHOT_RETENTION_DAYS": ("365", "days portfolio snapshots are kept in "
                                           "ClickHouse (TTL on event time); 0 = forever"),
    "TWINLEDGER_WORKER_BATCH": ("2000", "max events the agent takes per batch"),
    "TWINLEDGER_WORKER_BATCH_SECONDS": ("0.2", "max seconds the agent waits to fill a batch"),
    "TWINLEDGER_WORKER_LINGER_MS": ("5", "the worker's producer waits this long to fill a "
                                    "batch of records (each batch is flushed anyway)"),
    "TWINLEDGER_WORKER_MAX_BATCH_BYTES": ("262144", "the worker's producer: max bytes of one "
                                          "partition's record batch"),
    "TWINLEDGER_WORKER_COMPRESSION": ("none", "the worker's producer compression: none | "
                                      "gzip | snappy | lz4 | zstd"),
    "TWINLEDGER_STORE": ("rocksdb", "Faust table store: rocksdb | memory"),
    "TWINLEDGER_WORKER_STATE_CACHE": ("10000", "decoded account states a worker keeps in memory"),
    "TWINLEDGER_GC_GEN0": ("20000", "a worker or sink collects its young garbage every this "
                           "many allocations, after freezing what start-up allocated; "
                           "0 = Python's defaults"),
    "TWINLEDGER_WORKER_STALL_SECONDS": ("60", "the worker is stalled (503 on /ready, "
                                        "metric, log) when its agent takes no event for this "
                                        "long while records wait; 0 = watchdog off"),
    "TWINLEDGER_WORKER_STALL_GRACE_SECONDS": ("120", "a worker stalled this much longer exits "
                                              "with code 70 so its supervisor restarts it"),
    "TWINLEDGER_WORKER_INSTANCE_ID": ("<app id>-<host>-<web port>", "static group membership "
                                      "id: a restarted worker takes its partitions back at "
                                      "once; unique per running worker"),
    "TWINLEDGER_WORKER_SESSION_TIMEOUT": ("30", "seconds before the group gives a silent "
                                          "worker's partitions to the others"),
}


@dataclass(frozen=True)
class Settings:
    """Resolved settings. Build with :func:`load_settings`; never mutate."""

    kafka_bootstrap: str
    kafka_port: int
    kafka_security: Mapping[str, str] = field(repr=False)
    schema_registry_url: str
    topology_path: Path
    topic_prefix: str
    data_dir: Path
    cache_dir: Path
    chdb_path: Path
    clickhouse_url: str = field(repr=False)
    clickhouse_database: str
    clickhouse_cluster: str
    ledger_config_path: str
    app_id: str
    worker_web_host: str
    worker_web_port: int
    sink_http_host: str
    sink_http_port: int
    http_token: str = field(repr=False)
    sink_group: str
    sink_batch_rows: int
    sink_batch_seconds: float
    snapshot_retention_days: int
    worker_batch: int
    worker_batch_seconds: float
    store: str
    worker_state_cache: int
    worker_stall_seconds: float = 60.0
    gc_gen0: int = 20000
    worker_stall_grace_seconds: float = 120.0
    worker_instance_id: str = ""
    worker_session_timeout: float = 30.0
    worker_advertised_url: str = ""
    worker_linger_ms: int = 5
    worker_max_batch_bytes: int = 262144
    worker_compression: str = "none"

    def topic(self, name: str) -> str:
        """The broker-side name of a topology topic."""
        return f"{self.topic_prefix}{name}"

    def redacted(self) -> dict[str, str]:
        """Printable view: secrets and URLs with credentials are masked."""
        out: dict[str, str] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "kafka_security":
                value = {k: ("***" if "password" in k else v) for k, v in value.items()}
            elif f.name == "clickhouse_url" and value:
                value = _mask_url(value)
            elif f.name == "http_token" and value:
                value = "***"
            out[f.name] = str(value)
        return out


def _mask_url(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def _str(env: Mapping[str, str], name: str) -> str:
    """``name`` from ``env``, else its default in ``ENV_DOC`` (the one place it is written)."""
    return env.get(name, ENV_DOC[name][0])


def _int(env: Mapping[str, str], name: str) -> int:
    raw = _str(env, name)
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None


def _nonneg_int(env: Mapping[str, str], name: str) -> int:
    value = _int(env, name)
    if value < 0:
        raise ConfigError(f"{name} must be 0 or more, got {value}")
    return value


def _float(env: Mapping[str, str], name: str) -> float:
    raw = _str(env, name)
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from ``env`` (default: the process environment)."""
    env = os.environ if env is None else env
    # In a checkout, relative paths are taken from the repository root, as
    # ops/kafka/kafka.sh does, so the script and the Python side agree whatever the
    # caller's cwd is; an installed package takes them from the cwd (and hands the
    # script absolute paths, streams.infra.kafka_local).
    raw_data_dir = env.get("TWINLEDGER_DATA_DIR", "").strip()
    data_dir = Path(raw_data_dir).expanduser() if raw_data_dir else default_data_dir()
    if not data_dir.is_absolute():
        data_dir = (PROJECT_ROOT if _is_checkout(PROJECT_ROOT) else Path.cwd()) / data_dir
    cache_dir = Path(_str(env, "TWINLEDGER_CACHE_DIR")).expanduser()
    if not cache_dir.is_absolute():
        cache_dir = (PROJECT_ROOT if _is_checkout(PROJECT_ROOT) else Path.cwd()) / cache_dir
    security = {
        "security.protocol": (env.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").strip().upper(),
    }
    if env.get("KAFKA_SASL_MECHANISM", "").strip():
        security["sasl.mechanism"] = env["KAFKA_SASL_MECHANISM"].strip().upper()
        security["sasl.username"] = env.get("KAFKA_SASL_USERNAME", "")
        security["sasl.password"] = env.get("KAFKA_SASL_PASSWORD", "")
    if env.get("KAFKA_SSL_CAFILE"):
        security["ssl.ca.location"] = env["KAFKA_SSL_CAFILE"]
    store = _str(env, "TWINLEDGER_STORE")
    if store not in ("rocksdb", "memory"):
        raise ConfigError(f"TWINLEDGER_STORE must be rocksdb or memory, got {store!r}")
    compression = _str(env, "TWINLEDGER_WORKER_COMPRESSION").strip().lower() or "none"
    if compression not in COMPRESSIONS:
        raise ConfigError(f"TWINLEDGER_WORKER_COMPRESSION must be one of "
                          f"{', '.join(COMPRESSIONS)}, got {compression!r}")
    return Settings(
        kafka_bootstrap=_str(env, "KAFKA_BOOTSTRAP_SERVERS"),
        kafka_port=_int(env, "TWINLEDGER_KAFKA_PORT"),
        kafka_security=security,
        schema_registry_url=_str(env, "TWINLEDGER_SCHEMA_REGISTRY_URL"),
        topology_path=Path(env.get("TWINLEDGER_TOPOLOGY", "").strip() or default_topology()),
        topic_prefix=_str(env, "TWINLEDGER_TOPIC_PREFIX"),
        data_dir=data_dir,
        cache_dir=cache_dir,
        chdb_path=Path(env.get("TWINLEDGER_CHDB_PATH", str(data_dir / "chdb"))).expanduser(),
        clickhouse_url=_str(env, "CLICKHOUSE_URL"),
        clickhouse_database=_str(env, "TWINLEDGER_CLICKHOUSE_DATABASE"),
        clickhouse_cluster=_str(env, "TWINLEDGER_CLICKHOUSE_CLUSTER"),
        ledger_config_path=_str(env, "TWINLEDGER_LEDGER_CONFIG"),
        app_id=_str(env, "TWINLEDGER_APP_ID"),
        worker_web_host=_str(env, "TWINLEDGER_WORKER_WEB_HOST"),
        worker_web_port=_int(env, "TWINLEDGER_WORKER_WEB_PORT"),
        sink_http_host=_str(env, "TWINLEDGER_SINK_HTTP_HOST"),
        sink_http_port=_int(env, "TWINLEDGER_SINK_HTTP_PORT"),
        http_token=_str(env, "TWINLEDGER_HTTP_TOKEN").strip(),
        sink_group=_str(env, "TWINLEDGER_SINK_GROUP"),
        sink_batch_rows=_int(env, "TWINLEDGER_SINK_BATCH_ROWS"),
        sink_batch_seconds=_float(env, "TWINLEDGER_SINK_BATCH_SECONDS"),
        snapshot_retention_days=_nonneg_int(env, "TWINLEDGER_SNAPSHOT_RETENTION_DAYS"),
        worker_batch=_int(env, "TWINLEDGER_WORKER_BATCH"),
        worker_batch_seconds=_float(env, "TWINLEDGER_WORKER_BATCH_SECONDS"),
        store=store,
        worker_state_cache=_int(env, "TWINLEDGER_WORKER_STATE_CACHE"),
        worker_stall_seconds=_float(env, "TWINLEDGER_WORKER_STALL_SECONDS"),
        gc_gen0=_nonneg_int(env, "TWINLEDGER_GC_GEN0"),
        worker_stall_grace_seconds=_float(env, "TWINLEDGER_WORKER_STALL_GRACE_SECONDS"),
        worker_instance_id=env.get("TWINLEDGER_WORKER_INSTANCE_ID", "").strip(),
        worker_session_timeout=_float(env, "TWINLEDGER_WORKER_SESSION_TIMEOUT"),
        worker_advertised_url=_advertised_url(env.get("TWINLEDGER_WORKER_ADVERTISED_URL", "")),
        worker_linger_ms=_nonneg_int(env, "TWINLEDGER_WORKER_LINGER_MS"),
        worker_max_batch_bytes=_int(env, "TWINLEDGER_WORKER_MAX_BATCH_BYTES"),
        worker_compression=compression,
    )


#: Producer compressions the worker accepts (aiokafka's codecs; "none": uncompressed).
COMPRESSIONS = ("none", "gzip", "snappy", "lz4", "zstd")


#: Bind addresses that mean "every interface": never an address to reach a worker at.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]", "*"})  # noqa: S104 - compared, not bound


def _advertised_url(raw: str) -> str:
    """``TWINLEDGER_WORKER_ADVERTISED_URL`` checked: ``http(s)://host:port``, a reachable host."""
    from urllib.parse import urlsplit

    url = raw.strip().rstrip("/")
    if not url:
        return ""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    if (parts.scheme not in ("http", "https") or not parts.hostname or port is None
            or parts.hostname in WILDCARD_HOSTS or parts.path or parts.query
            or parts.username or parts.password):
        raise ConfigError("TWINLEDGER_WORKER_ADVERTISED_URL must be http(s)://<host>:<port> "
                          "with a host the other workers can reach (not a wildcard address), "
                          f"got {raw!r}")
    return url
