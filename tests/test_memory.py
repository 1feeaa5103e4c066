"""Long-running commands keep what they loaded out of the garbage collector's full passes."""

import gc

from kesher.memory import YOUNG, settle


def test_settle_freezes_what_the_process_holds():
    settle()
    assert gc.get_freeze_count() > 1000  # the loaded application: modules, mappings, tests
    assert gc.get_count()[0] < 100  # and starts the young generation afresh


def test_settle_spaces_out_young_collections_only():
    before = gc.get_threshold()
    settle()
    assert gc.get_threshold() == (YOUNG, *before[1:])
