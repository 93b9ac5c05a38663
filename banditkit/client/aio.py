"""The client for asyncio: :class:`AsyncClient`, its batch senders and its local decider."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import httpx

from ._core import (
    CircuitBreaker,
    Decision,
    Retry,
    Steps,
    T,
    Unavailable,
    _adrive,
    _answer,
    _Base,
    _Batches,
    _Call,
    _LocalModel,
    _Pause,
    _request_body,
    _RewardQueue,
    logger,
)


class AsyncBatchSender:
    """:class:`BatchSender` for asyncio: a task of the running loop sends the batches, ``send`` is awaited.

    Flushed at ``max_size`` rows, every ``interval_s`` and at :meth:`close` (an event loop cannot run at
    interpreter exit: close it, as ``async with AsyncClient(...)`` does). ``tick()``, if given, is awaited
    before each background flush. Made inside a running loop.

    >>> sent = []
    >>> async def send(key, rows):
    ...     sent.append((key, rows))
    >>> async def main():
    ...     s = AsyncBatchSender(send, max_size=2, interval_s=60)
    ...     s.add("hero", 1); s.add("hero", 2); s.add("hero", 3)
    ...     await s.close()
    >>> asyncio.run(main()); sent
    [('hero', [1, 2]), ('hero', [3])]
    """

    def __init__(
        self,
        send: Callable[[str, list], Awaitable[None]],
        *,
        max_size: int = 500,
        interval_s: float = 1.0,
        tick: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._send = send
        self._batches = _Batches(max_size)
        self.max_size = max_size
        self.interval_s = interval_s
        self._tick = tick
        self._flushing = asyncio.Lock()
        self._wake = asyncio.Event()
        self._closed = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="banditkit-async-sender")

    def add(self, key: str, row: Any) -> None:
        if self._batches.add(key, row):
            self._wake.set()

    @property
    def pending(self) -> int:
        """Rows not yet sent."""
        return self._batches.count

    async def flush(self) -> bool:
        """:meth:`BatchSender.flush`, awaited."""
        async with self._flushing:
            return await _adrive(self._batches.flushing(), self._send_batch)

    async def _send_batch(self, batch: tuple[str, list]) -> None:
        await self._send(*batch)

    async def close(self) -> None:
        """Stop the task and send what is pending (one last try)."""
        if self._closed:
            return
        self._closed = True
        self._wake.set()
        await self._task
        await self.flush()

    async def _run(self) -> None:
        while not self._closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)
            self._wake.clear()
            if self._closed:
                return
            try:
                if self._tick is not None:
                    await self._tick()
                await self.flush()
            except Exception:  # the task must outlive any one failure
                logger.exception("batch sender failed")


class AsyncRewardSender(_RewardQueue):
    """:class:`RewardSender` for :class:`AsyncClient` (:meth:`AsyncClient.sender`): ``reward`` queues at once.

    Sent by a task of the loop at ``max_size`` rewards, every ``interval_s`` and at ``await close()`` (which
    ``await client.close()`` does).

    >>> sender = async_client.sender(max_size=500, interval_s=1.0)  # doctest: +SKIP
    >>> sender.reward(decision, 1.0)  # doctest: +SKIP
    >>> await sender.flush()  # doctest: +SKIP
    True
    """

    client: AsyncClient
    batches: AsyncBatchSender

    def __init__(self, client: AsyncClient, *, max_size: int = 500, interval_s: float = 1.0) -> None:
        self.client = client
        self.batches = AsyncBatchSender(self._send, max_size=max_size, interval_s=interval_s)

    async def _send(self, name: str, rows: list) -> None:
        await self.client.reward_batch(name, rows)

    async def flush(self) -> bool:
        return await self.batches.flush()

    async def close(self) -> None:
        await self.batches.close()


class AsyncLocalDecider(_LocalModel):
    """:class:`LocalDecider` for :class:`AsyncClient`: ``decide`` makes no call; the model and log are awaited.

    Made by ``await client.local(name)`` (which pulls the model first); a task of the loop refreshes the model
    every ``refresh_s`` by its ETag and ships the decisions in batches, and ``await client.close()`` ships
    what is left.

    >>> local = await AsyncClient("http://bandits:8000").local("hero")  # doctest: +SKIP
    >>> local.decide(unit="u42").arm  # doctest: +SKIP
    'b'
    """

    client: AsyncClient
    log: AsyncBatchSender

    def __init__(
        self,
        client: AsyncClient,
        experiment: str,
        *,
        refresh_s: float = 1.0,
        ship_size: int = 1000,
        ship_interval_s: float = 1.0,
    ) -> None:
        super().__init__(client, experiment, refresh_s)
        self.log = AsyncBatchSender(
            self._ship, max_size=ship_size, interval_s=ship_interval_s, tick=self._maybe_refresh
        )

    async def refresh(self) -> bool:
        """:meth:`LocalDecider.refresh`, awaited."""
        return await self.client._run(self._refreshing())

    async def _maybe_refresh(self) -> None:
        if self._refresh_due():
            with contextlib.suppress(Unavailable):
                await self.refresh()

    async def _ship(self, name: str, rows: list) -> None:
        await self.client._run(self._shipping(name, rows))

    async def flush(self) -> bool:
        """Ship every queued decision now; True when none is left."""
        return await self.log.flush()

    async def close(self) -> None:
        await self.log.close()


class AsyncClient(_Base):
    """:class:`Client` for asyncio (httpx.AsyncClient): the same retries, ``request_id``, fallback and report.

    Also the same batched rewards (:meth:`sender`) and local decisions (:meth:`local`), sent by tasks of the
    running loop and flushed by :meth:`close`.

    >>> async def main():
    ...     async with AsyncClient("http://127.0.0.1:9", retry=Retry(attempts=1)) as c:
    ...         return c.url
    >>> asyncio.run(main())
    'http://127.0.0.1:9'
    """

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        timeout_s: float = 5.0,
        retry: Retry | None = None,
        breaker: CircuitBreaker | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(url, token, timeout_s, retry, breaker)
        self.http = httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=timeout_s, transport=transport)
        self._senders: list[AsyncRewardSender | AsyncLocalDecider] = []

    async def request(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> httpx.Response:
        """:meth:`Client.request`, awaited."""
        return await self._run(self._requesting(method, path, body, headers))

    async def _json(self, method: str, path: str, body: Any = None) -> Any:
        return _answer(await self.request(method, path, body))

    async def _perform(self, call: _Call | _Pause) -> Any:
        if isinstance(call, _Pause):
            return await asyncio.sleep(call.seconds)
        if call.mode == "json":
            return await self._json(call.method, call.path, call.body)
        if call.mode == "response":
            return await self.request(call.method, call.path, call.body, call.headers)
        return await self.http.request(call.method, call.path, json=call.body, headers=call.headers)

    async def _run(self, steps: Steps[T]) -> T:
        return await _adrive(steps, self._perform)

    async def decide(
        self,
        experiment: str,
        unit: str | None = None,
        context: Iterable[float] | None = None,
        allowed: Iterable[str] | None = None,
    ) -> Decision:
        """:meth:`Client.decide`, awaited."""
        return (await self._run(self._deciding(experiment, [_request_body(unit, context, allowed)], True)))[0]

    async def decide_batch(self, experiment: str, requests: list[dict]) -> list[Decision]:
        """:meth:`Client.decide_batch`, awaited."""
        return await self._run(self._deciding(experiment, requests, False))

    async def report(self) -> int:
        """:meth:`Client.report`, awaited."""
        return await self._run(self._reporting())

    async def local(
        self, experiment: str, *, refresh_s: float = 1.0, ship_size: int = 1000, ship_interval_s: float = 1.0
    ) -> AsyncLocalDecider:
        """An :class:`AsyncLocalDecider` for ``experiment``, its model pulled: :meth:`Client.local`, awaited."""
        local = AsyncLocalDecider(
            self, experiment, refresh_s=refresh_s, ship_size=ship_size, ship_interval_s=ship_interval_s
        )
        try:
            await local.refresh()
        except BaseException:
            await local.close()
            raise
        self._senders.append(local)
        return local

    async def reward(self, decision: Decision | str, value: float, *, experiment: str | None = None) -> dict:
        """:meth:`Client.reward`, awaited."""
        return await self._run(self._rewarding(decision, value, experiment))

    async def reward_batch(self, experiment: str, rewards: list[tuple[str, float]]) -> list[dict]:
        """:meth:`Client.reward_batch`, awaited."""
        return await self._run(self._rewarding_batch(experiment, rewards))

    def sender(self, *, max_size: int = 500, interval_s: float = 1.0) -> AsyncRewardSender:
        """An :class:`AsyncRewardSender`: rewards batched by size or interval, flushed at :meth:`close`."""
        sender = AsyncRewardSender(self, max_size=max_size, interval_s=interval_s)
        self._senders.append(sender)
        return sender

    async def close(self) -> None:
        """Flush the senders and local deciders, log the fallbacks that can be, close the connections."""
        for sender in self._senders:
            await sender.close()
        if self._unreported:
            await self.report()
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
