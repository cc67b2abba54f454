"""A queue of one transaction's statements, run in order while Python goes on working."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["Lane"]

_T = TypeVar("_T")


class Lane:
    """A transaction's statements, run one after another in the background.

    A connection runs one statement at a time; queued here, they run while Python goes on
    deciding (each waits for the one before, and a failure fails every later one). Python
    only hands over control at an `await`, so long stretches of work `await asyncio.sleep(0)`
    now and then to let the next statement go out. Before the transaction ends, `drain` (or,
    on the way out of an error, `settle`) must have been awaited.

    One task runs every queued step in turn: the next statement goes out in the same turn
    of the event loop as the last one's answer comes in. A task per step would need two
    more turns (the finished task's callbacks, then the waiting task), each of which waits
    for the decider's next pause while the connection idles.
    """

    __slots__ = ("_failure", "_queue", "_worker")

    def __init__(self) -> None:
        self._queue: deque[tuple[Callable[[], Awaitable[Any]], asyncio.Future[Any]]] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._failure: BaseException | None = None

    @property
    def idle(self) -> bool:
        """Whether everything queued so far has run."""
        return self._worker is None or self._worker.done()

    def run(self, step: Callable[[], Awaitable[_T]]) -> asyncio.Future[_T]:
        """Queue `step`; the future has its result once it ran."""
        done: asyncio.Future[_T] = asyncio.get_running_loop().create_future()
        self._queue.append((step, done))
        if self.idle:
            self._worker = asyncio.ensure_future(self._work())
        return done

    async def _work(self) -> None:
        queue = self._queue
        while queue:
            step, done = queue.popleft()
            if self._failure is None:
                try:
                    result = await step()
                except asyncio.CancelledError as exc:
                    self._failure = exc
                    done.cancel()
                    raise
                except BaseException as exc:  # handed to whoever awaits the step, and to drain
                    self._failure = exc
                else:
                    if not done.done():
                        done.set_result(result)
                    continue
            # This step failed, or one before it did: each later one fails as the first.
            if not done.done():
                done.set_exception(self._failure)
                done.exception()  # seen: `drain` raises it, so a step nobody awaits logs nothing

    async def drain(self) -> None:
        """Wait for everything queued; the first failure is raised."""
        while not self.idle:
            assert self._worker is not None
            await self._worker
        if self._failure is not None:
            raise self._failure

    async def settle(self) -> None:
        """Wait for whatever is still queued, its failures ignored (already failing)."""
        while not self.idle:
            assert self._worker is not None
            await asyncio.wait([self._worker])
        for _, done in self._queue:
            done.cancel()
        self._queue.clear()
