"""What a C extension's forgotten reference looks like from Python (tests of the codec)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def blocks_grown(one_round: Callable[[], None], warm: int = 3, rounds: int = 20) -> int:
    """Allocated blocks more after ``rounds`` calls of ``one_round`` than before them.

    ``warm`` calls first fill whatever caches the code keeps; a reference the C code
    forgets to drop then shows as blocks that pile up with every round.
    """
    for _ in range(warm):
        one_round()
    before = sys.getallocatedblocks()
    for _ in range(rounds):
        one_round()
    return sys.getallocatedblocks() - before
