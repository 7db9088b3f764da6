"""Reading a version record while the request that names it is still on the wire.

Resolving ``churn`` (its latest version) or ``churn@production`` costs two requests, one
after the other: a LIST of ``versions/churn/`` (or a GET of the alias) to learn the number,
then a GET of that version's record. On a remote store each is a round trip. The client's
index usually knows the answer already, so the record it names is read on a worker thread
at the same time; the prefetched record is used only when storage then names that very
version. The index only ever chooses what is read early, never what is returned: a wrong or
stale guess costs one wasted GET, and the caller reads the right record itself.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from amber.errors import AmberError

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor
    from types import TracebackType

    from amber.store import records
    from amber.store.ledger import Ledger


class Prefetch:
    """``with Prefetch(ledger, name, guess) as early: ... early.take(number)``; no thread
    is started when ``guess`` is None."""

    def __init__(self, ledger: Ledger, name: str, guess: int | None) -> None:
        self._guess = guess
        self._pool: ThreadPoolExecutor | None = None
        self._future: Future[records.Record | None] | None = None
        if guess is not None:
            from concurrent.futures import ThreadPoolExecutor  # local stores never need it

            self._pool = ThreadPoolExecutor(1, thread_name_prefix="amber-prefetch")
            self._future = self._pool.submit(ledger.record, name, guess)

    def take(self, number: int) -> records.Record | None:
        """The prefetched record if it is ``name@number``'s and was read without error;
        None otherwise (the caller then reads it and reports any error itself)."""
        if self._future is None or number != self._guess:
            return None
        try:
            return self._future.result()
        except AmberError:
            return None

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._pool is not None:
            # A read no longer wanted still finishes: its client times out on its own.
            self._pool.shutdown(wait=True, cancel_futures=True)
