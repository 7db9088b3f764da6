"""Reading ahead: items arrive in order, at most one ahead of the consumer; a reader's error
is raised where its item would have been; stopping early closes the reader's iterator
(its open file) before close() returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from amber.batch.prefetch import Prefetch
from amber.errors import FormatError


def test_order_and_bounded_read_ahead() -> None:
    produced: list[int] = []

    def items() -> Iterator[int]:
        for i in range(20):
            produced.append(i)
            yield i

    got = []
    with Prefetch(items()) as ahead:
        for item in ahead:
            time.sleep(0.002)
            # the reader holds at most one waiting item and one it is trying to hand over
            assert len(produced) <= item + 3
            got.append(item)
    assert got == list(range(20))


def test_reader_error_is_raised_in_place() -> None:
    def items() -> Iterator[int]:
        yield 1
        yield 2
        raise FormatError("block 3 is not CSV")

    seen = []
    with pytest.raises(FormatError, match="block 3"), Prefetch(items()) as ahead:
        seen.extend(ahead)
    assert seen == [1, 2]


def test_stopping_early_closes_the_reader_on_its_thread() -> None:
    closed_on: list[int] = []
    reader_thread: list[int] = []

    def items() -> Iterator[int]:
        reader_thread.append(threading.get_ident())
        try:
            yield from range(10_000)
        finally:
            closed_on.append(threading.get_ident())

    ahead = Prefetch(items())
    for item in ahead:
        if item == 3:
            break
    ahead.close()
    assert closed_on == reader_thread  # cleaned up before close() returned, by the reader
    assert not any(t.name == "amber-read-ahead" and t.is_alive() for t in threading.enumerate())
