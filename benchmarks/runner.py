"""Save and load timings of one peer, and the container for everything measured."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.peers import LoadVariant, Peer
from benchmarks.timing import Timing, fresh, fsync_path, now, prefault, quiet_gc, touch


@dataclass
class LoadTiming:
    """'open': the load call returned; 'ready': every byte of every array was read."""

    open: Timing
    ready: Timing

    def to_json(self) -> dict[str, Any]:
        return {"open": self.open.to_json(), "ready": self.ready.to_json()}


@dataclass
class Results:
    config: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Timing] = field(default_factory=dict)
    saves: dict[str, Timing] = field(default_factory=dict)
    loads: dict[str, LoadTiming] = field(default_factory=dict)
    # Timing, or the reason a command could not be timed.
    quick: dict[str, Timing | str] = field(default_factory=dict)
    imports: dict[str, Timing] = field(default_factory=dict)
    # (what, why) for every peer or section that did not run.
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def prune(self) -> None:
        """Drop figures without a single run (a peer that failed half-way)."""
        for table in (self.limits, self.saves, self.quick, self.imports):
            for key in [k for k, t in table.items() if isinstance(t, Timing) and not t.samples]:
                del table[key]
        for key in [k for k, t in self.loads.items() if not t.ready.samples]:
            del self.loads[key]


def save_label(peer: Peer, fsync: bool) -> str:
    if peer.durable:
        return f"{peer.label} (durable)"
    return f"{peer.label} + fsync" if fsync else peer.label


def bench_saves(
    peer: Peer,
    data: Any,
    path: Path,
    nbytes: int,
    repeat: int,
    paired: Callable[[], None] | None = None,
) -> dict[str, Timing]:
    """Time ``repeat`` saves to a fresh file; non-durable peers are also timed + fsync.

    Both figures come from the same run: the fsync follows the save immediately, so no
    dirty pages from one run are left to slow down the next. ``paired`` runs before each
    save, so a baseline it times sees the same disk weather (VM disks drift a lot).
    """
    as_is, durable = Timing(nbytes), Timing(nbytes)
    for _ in range(repeat):
        if paired is not None:
            paired()
        fresh(path)
        prefault()
        with quiet_gc():
            t0 = now()
            peer.save(data, path)
            t1 = now()
            if not peer.durable:
                fsync_path(path)
            t2 = now()
        as_is.samples.append(t1 - t0)
        durable.samples.append(t2 - t0)
    if peer.durable:
        return {save_label(peer, True): as_is}
    return {save_label(peer, False): as_is, save_label(peer, True): durable}


def bench_load(variant: LoadVariant, path: Path, nbytes: int, repeat: int) -> LoadTiming:
    """Time ``repeat`` loads of a page-cached file, each followed by a touch of every byte."""
    # Warm-up: the file's pages and the loader's code paths are hot before timing.
    obj = variant.load(path)
    touch(variant.arrays(obj))
    variant.close(obj)
    del obj
    result = LoadTiming(Timing(nbytes), Timing(nbytes))
    for _ in range(repeat):
        prefault()
        with quiet_gc():
            t0 = now()
            obj = variant.load(path)
            t1 = now()
            touch(variant.arrays(obj))
            t2 = now()
        # Dropped before the next run, so two loaded copies never coexist.
        variant.close(obj)
        del obj
        result.open.samples.append(t1 - t0)
        result.ready.samples.append(t2 - t0)
    return result
