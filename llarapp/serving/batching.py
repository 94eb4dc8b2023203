"""Coalesce concurrent requests into one engine call, fairly and within a bounded queue.

Callers ``await submit_all(items)`` (one request's instances). One worker task takes the
waiting items, gathers more for at most ``max_wait_ms`` (or until ``max_batch_size``), and
runs the batch in a single worker thread, so the event loop keeps accepting requests while
ONNX runs: under load, whatever arrives during one batch forms the next.

- **Fair order.** The i-th item of a request waits in round i: a queue ordered by (round,
  arrival) serves every request's first instance before anyone's second, so a one-instance
  request that arrives while a 64-instance one runs goes into the next batch, not behind
  all 64.
- **Bulk takes a share.** Items of later rounds (the bulk of multi-instance requests) run
  on credit, as in deficit round robin: every first item earns ``BULK_SHARE`` of its cost,
  and a bulk item joins a batch when the credit covers its ``cost`` (an estimate of its
  engine time). While requests keep arriving (within ``FRESH_SECONDS``), bulk alone first
  waits ``YIELD_SECONDS`` for a request on its way, then takes one item and goes into
  debt, since whoever arrives next waits for it. With no other traffic, bulk fills whole
  batches. So a heavy request slows ordinary ones by
  about a quarter, however large it is, and still progresses.
- **Bounded queue.** At most ``max_queued`` items wait; a request that would exceed it is
  refused whole with :class:`Overloaded`, which carries a retry delay: the waiting items
  times the recent seconds per item.
- ``max_batch_size=1`` turns batching off (one call per item, still off the event loop).
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from llarapp.config import StageConfig, require
from llarapp.serving.limits import Overloaded

BULK_SHARE = 0.25
FRESH_SECONDS = 1.0
YIELD_SECONDS = 0.005
Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class BatchingConfig(StageConfig):
    max_batch_size: int = 32
    max_wait_ms: float = 2.0
    max_queued: int = 256  # items waiting for the engine; more answers 429

    def validate(self) -> None:
        require(1 <= self.max_batch_size <= 1024,
                f"max_batch_size must be in 1..1024, got {self.max_batch_size}")
        require(0 <= self.max_wait_ms <= 1000,
                f"max_wait_ms must be in 0..1000, got {self.max_wait_ms}")
        require(self.max_queued >= 1, f"max_queued must be at least 1, got {self.max_queued}")


class Batcher(Generic[Item, Result]):
    """``run`` maps a list of items to their results, in order (it runs in a thread)."""

    def __init__(self, run: Callable[[list[Item]], Sequence[Result]], config: BatchingConfig,
                 cost: Callable[[Item], float] = lambda item: 1.0):
        self.run = run
        self.config = config
        self.cost = cost
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llarapp-batch")
        self._queue: asyncio.PriorityQueue | None = None
        self._worker: asyncio.Task | None = None
        self._arrival = itertools.count()
        self.seconds_per_item = 0.01  # a running mean, for Retry-After
        self._credit = 0.0  # what bulk items may spend (deficit round robin)
        self._fresh_at = float("-inf")  # when a request last arrived

    @property
    def queued(self) -> int:
        return self._queue.qsize() if self._queue is not None else 0

    def retry_after(self) -> int:
        """Whole seconds until the waiting items have likely been served (at least 1)."""
        return max(1, math.ceil(self.queued * self.seconds_per_item))

    async def submit(self, item: Item) -> Result:
        return (await self.submit_all([item]))[0]

    async def submit_all(self, items: Sequence[Item]) -> list[Result]:
        """Results in order; raises :class:`Overloaded` (nothing queued) when the queue
        cannot take all of ``items``."""
        loop = asyncio.get_running_loop()
        if self._worker is None or self._worker.done():
            self._queue = asyncio.PriorityQueue()
            self._worker = loop.create_task(self._serve())
        if self.queued + len(items) > self.config.max_queued:
            raise Overloaded(self.queued, self.config.max_queued, self.retry_after())
        self._fresh_at = loop.time()
        futures = [loop.create_future() for _ in items]
        for round_, (item, future) in enumerate(zip(items, futures, strict=True)):
            self._queue.put_nowait((round_, next(self._arrival), item, future))
        try:
            return list(await asyncio.gather(*futures))
        except BaseException:  # a deadline or a disconnect: drop what has not run yet
            for future in futures:
                future.cancel()
            raise

    async def _collect(self) -> list[tuple[Item, asyncio.Future]]:
        queue, loop = self._queue, asyncio.get_running_loop()
        batch = [await queue.get()]
        metered = loop.time() - self._fresh_at < FRESH_SECONDS  # others are about
        if batch[0][0] > 0 and metered:  # bulk alone: let a request on its way arrive first
            queue.put_nowait(batch.pop())
            await asyncio.sleep(YIELD_SECONDS)
            batch.append(queue.get_nowait())
        deadline = loop.time() + self.config.max_wait_ms / 1000
        if not metered:
            self._credit = 0.0
        self._spend(batch[0], force=True)
        while len(batch) < self.config.max_batch_size:
            if queue.empty():
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    entry = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            else:
                entry = queue.get_nowait()
            if metered and not self._spend(entry):
                queue.put_nowait(entry)  # back in its place, for a later batch
                break
            batch.append(entry)
        return [entry[2:] for entry in batch]

    def _spend(self, entry: tuple, force: bool = False) -> bool:
        """Earn credit for a first item; spend it on a bulk item if it covers its cost."""
        cost = self.cost(entry[2])
        if entry[0] == 0:
            limit = BULK_SHARE * self.config.max_batch_size
            self._credit = min(self._credit + BULK_SHARE * cost, limit)
            return True
        if force or self._credit >= cost:
            self._credit -= cost
            return True
        return False

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [(item, future) for item, future in await self._collect()
                     if not future.cancelled()]  # the caller gave up
            if not batch:
                continue
            start = time.perf_counter()
            try:
                results: Any = await loop.run_in_executor(self.executor, self.run,
                                                          [item for item, _ in batch])
            except Exception as exc:  # every caller of the batch gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            per_item = (time.perf_counter() - start) / len(batch)
            self.seconds_per_item += 0.1 * (per_item - self.seconds_per_item)
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
