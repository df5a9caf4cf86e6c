"""The garbage collector of a long-running worker or sink process.

Owns: one call, ``for_long_running(gen0)``, made once a process has started.
Must not touch: anything the process computes.

The fold and the sink allocate a few container objects per event (dicts,
tuples, the records of every output) and keep almost none of them. With
CPython's default threshold (a young-generation collection every 700 net
allocations) a worker collected hundreds of times a second, and every
collection of the older generations walked the objects of Faust, aiokafka,
clickhouse-connect and the decoded state cache, which never become garbage.
So, once started:

- ``gc.freeze()`` moves everything the start-up created (modules, Faust's
  app, the codecs, the database client) to the permanent generation, where
  no collection walks it again;
- the young generation is collected every ``gen0`` net allocations
  (``TWINLEDGER_GC_GEN0``, default 20,000; ``0`` keeps Python's defaults).

Reference cycles are still collected, only in larger batches. Measured with
``bench/run.py --only raw_passthrough --only e2e``, four runs each way,
alternating: the worker's CPU per 1,000 events 0.247 to 0.266 s against 0.274
to 0.278 s with Python's defaults (about 6% less); the sink's varied more than
any difference (0.294 to 0.370 s against 0.304 to 0.366 s), and so did the
end-to-end rate.
"""

from __future__ import annotations

import gc


def for_long_running(gen0: int) -> None:
    """Freeze what start-up allocated and collect the young generation every ``gen0``."""
    if gen0 <= 0:
        return
    gc.collect()  # start-up's garbage first: frozen, it would never be freed
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(gen0, max(gen1, 20), max(gen2, 100))
