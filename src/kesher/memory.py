"""The garbage collector in Kesher's long-running processes."""

from __future__ import annotations

import gc


def settle() -> None:
    """Keep what is loaded by now (modules, table mappings, the web app) out of full collections.

    A full collection visits every object the collector tracks. In a process that has loaded
    Kesher those are some 100,000 that live as long as the process, and the dozens of full
    collections of an import of 200,000 contacts spent 4 of its 16 seconds visiting them again
    and again. Frozen objects are still freed as soon as nothing refers to them; only reference
    cycles among them would stay, and those were made once, while starting.
    """
    gc.collect()
    gc.freeze()
