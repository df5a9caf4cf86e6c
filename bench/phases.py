"""Named phases with timeouts for ``make bench`` and ``make soak``: nothing here can hang.

Owns: one JSON line per phase on stdout, flushed (``{"phase", "event": "start"}`` when
it begins, ``{"phase", "event": "end", "ok", "seconds", ...figures}`` when it ends),
the cooperative deadline check (:meth:`Phases.check` raises :class:`PhaseTimeout`),
and a watchdog thread for a phase blocked in a call it cannot interrupt: past the
deadline plus a grace it runs the caller's diagnosis and clean-up and ends the
process with :data:`HARD_STALL_EXIT`. Must not know what a phase measures.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

#: exit status when the watchdog had to end a phase blocked past its timeout
HARD_STALL_EXIT = 3


def emit(doc: dict[str, Any]) -> None:
    """One JSON line on stdout, flushed at once (a run's log is its stdout)."""
    print(json.dumps(doc, default=str), flush=True)


class PhaseTimeout(Exception):
    """A phase ran past its timeout or stopped progressing."""

    def __init__(self, phase: str, why: str) -> None:
        super().__init__(f"{phase}: {why}")
        self.phase = phase
        self.why = why


class Phases:
    """Phases run one after another; each has a deadline and prints its figures when done."""

    def __init__(self, on_hard_stall: Callable[[str], None], hard_grace: float = 60.0) -> None:
        self.current: str | None = None
        #: the last phase that ended by an exception
        self.failed: str | None = None
        self.deadline: float | None = None
        self.seconds: dict[str, float] = {}
        self.on_hard_stall = on_hard_stall
        self.hard_grace = hard_grace
        threading.Thread(target=self._watch, name="phase-watchdog", daemon=True).start()

    @contextmanager
    def phase(self, name: str, timeout: float) -> Iterator[dict[str, Any]]:
        """Run a phase; the dict it yields is printed on its end line (its figures)."""
        self.current, self.deadline = name, time.monotonic() + timeout
        start = time.monotonic()
        emit({"phase": name, "event": "start", "timeout_s": round(timeout)})
        figures: dict[str, Any] = {}
        ok = False
        try:
            yield figures
            ok = True
        except BaseException:
            self.failed = name
            raise
        finally:
            took = time.monotonic() - start
            self.seconds[name] = round(took, 1)
            self.current = self.deadline = None
            emit({"phase": name, "event": "end", "ok": ok, "seconds": round(took, 1),
                  **figures})

    def left(self) -> float:
        """Seconds left before the current phase's deadline (inf outside a phase)."""
        return float("inf") if self.deadline is None else self.deadline - time.monotonic()

    def check(self) -> None:
        if self.current and self.deadline and time.monotonic() > self.deadline:
            raise PhaseTimeout(self.current, "timed out")

    def _watch(self) -> None:
        while True:
            time.sleep(1.0)
            phase, deadline = self.current, self.deadline
            if phase and deadline and time.monotonic() > deadline + self.hard_grace:
                try:
                    self.on_hard_stall(phase)
                finally:
                    os._exit(HARD_STALL_EXIT)
