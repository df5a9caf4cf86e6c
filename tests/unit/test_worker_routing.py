"""Which partition an account is on, and the URL a worker advertises to the others."""

import socket

import pytest

from streams.app import account_partition, advertised_url
from streams.config import load_settings
from streams.exceptions import ConfigError


@pytest.mark.parametrize(("key", "java_murmur2"), [
    # org.apache.kafka.common.utils.Utils.murmur2 of these keys (the Java client's
    # partitioner, librdkafka's murmur2_random, aiokafka's DefaultPartitioner).
    ("21", -973932308),
    ("foobar", -790332482),
    ("a-little-bit-long-string", -985981536),
    ("a-little-bit-longer-string", -1486304829),
    ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    ("abc", 479470107),
])
def test_account_partition_is_kafkas_default_partitioner(key, java_murmur2):
    for partitions in (1, 6, 7, 64):
        assert account_partition(key, partitions) == (java_murmur2 & 0x7FFFFFFF) % partitions


def test_account_partition_hashes_the_utf8_bytes():
    from aiokafka.partitioner import DefaultPartitioner

    for account in ("acc-1", "ацц-é", "x" * 200):
        assert account_partition(account, 6) == DefaultPartitioner()(
            account.encode("utf-8"), list(range(6)), list(range(6)))


def test_advertised_url_defaults_to_the_web_host_and_port():
    s = load_settings({"TWINLEDGER_WORKER_WEB_HOST": "10.1.2.3",
                       "TWINLEDGER_WORKER_WEB_PORT": "7001"})
    assert advertised_url(s) == "http://10.1.2.3:7001"
    s = load_settings({"TWINLEDGER_WORKER_WEB_HOST": "::1", "TWINLEDGER_WORKER_WEB_PORT": "7001"})
    assert advertised_url(s) == "http://[::1]:7001"


@pytest.mark.parametrize("wildcard", ["0.0.0.0", "::", ""])  # noqa: S104 - the refused case
def test_a_wildcard_bind_is_never_advertised(wildcard):
    s = load_settings({"TWINLEDGER_WORKER_WEB_HOST": wildcard,
                       "TWINLEDGER_WORKER_WEB_PORT": "7001"})
    assert advertised_url(s) == f"http://{socket.gethostname()}:7001"


def test_a_configured_advertised_url_wins():
    s = load_settings({"TWINLEDGER_WORKER_WEB_HOST": "0.0.0.0",  # noqa: S104
                       "TWINLEDGER_WORKER_ADVERTISED_URL": "https://worker-2.internal:6066/"})
    assert advertised_url(s) == "https://worker-2.internal:6066"


@pytest.mark.parametrize("bad", [
    "worker-2:6066", "http://worker-2", "ftp://worker-2:6066", "http://0.0.0.0:6066",
    "http://[::]:6066", "http://worker-2:6066/pages", "http://u:p@worker-2:6066",
    "http://worker-2:notaport",
])
def test_a_bad_advertised_url_is_refused(bad):
    with pytest.raises(ConfigError, match="TWINLEDGER_WORKER_ADVERTISED_URL"):
        load_settings({"TWINLEDGER_WORKER_ADVERTISED_URL": bad})
