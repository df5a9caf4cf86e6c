"""The compiled ledger (mypyc) and its Python source are one code base with one behaviour.

``make install`` compiles the hot modules of ``streams.ledger._native.COMPILED``;
``TWINLEDGER_PURE_PYTHON=1`` or an edited source makes a process run the source.
Here the same events are folded in this process (compiled where built) and in a
child that runs the source, and every output and every encoded state must be
the same bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import streams.ledger
from streams.ledger import _native
from streams.ledger.fold import apply_event

ROOT = Path(__file__).resolve().parents[3]

_FOLD = """
import hashlib, json, sys
from decimal import Decimal
import streams.ledger as L
from streams.ledger import LedgerConfig, apply_event, encode_state, parse_event
from streams.ledger.events import Mark
from streams.ledger.state import encode_split
from streams.ledger.synth import generate_events
cfg = LedgerConfig(); marks = {}; states = {}; h = hashlib.sha256()
for off, e in enumerate(generate_events(2500, 25, seed=7), 1):
    ev = parse_event(json.loads(json.dumps(e), parse_float=Decimal))
    if isinstance(ev, Mark):
        marks[ev.symbol] = ev.price
        continue
    res = apply_event(states.get(ev.account_id), ev, marks, cfg, source=(off % 6, off))
    states[ev.account_id] = res.state
    h.update(res.status.encode())
    for o in res.outputs:
        h.update(repr((o.kind, o.key, sorted(o.record.items()))).encode())
    if off % 97 == 0:
        hot, blobs = encode_split(res.state)
        h.update(hot + b"".join(n + b + b"|" for n, b in blobs))
for acct in sorted(states):
    h.update(encode_state(states[acct]))
print(json.dumps({"mode": L.MODE, "fold": sys.modules["streams.ledger.fold"].__file__,
                  "digest": h.hexdigest()}))
"""


def _fold_in_child(pure: bool) -> dict:
    env = dict(os.environ)
    env.pop(_native.PURE_ENV, None)
    if pure:
        env[_native.PURE_ENV] = "1"
    out = subprocess.run([sys.executable, "-c", _FOLD], capture_output=True, text=True,
                         check=True, cwd=ROOT, env=env)
    return json.loads(out.stdout)


def test_the_compiled_and_the_python_ledger_fold_the_same_events_to_the_same_bytes():
    source = _fold_in_child(pure=True)
    assert source["mode"] == "python" and source["fold"].endswith("fold.py")
    here = _fold_in_child(pure=False)
    assert here["digest"] == source["digest"]
    if any(_native.built(n) for n in _native.COMPILED) and not _native.stale():
        # built and current: a process that is not told otherwise runs it
        assert here["mode"] == "compiled" and not here["fold"].endswith(".py")


def test_this_process_runs_what_select_said():
    # a compiled function has no Python code object
    assert (streams.ledger.MODE == "compiled") == (not hasattr(apply_event, "__code__"))


def test_a_compiled_module_built_from_another_source_or_missing_is_stale(tmp_path):
    so = EXTENSION_SUFFIXES[0]
    assert _native.stale(tmp_path) == []  # nothing compiled: a Python install
    for name in _native.COMPILED:
        (tmp_path / f"{name}.py").write_text(f"# {name}\n")
        (tmp_path / f"{name}{so}").write_bytes(b"")
    assert _native.stale(tmp_path) == list(_native.COMPILED)  # no shared library
    (tmp_path / f"{_native.SHARED}{so}").write_bytes(b"")
    assert _native.stale(tmp_path) == list(_native.COMPILED)  # no manifest: nothing is known
    (tmp_path / _native.MANIFEST).write_text(json.dumps(
        {n: _native.source_digest(tmp_path / f"{n}.py") for n in _native.COMPILED}))
    assert _native.stale(tmp_path) == []
    (tmp_path / "fold.py").write_text("# fold, edited after the build\n")
    (tmp_path / f"spot{so}").unlink()  # or never built
    assert _native.stale(tmp_path) == ["spot", "fold"]


def test_setup_compiles_exactly_the_modules_native_lists():
    # setup.py reads the list without importing the package
    code = ("import runpy, sys; ns = runpy.run_path('setup.py', run_name='not_main'); "
            "print('streams' in sys.modules); "
            "print(ns['GROUP']); print(','.join(ns['NATIVE']['COMPILED']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT, env={**os.environ, _native.PURE_ENV: "1"})
    imported, group, names = out.stdout.strip().splitlines()[-3:]
    assert imported == "False"  # nor any of its dependencies, which a build may lack
    assert names == ",".join(_native.COMPILED)
    # the shared library sits in the package, under the name _native looks for
    assert group == f"streams.ledger.{_native.SHARED.removesuffix('__mypyc')}"
    for name in _native.COMPILED:
        assert (ROOT / "streams" / "ledger" / f"{name}.py").exists()
    # the Decimal subclass must stay a Python class
    assert "markprice" not in _native.COMPILED
