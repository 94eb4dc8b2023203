"""Coalesce concurrent requests into one engine call.

Callers ``await submit(item)``. One worker task takes the first waiting item, gathers
more for at most ``max_wait_ms`` (or until ``max_batch_size``), and runs the batch in a
single worker thread, so the event loop keeps accepting requests while ONNX runs: under
load, whatever arrives during one batch forms the next. ``max_batch_size=1`` turns
batching off (one call per item, still off the event loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from llarapp.config import StageConfig, require

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class BatchingConfig(StageConfig):
    max_batch_size: int = 32
    max_wait_ms: float = 2.0

    def validate(self) -> None:
        require(1 <= self.max_batch_size <= 1024,
                f"max_batch_size must be in 1..1024, got {self.max_batch_size}")
        require(0 <= self.max_wait_ms <= 1000,
                f"max_wait_ms must be in 0..1000, got {self.max_wait_ms}")


class Batcher(Generic[Item, Result]):
    """``run`` maps a list of items to their results, in order (it runs in a thread)."""

    def __init__(self, run: Callable[[list[Item]], Sequence[Result]], config: BatchingConfig):
        self.run = run
        self.config = config
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llarapp-batch")
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, item: Item) -> Result:
        if self._worker is None or self._worker.done():
            self._queue = asyncio.Queue()
            self._worker = asyncio.get_running_loop().create_task(self._serve())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((item, future))
        return await future

    async def submit_all(self, items: Sequence[Item]) -> list[Result]:
        return list(await asyncio.gather(*(self.submit(i) for i in items)))

    async def _collect(self) -> list[tuple[Item, asyncio.Future]]:
        queue, loop = self._queue, asyncio.get_running_loop()
        batch = [await queue.get()]
        deadline = loop.time() + self.config.max_wait_ms / 1000
        while len(batch) < self.config.max_batch_size:
            if not queue.empty():
                batch.append(queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(queue.get(), remaining))
            except TimeoutError:
                break
        return batch

    async def _serve(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = [(item, future) for item, future in await self._collect()
                     if not future.cancelled()]  # the client went away
            if not batch:
                continue
            try:
                results: Any = await loop.run_in_executor(self.executor, self.run,
                                                          [item for item, _ in batch])
            except Exception as exc:  # every caller of the batch gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)
