"""Single requests of one event-loop turn, served as one batch.

Under load, many requests to the same experiment arrive in one turn of the
event loop. Serving each alone costs a draw, a store job, a commit and a
wake-up apiece; joining them costs those once. The first request of a turn
opens a batch and schedules it for the loop's next pass over its queue, so
requests already queued join it and nobody waits longer than that pass.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Coalescer(Generic[Item, Answer]):
    """Calls ``serve(key, items)`` once per key and loop turn; each caller gets its own item's answer.

    ``serve`` returns one answer per item, in order. If it raises, every
    caller of the batch gets the exception. A caller that is cancelled
    leaves the batch alone.
    """

    def __init__(self, serve: Callable[[str, list[Item]], Awaitable[list[Answer]]]) -> None:
        self._serve = serve
        self._pending: dict[str, list[tuple[Item, asyncio.Future]]] = {}
        self._running: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    async def submit(self, key: str, item: Item) -> Answer:
        loop = asyncio.get_running_loop()
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = []
            loop.call_soon(self._flush, key)
        waiter = loop.create_future()
        pending.append((item, waiter))
        return await waiter

    def _flush(self, key: str) -> None:
        task = asyncio.ensure_future(self._answer(key, self._pending.pop(key)))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _answer(self, key: str, pending: list[tuple[Item, asyncio.Future]]) -> None:
        failure: Exception | None = None
        try:
            answers = await self._serve(key, [item for item, _ in pending])
        except Exception as error:
            failure = error
        for index, (_, waiter) in enumerate(pending):
            if waiter.done():  # cancelled: its client went away
                continue
            if failure is None:
                waiter.set_result(answers[index])
            else:
                waiter.set_exception(failure)
