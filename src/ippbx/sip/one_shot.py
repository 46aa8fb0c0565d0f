"""A flag set once that waiters can await as plain futures, with no task per wait.

A caller's CANCEL, a call hung up: something that happens once and that a call's
coroutine waits for beside other things (`asyncio.wait({answer, cancelled, hung_up})`).
`asyncio.Event.wait()` is a coroutine, so waiting on it beside futures takes a task of
its own per wait (and its cancellation another step of the loop). `OneShot.waiter()`
hands out a future instead: `set()` resolves every waiter still waiting, cancelling a
waiter is how a waiter gives up, and nothing is scheduled for either. It reads like an
Event where one is expected: `set`, `is_set` and `await wait()`.
"""

from __future__ import annotations

import asyncio

__all__ = ["OneShot"]


class OneShot:
    """Set once, never cleared; see the module doc."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = False
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        """Set the flag: every waiter still waiting is resolved at once (a coroutine
        awaiting one resumes on the loop's next pass, as with an Event)."""
        if self._set:
            return
        self._set = True
        waiters, self._waiters = self._waiters, None
        if waiters is not None:
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    def waiter(self) -> asyncio.Future[None]:
        """A future resolved when the flag is set (already resolved if it is). Cancel it
        once it no longer matters: that is all giving up takes."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._set:
            future.set_result(None)
            return future
        waiters = self._waiters
        if waiters is None:
            self._waiters = [future]
        else:  # (the ones that gave up go now, so a flag waited on often does not grow)
            waiters[:] = [w for w in waiters if not w.done()]
            waiters.append(future)
        return future

    @property
    def waited_on(self) -> bool:
        """Someone waits for the flag (a waiter not given up)."""
        return self._waiters is not None and any(not w.done() for w in self._waiters)

    async def wait(self) -> None:
        """Until the flag is set (at once if it is). A task cancelled while it waits
        cancels its waiter with it (asyncio cancels the future a task awaits)."""
        if not self._set:
            await self.waiter()
