"""Timing primitives shared by the measurements: medians, fsync, touching every byte."""

from __future__ import annotations

import contextlib
import gc
import os
import statistics
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Timing:
    """Seconds of several runs of one operation over ``nbytes`` bytes (0: not a transfer)."""

    nbytes: int = 0
    samples: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def gbps(self) -> float:
        """Throughput in GB/s (10^9 bytes per second) of the median run."""
        return self.nbytes / self.median / 1e9 if self.median > 0 else float("inf")

    @property
    def best(self) -> float:
        return min(self.samples)

    @property
    def spread(self) -> float:
        """Half the range of the samples, relative to the median (noise indicator)."""
        if len(self.samples) < 2 or self.median <= 0:
            return 0.0
        return (max(self.samples) - min(self.samples)) / 2 / self.median

    def to_json(self) -> dict[str, Any]:
        return {"nbytes": self.nbytes, "median_s": self.median, "samples_s": self.samples}


# Bytes of fresh memory ``prefault`` touches; set once by the CLI (0: off).
_prefault_bytes = 0


def set_prefault(nbytes: int) -> None:
    global _prefault_bytes
    _prefault_bytes = max(0, nbytes)


def prefault() -> None:
    """Touch and free fresh memory right before a timed run.

    VMs with free page reporting (virtio-balloon) hand freed memory back to the host, and
    the next allocation faults it in again at a few hundred MB/s: whichever run first
    fills new page cache or new arrays then looks several times slower, at random. Pages
    just freed here are reused first by the kernel, so the timed run sees guest-resident
    memory, as on a machine that is not a VM.
    """
    if _prefault_bytes:
        scratch = np.empty(_prefault_bytes, dtype=np.uint8)
        scratch.fill(1)
        del scratch


@contextlib.contextmanager
def quiet_gc() -> Iterator[None]:
    """Collect now, then keep the collector out of the timed region (as timeit does)."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def fsync_path(path: Path) -> None:
    """Make a file written by someone else durable: fsync it, then its directory.

    fsync through a fresh read-only descriptor flushes the inode's dirty pages on Linux,
    which is what a caller of a library without a durable save would have to do.
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    dfd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def remove(path: Path) -> None:
    """Delete a file (if any) and drop garbage, so the next run starts from the same state."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    gc.collect()


def fresh(path: Path) -> None:
    """Remove ``path`` and flush the filesystem before a timed write.

    Freeing a deleted file's blocks costs at the next journal commit (and, on ext4 mounted
    with ``discard``, sends the discards then); syncing now keeps that out of the next
    timed fsync.
    """
    remove(path)
    os.sync()


def touch(arrays: Iterable[np.ndarray]) -> float:
    """Read every byte: sum each array with numpy.

    Every loader is touched by the same numpy reduction (torch tensors via ``.numpy()``,
    zero-copy) so 'ready' differs between loaders only by what their load costs.
    """
    total = 0.0
    for array in arrays:
        total += float(array.sum())
    return total


def median_ms(action: Any, repeat: int) -> float:
    """Median milliseconds of ``repeat`` runs of ``action()``, the collector kept out."""
    times = []
    for _ in range(repeat):
        with quiet_gc():
            start = time.perf_counter()
            action()
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def now() -> float:
    return time.perf_counter()


def user_environment() -> dict[str, str]:
    """The environment for timed subprocesses, as a user's machine has it: this sandbox sets
    PYTHONDONTWRITEBYTECODE, which makes every fresh process recompile amber's sources (and
    a user's never does); the first, untimed run writes the .pyc files."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env
