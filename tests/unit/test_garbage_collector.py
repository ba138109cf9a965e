"""A started service's garbage collector: start-up objects out of its sight, the young collected less often."""

from __future__ import annotations

import gc

from shared.service import GC_YOUNG_THRESHOLD, settle_garbage_collector


def seen_by_collector(container: object) -> bool:
    return any(tracked is container for tracked in gc.get_objects())


def test_settling_freezes_what_exists_and_raises_only_the_young_threshold() -> None:
    before = gc.get_threshold()
    kept = [object()]  # a container made before the service settles, as its settings and models are
    assert seen_by_collector(kept)
    try:
        settle_garbage_collector()
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
        assert not seen_by_collector(kept)
        assert seen_by_collector([object()])  # what the service makes afterwards is collected as ever
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
