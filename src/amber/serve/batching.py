"""Adaptive batching: requests for one model that wait together are answered by one call.

Requests queue while the model is busy. The batcher takes the first waiting request and
adds those queued behind it, releasing the batch when it holds ``max_batch_size`` rows, when
``max_wait_ms`` have passed since it started collecting, or as soon as nothing else is
waiting; so an idle server answers a lone request at once, and a busy one answers many per
call. Only requests for the same version and method share a batch. Inputs are checked one
request at a time before they join, so a bad request never fails its neighbours.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amber.serve.metrics import BATCH_BUCKETS
from amber.serve.problems import ModelError

if TYPE_CHECKING:
    from amber.serve.metrics import Metrics
    from amber.serve.models import ServedModel


@dataclass
class _Item:
    model: ServedModel
    x: Any
    method: str
    rows: int
    future: asyncio.Future = field(repr=False)


def _rows(x: Any) -> int:
    if isinstance(x, dict):  # named input tensors, one row count (checked by prepare)
        return int(next(iter(x.values())).shape[0])
    return int(x.shape[0])


def _concat(parts: list[Any]) -> Any:
    first = parts[0]
    if isinstance(first, dict):
        return {name: _concat([p[name] for p in parts]) for name in first}
    if hasattr(first, "iloc"):  # a DataFrame
        import pandas as pd

        return pd.concat(parts, ignore_index=True)
    if hasattr(first, "detach"):
        import torch

        return torch.cat(parts)
    import numpy as np

    return np.concatenate(parts)


class Batcher:
    """One per served model with batching on; runs in the server's event loop."""

    def __init__(self, name: str, max_batch_size: int, max_wait_ms: float, metrics: Metrics):
        self.name = name
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000.0
        self.metrics = metrics
        self._queue: asyncio.Queue[_Item] | None = None
        self._task: asyncio.Task | None = None
        self._held: _Item | None = None  # a request that could not join the last batch

    async def submit(self, model: ServedModel, x: Any, method: str) -> list[tuple[str, Any]]:
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._run())
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Item(model, x, method, _rows(x), future))
        return await future

    async def _next(self) -> _Item:
        if self._held is not None:
            item, self._held = self._held, None
            return item
        assert self._queue is not None
        return await self._queue.get()

    async def _collect(self) -> list[_Item]:
        assert self._queue is not None
        first = await self._next()
        batch, rows = [first], first.rows
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait
        while rows < self.max_batch_size and loop.time() < deadline and not self._queue.empty():
            item = self._queue.get_nowait()
            same = item.model is first.model and item.method == first.method
            if not same or rows + item.rows > self.max_batch_size:
                self._held = item
                break
            batch.append(item)
            rows += item.rows
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._collect()
            self.metrics.observe(
                "amber_batch_size",
                "Requests answered together by one model call.",
                len(batch),
                BATCH_BUCKETS,
                model=self.name,
            )
            try:
                outputs = await asyncio.to_thread(self._call, batch)
            except Exception as exc:
                error = exc if isinstance(exc, ModelError) else ModelError(str(exc)[:500])
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            for item, out in zip(batch, outputs, strict=True):
                if not item.future.done():
                    item.future.set_result(out)

    @staticmethod
    def _call(batch: list[_Item]) -> list[list[tuple[str, Any]]]:
        first = batch[0]
        if len(batch) == 1:
            return [first.model.call(first.x, first.method)]
        total = sum(item.rows for item in batch)
        outputs = first.model.call(_concat([item.x for item in batch]), first.method)
        for name, arr in outputs:
            if arr.ndim == 0 or arr.shape[0] != total:
                raise ModelError(
                    f"output {name!r} has {arr.shape[:1]} rows for a batch of {total}; serve "
                    "this model without batching"
                )
        results, start = [], 0
        for item in batch:
            end = start + item.rows
            results.append([(name, arr[start:end]) for name, arr in outputs])
            start = end
        return results
