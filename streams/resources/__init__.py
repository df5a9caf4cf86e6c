"""Files twinledger reads at run time, shipped inside the package.

Owns: where those files are found — always through the installed package
(``importlib.resources``), never through the source tree, so a wheel installed
anywhere runs the same as a checkout. The files:

- ``avro/``: the Avro schemas (``*.avsc``) and the wire ids of those that are not a
  current output (``ids.json``; an output's id is in ``streams/catalogue.py``);
- ``topology.yaml``: the default topology (``TWINLEDGER_TOPOLOGY`` overrides);
- ``demo_events.jsonl``: the sample ``twinledger demo`` sends;
- ``kafka/kafka.sh`` and ``kafka/pom.xml``: the local single-node broker script.

In a checkout, ``topology.yaml``, ``examples/demo/events.jsonl`` and
``ops/kafka/{kafka.sh,pom.xml}`` are symbolic links to these files: one copy
of each.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from streams.exceptions import ConfigError


def resource_path(*parts: str) -> Path:
    """Filesystem path of a packaged file or directory (``resource_path("avro")``).

    The package must be installed as files (a wheel or a checkout), not from a
    zip archive: the broker script and the schema directory are read as paths.
    """
    here = files(__name__)
    if not isinstance(here, Path):
        raise ConfigError(f"twinledger resources are not on a filesystem ({here!r}); "
                          "install the package unzipped (pip install does)")
    return here.joinpath(*parts)


def schema_dir() -> Path:
    """The directory of the Avro schemas and ``ids.json``."""
    return resource_path("avro")


def default_topology() -> Path:
    """The topology used when ``TWINLEDGER_TOPOLOGY`` is not set."""
    return resource_path("topology.yaml")


def demo_sample() -> Path:
    """The events ``twinledger demo`` sends by default."""
    return resource_path("demo_events.jsonl")


def kafka_script() -> Path:
    """The local broker script (``ops/kafka/kafka.sh`` in a checkout links here)."""
    return resource_path("kafka", "kafka.sh")
