import gc

from ippbx.gc_policy import FullCollector


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_full_collection_waits_for_idle_or_the_maximum_interval() -> None:
    clock = Clock()
    busy = [True]
    collector = FullCollector(lambda: busy[0], idle_interval=600, max_interval=3600,
                              clock=clock)
    clock.now += 700
    assert not collector.due()  # busy: not yet
    busy[0] = False
    assert collector.due()  # idle and 10 minutes passed
    collector.collect()
    busy[0] = True
    clock.now += 3599
    assert not collector.due()
    clock.now += 1
    assert collector.due()  # an hour: even when busy


async def test_start_stops_automatic_full_collections_and_stop_restores() -> None:
    before = gc.get_threshold()
    collector = FullCollector(lambda: False)
    await collector.start()
    try:
        assert gc.get_threshold()[:2] == before[:2]
        assert gc.get_threshold()[2] >= 1_000_000
        assert gc.get_freeze_count() > 0
    finally:
        await collector.stop()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_collect_reclaims_cycles() -> None:
    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    del a, b
    assert FullCollector(lambda: False).collect() >= 2
