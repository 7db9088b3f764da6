"""The machine's limits, measured in the same run as the formats: memory copy, reading a
page-cached file through mmap, durable writes, and BLAKE3 throughput."""

from __future__ import annotations

import mmap
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.timing import Timing, fresh, fsync_path, now, prefault, quiet_gc

# Large enough to defeat CPU caches, small enough not to double the harness's memory.
SCRATCH_BYTES = 256 * 2**20


def scratch(nbytes: int) -> np.ndarray:
    """A buffer whose pages are all really allocated (np.zeros would map the zero page)."""
    return np.full(min(nbytes, SCRATCH_BYTES), 0x5A, dtype=np.uint8)


def memcpy(buffer: np.ndarray, repeat: int) -> Timing:
    target = np.empty_like(buffer)
    target.fill(0)  # fault the pages in before timing
    timing = Timing(buffer.nbytes)
    for _ in range(repeat):
        with quiet_gc():
            t0 = now()
            np.copyto(target, buffer)
            timing.samples.append(now() - t0)
    return timing


def digest(buffer: np.ndarray, repeat: int, *, parallel: bool) -> Timing:
    """BLAKE3 of ``buffer``: one thread, or as many as blake3 picks (``max_threads=AUTO``)."""
    from blake3 import blake3

    timing = Timing(buffer.nbytes)
    data = memoryview(buffer)
    for _ in range(repeat):
        with quiet_gc():
            t0 = now()
            h = blake3(max_threads=blake3.AUTO) if parallel else blake3()
            h.update(data)
            h.digest()
            timing.samples.append(now() - t0)
    return timing


def _write_all(fd: int, data: memoryview) -> None:
    while data.nbytes:
        data = data[os.write(fd, data) :]


def write_fsync_once(arrays: Sequence[np.ndarray], path: Path) -> float:
    """Seconds to write the arrays' bytes to a new file, fsync it and its directory: the
    durable-write baseline. The file stays (page-cached) for ``page_cache_read``."""
    fresh(path)
    prefault()
    with quiet_gc():
        t0 = now()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            for array in arrays:
                _write_all(fd, memoryview(array).cast("B"))
        finally:
            os.close(fd)
        fsync_path(path)
        return now() - t0


def _mmap_sum(path: Path) -> float:
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        array = np.frombuffer(mm, dtype=np.float32)
        try:
            return float(array.sum())
        finally:
            del array  # the mapping cannot close while a view of it is alive


def page_cache_read(path: Path, repeat: int) -> Timing:
    """mmap a page-cached file and sum it as float32: the floor for a zero-copy 'ready'."""
    _mmap_sum(path)  # warm: the file is in the page cache before timing
    timing = Timing(path.stat().st_size)
    for _ in range(repeat):
        prefault()
        with quiet_gc():
            t0 = now()
            _mmap_sum(path)
            timing.samples.append(now() - t0)
    return timing


class CpuWatch:
    """CPU time other processes (and the hypervisor, as steal) took while the harness ran.

    Timings on a machine busy with other work are not comparable; the report says so.
    Linux only (/proc/stat); elsewhere ``summary`` is None.
    """

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float, float] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(x) for x in f.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        tick = os.sysconf("SC_CLK_TCK")
        # user nice system idle iowait irq softirq steal: busy excludes idle and iowait.
        busy = sum(fields[i] for i in (0, 1, 2, 5, 6) if i < len(fields)) / tick
        steal = fields[7] / tick if len(fields) > 7 else 0.0
        t = os.times()
        mine = t.user + t.system + t.children_user + t.children_system
        return time.monotonic(), busy, steal, mine

    def summary(self) -> tuple[float, float] | None:
        """(CPUs used by other processes, CPUs stolen by the hypervisor), averaged."""
        end = self._sample()
        if self.start is None or end is None or end[0] <= self.start[0]:
            return None
        wall = end[0] - self.start[0]
        others = (end[1] - self.start[1]) - (end[3] - self.start[3])
        return max(0.0, others / wall), (end[2] - self.start[2]) / wall
