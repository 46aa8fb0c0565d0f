"""`OneShot`: a flag set once, waited on as plain futures (no task per wait)."""

from __future__ import annotations

import asyncio

from ippbx.sip.one_shot import OneShot


async def test_set_resolves_every_waiter_at_once_and_later_waiters_are_resolved() -> None:
    flag = OneShot()
    first, second = flag.waiter(), flag.waiter()
    assert not flag.is_set() and flag.waited_on
    flag.set()
    # resolved by set() itself, before the loop runs again
    assert first.done() and second.done() and first.result() is None
    assert flag.is_set() and not flag.waited_on
    late = flag.waiter()
    assert late.done()
    flag.set()  # (again: nothing changes)
    assert flag.is_set()


async def test_a_waiter_given_up_is_skipped_and_let_go() -> None:
    flag = OneShot()
    gave_up = flag.waiter()
    gave_up.cancel()
    assert not flag.waited_on  # nobody waits any more
    for _ in range(100):  # a flag waited on and given up often does not grow
        flag.waiter().cancel()
    assert flag._waiters is not None and len(flag._waiters) <= 1
    waiting = flag.waiter()
    flag.set()  # a cancelled waiter is not set (that would raise InvalidStateError)
    assert waiting.result() is None and gave_up.cancelled()


async def test_a_waiter_beside_a_future_makes_no_task() -> None:
    flag, answer = OneShot(), asyncio.get_running_loop().create_future()
    tasks_before = len(asyncio.all_tasks())
    waiter = flag.waiter()
    asyncio.get_running_loop().call_later(0.01, flag.set)
    done, _ = await asyncio.wait({answer, waiter}, timeout=5,
                                 return_when=asyncio.FIRST_COMPLETED)
    assert done == {waiter} and not answer.done()
    assert len(asyncio.all_tasks()) == tasks_before


async def test_wait_reads_like_an_event_and_a_cancelled_wait_leaves_no_waiter() -> None:
    flag = OneShot()
    waiting = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    assert flag.waited_on
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert waiting.cancelled() and not flag.waited_on
    woken = asyncio.ensure_future(flag.wait())
    await asyncio.sleep(0)
    flag.set()
    await asyncio.wait_for(woken, 5)
    await asyncio.wait_for(flag.wait(), 5)  # (set: at once)
