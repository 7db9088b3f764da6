"""Progress of long operations (saving, converting, verifying): a callable the caller
passes, or a bar on stderr with ``progress=True``.

A callback receives ``(done_bytes, total_bytes)``; ``total_bytes`` is None while it is not
known (tensors produced on demand). It is called from the thread doing the work, at most
once per written chunk, and must not raise.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from amber.errors import InvalidArgumentError

Callback = Callable[[int, int | None], None]
Progress = bool | Callback | None


def check(progress: Any) -> None:
    """Refuse a ``progress=`` argument that is neither a bool, None nor a callable."""
    if not (progress is None or isinstance(progress, bool) or callable(progress)):
        raise InvalidArgumentError(
            "progress= takes True (a bar on stderr), False, or a callable "
            f"(done_bytes, total_bytes), not {type(progress).__name__}"
        )


@contextlib.contextmanager
def reporting(progress: Progress, description: str) -> Iterator[Callback | None]:
    """The callback to call while the work runs (None when nothing is to be reported)."""
    check(progress)
    if not progress:
        yield None
        return
    if progress is not True:
        yield progress  # type: ignore[misc]
        return
    bar = _Bar(description)
    try:
        yield bar.update
    finally:
        bar.close()


class _Bar:
    """Percentage, bytes, throughput and time left on one stderr line (rich when the
    ``cli`` extra is installed, plain text otherwise), redrawn at most 10 times a second."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.start = time.monotonic()
        self.last = 0.0
        self.done = 0
        self.total: int | None = None
        self._rich: Any = None
        try:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )
            from rich.progress import Progress as RichProgress

            from amber.cli.output import stderr
        except ImportError:
            return
        self._rich = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=stderr,
            transient=False,
        )
        self._task = self._rich.add_task(description, total=None)
        self._rich.start()

    def update(self, done: int, total: int | None) -> None:
        self.done, self.total = done, total
        if self._rich is not None:
            self._rich.update(self._task, completed=done, total=total)
            return
        now = time.monotonic()
        if now - self.last >= 0.1:
            self.last = now
            sys.stderr.write(f"\r{self._text(now)}")
            sys.stderr.flush()

    def _text(self, now: float) -> str:
        elapsed = max(now - self.start, 1e-9)
        rate = self.done / elapsed
        parts = [self.description]
        if self.total:
            parts.append(f"{100 * self.done / self.total:3.0f}%")
        parts.append(f"{self.done / 2**20:.1f} MiB  {rate / 2**20:.1f} MiB/s")
        if self.total and rate > 0:
            parts.append(f"{(self.total - self.done) / rate:.0f} s left")
        return "  ".join(parts)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            return
        sys.stderr.write(f"\r{self._text(time.monotonic())}\n")
        sys.stderr.flush()
