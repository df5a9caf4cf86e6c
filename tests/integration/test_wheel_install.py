"""The wheel runs outside the repository: every file read at run time ships in it.

Builds the wheel from a copy of the tracked files (so the shared checkout gets no
build/ directory), installs it with no dependencies into a fresh virtualenv whose
only other path is the test venv's site-packages (added by a plain ``.pth`` line,
so the editable install's finder is NOT loaded and the source tree is not
importable), and runs ``twinledger fold``, ``twinledger topology``, ``--help`` and
the codec from a directory outside the repository. No broker, no database.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from streams.config import PROJECT_ROOT

pytestmark = pytest.mark.timeout(300)

# Everything read at run time, as it must appear in the wheel.
PACKAGED = [
    "streams/resources/__init__.py",
    "streams/resources/topology.yaml",
    "streams/resources/demo_events.jsonl",
    "streams/resources/avro/ids.json",
    "streams/resources/avro/VenueEvent.avsc",
    "streams/resources/kafka/kafka.sh",
    "streams/resources/kafka/pom.xml",
]


def _run(argv: list[str], cwd: Path, env: dict[str, str], **kw: object
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=180, check=False, **kw)  # type: ignore[call-overload]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True,
                             check=True).stdout.decode().split("\0")
    for rel in filter(None, tracked):
        source = PROJECT_ROOT / rel
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the work tree, not yet committed
        dest = src / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, dest, follow_symlinks=False)
    wheels = root / "dist"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps",
                            "-q", "-w", str(wheels)], capture_output=True, text=True,
                           timeout=240, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = wheels.glob("twinledger-*.whl")

    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig;print(sysconfig.get_path("
                                "'purelib'))"], capture_output=True, text=True,
                               check=True).stdout.strip())
    # Dependencies from the test venv, as a plain path: its .pth files (the editable
    # finder that maps `streams` to the checkout) are not processed from here.
    (site / "_twinledger_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    inst = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install",
                           "--no-deps", "--no-index", "-q", str(wheel)],
                          capture_output=True, text=True, timeout=240, check=False)
    assert inst.returncode == 0, inst.stdout + inst.stderr

    work = root / "elsewhere"  # outside the repository, no checkout around it
    work.mkdir()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("TWINLEDGER_", "PYTHON", "VIRTUAL_ENV"))}
    env["HOME"] = str(root / "home")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return {"wheel": wheel, "py": py, "bin": venv / "bin", "work": work, "env": env}


def test_the_wheel_holds_every_runtime_file(installed: dict[str, object]) -> None:
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())  # type: ignore[arg-type]
    missing = [p for p in PACKAGED if p not in names]
    assert not missing, missing
    assert not any(n.startswith(("tests/", "bench/", "schemas/")) for n in names)


def test_the_installed_package_is_not_the_source_tree(installed: dict[str, object]) -> None:
    out = _run([str(installed["py"]), "-c",
                "import json, streams, streams.resources as r, sys;"
                "print(streams.__file__); print(r.default_topology());"
                "print(json.dumps(sys.path))"],
               installed["work"], installed["env"])  # type: ignore[arg-type]
    assert out.returncode == 0, out.stderr
    pkg, topo, path = out.stdout.splitlines()
    on_path = [p for p in json.loads(path) if p and Path(p).resolve().is_relative_to(PROJECT_ROOT)
               and not Path(p).resolve().is_relative_to(PROJECT_ROOT / ".venv")]
    assert not on_path, f"the checkout is importable: {on_path}"
    assert not Path(pkg).is_relative_to(PROJECT_ROOT), pkg
    assert str(installed["bin"].parent) in pkg  # type: ignore[attr-defined]
    assert Path(topo).is_file() and not Path(topo).is_relative_to(PROJECT_ROOT)


def test_a_wheel_with_the_compiled_ledger_runs_it(installed: dict[str, object]) -> None:
    # Built where a C compiler is, the wheel holds the compiled modules and the
    # record of the sources they came from (docs/performance.md); elsewhere neither,
    # and the ledger runs as Python. Either way the installed package says which,
    # and never falls back silently from modules it ships.
    names = set(zipfile.ZipFile(installed["wheel"]).namelist())  # type: ignore[arg-type]
    shipped = any(n.startswith("streams/ledger/") and n.endswith(".so") for n in names)
    assert shipped == ("streams/ledger/_compiled.json" in names)
    out = _run([str(installed["py"]), "-c", "import streams.ledger as L; print(L.MODE)"],
               installed["work"], installed["env"])  # type: ignore[arg-type]
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ("compiled" if shipped else "python")
    assert "runs as Python" not in out.stderr


def test_fold_runs_from_outside_the_repository(installed: dict[str, object]) -> None:
    work: Path = installed["work"]  # type: ignore[assignment]
    shutil.copy(PROJECT_ROOT / "examples" / "fet_short.jsonl", work / "events.jsonl")
    out = _run([str(installed["bin"] / "twinledger"), "fold", "events.jsonl"],  # type: ignore[operator]
               work, installed["env"])  # type: ignore[arg-type]
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc, "fold printed an empty document"


def test_topology_runs_from_outside_the_repository(installed: dict[str, object]) -> None:
    out = _run([str(installed["bin"] / "twinledger"), "topology"],  # type: ignore[operator]
               installed["work"], installed["env"])  # type: ignore[arg-type]
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert "venue.events" in doc["topics"]
    assert doc["resolved_topic_names"]["venue.events"] == "venue.events"


def test_codec_round_trips_a_venue_event_from_the_wheel(installed: dict[str, object]) -> None:
    code = """
import json
from streams.codec import Codec, fold_dict_to_venue_record, venue_record_to_fold_dict
event = json.loads(open("event.json").read())
codec = Codec.load()
wire = codec.encode("VenueEvent", fold_dict_to_venue_record(event))
name, record = codec.decode(wire)
assert name == "VenueEvent", name
back = venue_record_to_fold_dict(record)
print(json.dumps({"bytes": len(wire), "magic": wire[0], "back": back}, default=str))
"""
    work: Path = installed["work"]  # type: ignore[assignment]
    first = (PROJECT_ROOT / "examples" / "fet_short.jsonl").read_text().splitlines()[0]
    (work / "event.json").write_text(first)
    out = _run([str(installed["py"]), "-c", code], work, installed["env"])  # type: ignore[arg-type]
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["magic"] == 0 and doc["bytes"] > 5
    assert doc["back"]["event_id"] == json.loads(first)["event_id"]


def test_help_and_the_broker_script_are_found_from_the_wheel(
        installed: dict[str, object]) -> None:
    env = dict(installed["env"])  # type: ignore[call-overload]
    out = _run([str(installed["bin"] / "twinledger"), "--help"],  # type: ignore[operator]
               installed["work"], env)  # type: ignore[arg-type]
    assert out.returncode == 0 and "fold" in out.stdout, out.stderr
    # The packaged kafka.sh answers `env` with paths under the installed data dir.
    out = _run([str(installed["py"]), "-c",
                "from streams.infra.kafka_local import kafka_script; print(kafka_script())"],
               installed["work"], env)  # type: ignore[arg-type]
    assert out.returncode == 0, out.stderr
    script = Path(out.stdout.strip())
    assert script.is_file() and not script.is_relative_to(PROJECT_ROOT)
    listed = _run(["bash", str(script), "env"], installed["work"], env)  # type: ignore[arg-type]
    assert listed.returncode == 0, listed.stderr
    assert "KAFKA_VERSION=" in listed.stdout
