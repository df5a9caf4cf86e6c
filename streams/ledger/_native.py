"""Compiled or Python: which form of the ledger's hot modules this process runs.

Owns: the list of modules ``setup.py`` compiles with mypyc (``COMPILED``), and
the choice, made once when ``streams.ledger`` is first imported, between the
compiled modules built next to their source (``make install``) and the source
itself. The source runs when nothing is compiled, when ``TWINLEDGER_PURE_PYTHON=1``
says so, or when a compiled module was not built from the source beside it
(an edited checkout: running yesterday's compiled fold would be a silent lie,
so the source runs and stderr says why until ``make install`` compiles
again). What a build compiled is in ``_compiled.json`` beside the modules,
written by ``setup.py``: each source's SHA-256.
Both forms are one code base: the same rules, the same outputs
(``tests/unit/ledger/test_native.py`` folds the same events both ways).
Must not touch: anything the fold computes; it reads files, nothing else.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import EXTENSION_SUFFIXES, ModuleSpec
from pathlib import Path
from typing import Any

#: The fold's hot path (``streams/ledger/<name>.py``), compiled by ``setup.py``.
COMPILED = ("numbers", "grammar", "events", "state", "step", "reconcile", "headroom", "spot",
            "fold")
#: Set to ``1`` to run the Python source even where compiled modules are built.
PURE_ENV = "TWINLEDGER_PURE_PYTHON"
#: What a build compiled: ``{module: SHA-256 of its source}`` (``setup.py`` writes it).
MANIFEST = "_compiled.json"
#: The shared library of the compiled modules (mypyc group ``setup.GROUP``): the
#: module of each is only a stub that loads it.
SHARED = "_compiled__mypyc"

_HERE = Path(__file__).resolve().parent


def built(name: str, here: Path = _HERE) -> Path | None:
    """The compiled module of ``name`` next to its source, if one was built."""
    for suffix in EXTENSION_SUFFIXES:
        path = here / f"{name}{suffix}"
        if path.exists():
            return path
    return None


def source_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stale(here: Path = _HERE) -> list[str]:
    """The hot modules whose compiled form is missing or was built from another source.

    Empty when nothing is compiled at all (a Python install) or all is current.
    File times cannot say it: a build copies an unchanged module stub with its
    old time, and a checkout gives old sources new ones.
    """
    compiled = {name: built(name, here) for name in COMPILED}
    if not any(compiled.values()):
        return []
    if built(SHARED, here) is None:  # the stubs alone would not import
        return list(COMPILED)
    try:
        manifest = json.loads((here / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    return [name for name, path in compiled.items()
            if path is None or manifest.get(name) != source_digest(here / f"{name}.py")]


class _Source(MetaPathFinder):
    """Finds the hot modules as their ``.py`` source, ahead of the compiled ones."""

    def __init__(self, package: str, here: Path) -> None:
        self.names = {f"{package}.{name}": here / f"{name}.py" for name in COMPILED}

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        source = self.names.get(fullname)
        return None if source is None else importlib.util.spec_from_file_location(
            fullname, source)


def select(package: str = "streams.ledger") -> str:
    """``"compiled"`` or ``"python"``: how the hot modules of ``package`` will load.

    Called by ``streams/ledger/__init__.py`` before it imports any of them.
    All or none: the compiled modules call each other natively, so a mix of
    compiled and source modules is never loaded.
    """
    if not any(built(name) for name in COMPILED):
        return "python"
    if os.environ.get(PURE_ENV) == "1":
        why = None
    else:
        old = stale()
        if not old:
            return "compiled"
        why = (f"compiled {', '.join(old)} not built from the source beside it; "
               "`make install` compiles again")
    if not any(isinstance(f, _Source) for f in sys.meta_path):
        sys.meta_path.insert(0, _Source(package, _HERE))
    if why:
        print(f"twinledger: the ledger runs as Python: {why}", file=sys.stderr)
    return "python"
