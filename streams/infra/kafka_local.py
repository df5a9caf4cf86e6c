"""Python API over ``ops/kafka/kafka.sh``: the local single-node Kafka broker.

Owns: finding the script, fetching + starting the broker when it is not running,
stopping the broker the script started, and waiting until a broker answers.
Must not create topics (``kafka_admin`` does) nor touch any broker it did not
start: the script stops only the process id it recorded.

The script resolves its paths from the environment (``TWINLEDGER_KAFKA_PORT``,
``TWINLEDGER_DATA_DIR``, ``TWINLEDGER_CACHE_DIR``); this module passes the
environment through, plus the port when one is given explicitly.
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from streams.exceptions import TwinledgerError

log = logging.getLogger(__name__)

DEFAULT_PORT = 39092
HOST = "127.0.0.1"
# First run downloads ~46 jars (43 MB) through Maven; later starts take a few seconds.
_START_TIMEOUT_S = 600.0


_quiet_rdkafka = logging.getLogger(__name__ + ".rdkafka")
_quiet_rdkafka.propagate = False
_quiet_rdkafka.addHandler(logging.NullHandler())


class LocalKafkaError(TwinledgerError):
    """The local broker script failed (missing Java/Maven, start timeout, port taken...)."""


def kafka_script() -> Path:
    """The local broker script shipped with the package (``TWINLEDGER_KAFKA_SCRIPT`` overrides).

    In a checkout ``ops/kafka/kafka.sh`` is a link to the same file.
    """
    from streams.resources import kafka_script as packaged

    override = os.environ.get("TWINLEDGER_KAFKA_SCRIPT")
    path = Path(override) if override else packaged()
    if path.is_file():
        return path
    raise LocalKafkaError(
        f"the local broker script {path} is missing (set TWINLEDGER_KAFKA_SCRIPT); "
        "or point KAFKA_BOOTSTRAP_SERVERS at a running broker"
    )


def _port(port: int | None) -> int:
    if port is not None:
        return port
    raw = os.environ.get("TWINLEDGER_KAFKA_PORT", str(DEFAULT_PORT))
    try:
        return int(raw)
    except ValueError:
        raise LocalKafkaError(f"TWINLEDGER_KAFKA_PORT must be an integer, got {raw!r}") from None


def _run(action: str, port: int | None, timeout: float, check: bool = True,
         capture: bool = False) -> subprocess.CompletedProcess[str]:
    from streams.config import load_settings

    env = dict(os.environ)
    env["TWINLEDGER_KAFKA_PORT"] = str(_port(port))
    # Absolute paths: the script and this process then agree on the broker's data
    # and jar cache wherever the package is installed and whatever the cwd is.
    settings = load_settings()
    env["TWINLEDGER_DATA_DIR"] = str(settings.data_dir)
    env["TWINLEDGER_CACHE_DIR"] = str(settings.cache_dir)
    # stderr (progress of the first Maven fetch, readiness) goes straight to the
    # user's terminal; stdout (the `status` line) only when asked for.
    try:
        proc = subprocess.run(  # noqa: S603 - our own script, fixed argv
            ["bash", str(kafka_script()), action],  # noqa: S607 - bash from PATH
            env=env,
            stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise LocalKafkaError(f"kafka.sh {action} did not finish within {timeout:.0f} s") from None
    if check and proc.returncode != 0:
        raise LocalKafkaError(
            f"kafka.sh {action} failed with exit code {proc.returncode} (its messages are above)"
        )
    return proc


def local_kafka_running(port: int | None = None) -> bool:
    """True if the broker started by ``kafka.sh`` (for this data dir) is running."""
    return _run("status", port, timeout=30, check=False).returncode == 0


def local_kafka_status(port: int | None = None) -> tuple[int, str]:
    """``kafka.sh status``: its exit code and its line, e.g.
    ``running pid=123 bootstrap=127.0.0.1:39092 version=4.3.1`` or ``stopped``."""
    proc = _run("status", port, timeout=30, check=False, capture=True)
    return proc.returncode, (proc.stdout or "").strip() or "stopped"


def local_kafka_jars_present() -> bool:
    """True when the broker's jars are already in the cache (``start`` will not download)."""
    return _run("fetched", None, timeout=30, check=False).returncode == 0


def ensure_local_kafka(port: int | None = None) -> str:
    """Fetch and start the local broker unless it runs; return its bootstrap address.

    Idempotent: a running broker is reused. Blocks until the broker answers
    metadata, group-coordinator and producer-id requests (``kafka.sh start``).
    """
    p = _port(port)
    _run("start", p, timeout=_START_TIMEOUT_S)
    bootstrap = f"{HOST}:{p}"
    log.info("local Kafka ready at %s", bootstrap)
    return bootstrap


def stop_local_kafka(port: int | None = None) -> None:
    """Stop the broker ``kafka.sh`` started (TERM, then KILL after 30 s); no-op if stopped."""
    _run("stop", port, timeout=60)


def wait_for_broker(bootstrap: str, timeout: float = 60.0) -> None:
    """Block until a broker at ``bootstrap`` answers a metadata request with >= 1 broker.

    Works for any broker (env, Docker or local); uses the security settings of
    :func:`streams.infra.kafka_admin.client_config_from_env`.
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    from streams.infra.kafka_admin import client_config_from_env

    conf: dict[str, Any] = dict(client_config_from_env())
    conf["bootstrap.servers"] = bootstrap
    # "Connection refused" is the expected answer while a broker boots: keep
    # librdkafka's per-retry lines out of stderr, the timeout error says enough.
    conf["logger"] = _quiet_rdkafka
    admin = AdminClient(conf)
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise LocalKafkaError(f"Kafka at {bootstrap} did not answer within {timeout:.0f} s "
                                  f"({last})")
        try:
            meta = admin.list_topics(timeout=max(0.5, min(5.0, remaining)))
            if meta.brokers:
                return
            last = "metadata lists no broker yet"
        except KafkaException as exc:
            last = str(exc.args[0]) if exc.args else repr(exc)
        time.sleep(0.25)
