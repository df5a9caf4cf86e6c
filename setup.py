"""Build hook: compile the ledger's hot modules with mypyc and the Avro codec's byte work
from C, or leave them as Python.

``pip install -e .`` (what ``make install`` runs) compiles the modules that
``streams/ledger/_native.py`` lists into C extensions next to their source,
and ``streams/codec/_avroread.c`` and ``_avrowrite.c``, the byte work of the
Avro reader and writer; the Python source stays the one code base, and runs
instead wherever the
compiled form is missing, older than the source, or ``TWINLEDGER_PURE_PYTHON=1``
(see docs/performance.md). A machine without a C compiler, or a failed
compile, gets a working Python install and a line on stderr, never a failed one.
Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

HERE = Path(__file__).resolve().parent
LEDGER = HERE / "streams" / "ledger"
#: ``streams/ledger/_native.py``, run by path: it needs nothing but the standard library,
#: so it is read without importing the package (whose dependencies the build may lack).
#: Its names are the one list of what is compiled and how a build is recorded.
NATIVE = runpy.run_path(str(LEDGER / "_native.py"))
#: The compiled modules' shared library, ``streams/ledger/_compiled__mypyc.*.so``: inside
#: the package, so that whatever finds ``streams`` finds it.
GROUP = "streams.ledger." + NATIVE["SHARED"].removesuffix("__mypyc")


def _say(text: str) -> None:
    print(f"twinledger: {text}", file=sys.stderr)


#: SHA-256 of each source as it was compiled (``_native.MANIFEST``, written after a build).
DIGESTS: dict[str, str] = {}


#: The C parts of the Avro codec (see streams/codec/cext.py): module -> source. Each is
#: a module of its own, built or not independently of the ledger and of each other.
CODEC_MODULES = {"streams.codec._avroread": "streams/codec/_avroread.c",
                 "streams.codec._avrowrite": "streams/codec/_avrowrite.c"}


def _codec_extension(name: str) -> Extension:
    # The module carries the SHA-256 of the source it was built from: a process that
    # finds an edited source beside it uses the Python code instead (streams.codec.cext).
    source = CODEC_MODULES[name]
    digest = hashlib.sha256((HERE / source).read_bytes()).hexdigest()
    return Extension(name, [source], define_macros=[("SOURCE_SHA256", f'"{digest}"')],
                     extra_compile_args=["-O2"])


class OptionalBuildExt(build_ext):
    """Build the compiled ledger if this machine can; otherwise keep it as Python."""

    def build_extension(self, ext: Extension) -> None:
        if ext.name not in CODEC_MODULES:
            super().build_extension(ext)
            return
        try:
            super().build_extension(ext)
        except Exception as exc:  # noqa: BLE001 - the Python code does the same work
            _say(f"{ext.name} was not compiled ({exc}); its Python counterpart runs")

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # noqa: BLE001 - any failure leaves a Python install
            self._remove_partial()
            _say(f"the ledger was not compiled ({exc}); it runs as Python")
            return
        if self.extensions and DIGESTS:
            # what was compiled, so that a process can tell it from an edited source
            root = Path(".") if self.inplace else Path(self.build_lib)
            target = root / "streams" / "ledger" / NATIVE["MANIFEST"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(DIGESTS, indent=1, sort_keys=True) + "\n")

    def _remove_partial(self) -> None:
        # All or none: a compiled module without its shared library would not import.
        for ext in self.extensions:
            if ext.name in CODEC_MODULES:
                continue
            path = Path(self.get_ext_fullpath(ext.name))
            if self.inplace and path.exists():
                path.unlink()


def _extensions() -> list:
    if os.environ.get(NATIVE["PURE_ENV"]) == "1":
        _say(f"{NATIVE['PURE_ENV']}=1: the ledger and the Avro codec are not compiled")
        return []
    return [*_ledger_extensions(), *map(_codec_extension, CODEC_MODULES)]


def _ledger_extensions() -> list:
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        _say(f"mypyc is not available ({exc}); the ledger runs as Python")
        return []
    names = NATIVE["COMPILED"]
    DIGESTS.update({n: NATIVE["source_digest"](LEDGER / f"{n}.py") for n in names})
    try:
        return mypycify([f"streams/ledger/{n}.py" for n in names], opt_level="3",
                        group_name=GROUP)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - mypyc refused the source
        _say(f"mypyc could not compile the ledger ({exc!r}); it runs as Python")
        return []


if __name__ == "__main__":  # what setuptools' build backend runs (not a test reading the list)
    setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
