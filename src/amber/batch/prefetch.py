"""Reading ahead: the next input batch is read and parsed on a helper thread while the
model predicts the current one.

Parsing (pyarrow's CSV and Parquet readers) and most models' predict release the GIL, so on
two or more cores the two overlap and a job takes about the longer of the two instead of
their sum. At most ``depth`` batches wait, so memory stays bounded.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

T = TypeVar("T")
_END = object()


class Prefetch(Generic[T]):
    """Iterate ``items`` one step ahead on a thread. Exceptions of the reader reach the
    consumer where the item would have; ``close()`` stops the reader (and closes its
    iterator on the reader's own thread) before returning."""

    def __init__(self, items: Iterable[T], depth: int = 1) -> None:
        self._queue: queue.Queue[tuple[Any, Any]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(iter(items),), name="amber-read-ahead", daemon=True
        )
        self._thread.start()

    def _put(self, entry: tuple[Any, Any]) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(entry, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, items: Iterator[T]) -> None:
        try:
            for item in items:
                if not self._put((item, None)):
                    return
            self._put((_END, None))
        except BaseException as exc:  # handed to the consumer, raised there
            self._put((_END, exc))
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # a generator's cleanup (its open file) runs here, not at exit

    def __iter__(self) -> Iterator[T]:
        while True:
            item, error = self._queue.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Prefetch[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
