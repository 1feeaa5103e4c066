"""The garbage collector in Kesher's long-running processes."""

from __future__ import annotations

import gc

# A young collection after 50,000 new objects rather than 700: an ingest of 1,000 events makes tens
# of thousands of objects that all live until its commit, and the default visited them again and
# again, 7 µs an event (4% of a call on SQLite), where this costs 1-2.
YOUNG = 50_000


def settle() -> None:
    """Keep what is loaded by now (modules, table mappings, the web app) out of full collections.

    A full collection visits every object the collector tracks. In a process that has loaded
    Kesher those are some 100,000 that live as long as the process, and the dozens of full
    collections of an import of 200,000 contacts spent 4 of its 16 seconds visiting them again
    and again. Frozen objects are still freed as soon as nothing refers to them; only reference
    cycles among them would stay, and those were made once, while starting.

    Young collections come less often too (see YOUNG): each visits only what was made since the
    last, so the work per object made stays the same, and the objects a request or batch holds
    until it ends are no longer visited on each of a hundred passes.
    """
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG, middle, old)  # the others count collections of the generation below
