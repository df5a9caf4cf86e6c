"""Files read at run time come from the package; the checkout's copies are links to them."""

from __future__ import annotations

from pathlib import Path

from streams.codec.avro import SCHEMA_DIR
from streams.config import PROJECT_ROOT, default_data_dir, load_settings
from streams.infra.kafka_local import kafka_script
from streams.resources import default_topology, demo_sample, resource_path, schema_dir

PACKAGE = PROJECT_ROOT / "streams" / "resources"


def test_every_runtime_file_is_found_in_the_package() -> None:
    assert schema_dir() == SCHEMA_DIR == PACKAGE / "avro"
    assert (SCHEMA_DIR / "ids.json").is_file() and len(list(SCHEMA_DIR.glob("*.avsc"))) >= 10
    assert default_topology() == PACKAGE / "topology.yaml"
    assert demo_sample() == PACKAGE / "demo_events.jsonl"
    assert resource_path("kafka", "pom.xml").is_file()


def test_defaults_point_into_the_package(monkeypatch) -> None:
    monkeypatch.delenv("TWINLEDGER_KAFKA_SCRIPT", raising=False)
    assert load_settings({}).topology_path == default_topology()
    assert kafka_script() == PACKAGE / "kafka" / "kafka.sh"
    # In a checkout, runtime data stays in <repo>/.data, as kafka.sh puts it.
    assert default_data_dir() == PROJECT_ROOT / ".data"
    assert load_settings({"TWINLEDGER_DATA_DIR": "x"}).data_dir == PROJECT_ROOT / "x"


def test_the_checkout_paths_users_know_are_links_to_the_packaged_files() -> None:
    for known, packaged in [
        ("topology.yaml", "topology.yaml"),
        ("examples/demo/events.jsonl", "demo_events.jsonl"),
        ("ops/kafka/kafka.sh", "kafka/kafka.sh"),
        ("ops/kafka/pom.xml", "kafka/pom.xml"),
    ]:
        path = PROJECT_ROOT / known
        assert path.is_symlink(), f"{known} should link to streams/resources/{packaged}"
        assert path.resolve() == (PACKAGE / packaged).resolve()
    assert not (PROJECT_ROOT / "schemas").exists()


def test_no_module_looks_for_runtime_files_in_the_source_tree() -> None:
    offenders = []
    for path in [*(PROJECT_ROOT / "streams").rglob("*.py"), *(PROJECT_ROOT / "sinks").rglob("*.py")]:
        text = path.read_text()
        for needle in ("PROJECT_ROOT /", "parents[2]", '"schemas"', "ops\" / \"kafka"):
            if needle in text and path.name != "config.py":
                offenders.append(f"{path.relative_to(PROJECT_ROOT)}: {needle}")
    assert not offenders, offenders
    assert isinstance(PROJECT_ROOT, Path)
