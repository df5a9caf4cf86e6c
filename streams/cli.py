"""The ``twinledger`` command line. Subcommands are wired here; their work lives in modules."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("twinledger: no subcommands yet", file=sys.stderr)
    return 2
