"""Compiled or Python: the C parts of the Avro codec.

Owns: the choice, made once per process, between a C module built next to
its source by ``make install`` (``_avroread.c``, ``_avrowrite.c``; see
setup.py) and the Python code that does the same work. Must not touch:
anything the codec computes.

A module runs only if it was built from the very source beside it: each
carries the SHA-256 of the file it was compiled from, and a process that
finds an edited source uses Python and says so on stderr until ``make
install`` builds again (in an installed wheel, which ships no C source,
the built module is used). ``TWINLEDGER_PURE_PYTHON=1`` selects Python.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import sys
from pathlib import Path
from typing import Any

from streams.ledger._native import PURE_ENV

_HERE = Path(__file__).resolve().parent


def load(name: str) -> Any:
    """The C module ``streams.codec.<name>``, or None where Python is to do its work."""
    if os.environ.get(PURE_ENV) == "1":
        return None
    try:
        module = importlib.import_module(f"streams.codec.{name}")
    except ImportError:
        return None
    source = _HERE / f"{name}.c"
    if source.exists():
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        if digest != getattr(module, "SOURCE_SHA256", None):
            print(f"twinledger: {source} changed since it was compiled; its Python "
                  "counterpart runs until `make install` compiles it again", file=sys.stderr)
            return None
    return module
