"""The ledger core stays pure: no broker/database imports, no clock, no randomness in the fold."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
LEDGER = ROOT / "streams" / "ledger"
FORBIDDEN = ("faust", "kafka", "aiokafka", "confluent_kafka", "clickhouse_connect", "chdb",
             "mode")
FOLD_MODULES = ("__init__", "config", "events", "fold", "numbers", "reconcile", "state",
                "spot", "summary")


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_ledger_imports_nothing_from_faust_kafka_or_clickhouse():
    for path in [*LEDGER.glob("*.py"), ROOT / "streams" / "foldfile.py"]:
        assert not imported_modules(path) & set(FORBIDDEN), path.name
    # and nothing drags them in transitively
    code = ("import sys, streams.ledger, streams.ledger.synth, streams.foldfile; "
            f"bad = [m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r}]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    assert out.stdout.strip() == ""


def test_fold_modules_use_no_clock_and_no_randomness():
    for name in FOLD_MODULES:
        tree = ast.parse((LEDGER / f"{name}.py").read_text())
        assert "random" not in imported_modules(LEDGER / f"{name}.py"), name
        assert "time" not in imported_modules(LEDGER / f"{name}.py"), name
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute):
                assert node.attr not in ("now", "utcnow", "today", "time_ns"), name


def test_every_ledger_module_says_what_it_owns_and_must_not_touch():
    for path in [*LEDGER.glob("*.py"), ROOT / "streams" / "foldfile.py"]:
        doc = " ".join((ast.get_docstring(ast.parse(path.read_text())) or "").split())
        assert "Owns" in doc or "owns" in doc, path.name
        assert "Must not touch" in doc, path.name
