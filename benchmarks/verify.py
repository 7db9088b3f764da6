"""``python -m benchmarks.verify``: what full verification costs, per model shape.

Full verification checks every tensor digest and every padding byte (docs/format.md §6,
step 18): each byte of the data region is hashed once, tensor by tensor. amber 0.1.0
instead hashed the whole data region in one parallel pass against ``data_digest``, which
did not check the tensor digests the store relies on. Both are measured here in one
process, on the same files:

- ``open (off)``: ``ContainerReader(verify="off")``, the structure and manifest checks;
- ``0.1.0 full``: that, then BLAKE3 of the data region in one pass over the mapping;
- ``full now``: ``ContainerReader(verify="full")``;
- ``now, mmap=False``: the same, reading each tensor into its own buffer once.

Wall and CPU (all threads of the process) medians, in ms. Options: ``--size-mb`` (the large
state dict), ``--repeat``, ``--data-dir``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import amber
from amber.container.digest import hasher
from amber.container.format import HEADER_SIZE
from amber.container.reader import ContainerReader
from benchmarks import weights
from benchmarks.timing import quiet_gc


def interleaved(actions: list[Callable[[], Any]], repeat: int) -> list[tuple[float, float]]:
    """Median wall and CPU milliseconds of each action, run in turn ``repeat`` times (after
    one warm-up round), so that a change in the machine's load affects all alike."""
    wall: list[list[float]] = [[] for _ in actions]
    cpu: list[list[float]] = [[] for _ in actions]
    for round_ in range(repeat + 1):
        for i, action in enumerate(actions):
            with quiet_gc():
                c, t = time.process_time(), time.perf_counter()
                action()
                w, u = time.perf_counter() - t, time.process_time() - c
            if round_:
                wall[i].append(w)
                cpu[i].append(u)
    return [
        (statistics.median(w) * 1e3, statistics.median(c) * 1e3)
        for w, c in zip(wall, cpu, strict=True)
    ]


def verify_region(path: Path) -> None:
    """amber 0.1.0's full verification: open, then one parallel BLAKE3 pass over the data
    region of a fresh mapping, compared with ``data_digest``."""
    with ContainerReader(path, verify="off") as reader:
        assert reader._mmap is not None
        view = memoryview(reader._mmap)
        try:
            h = hasher(reader.trailer.manifest_offset - HEADER_SIZE)
            h.update(view[HEADER_SIZE : reader.trailer.manifest_offset])
        finally:
            view.release()
        assert "blake3:" + h.hexdigest() == reader.manifest["data_digest"]


def models(size_mb: float) -> dict[str, Any]:
    out: dict[str, Any] = {
        f"{size_mb:.0f} MiB state dict": weights.generate(weights.shape_for(int(size_mb * 2**20))),
        "200 MiB state dict": weights.generate(weights.shape_for(200 << 20)),
    }
    rng = np.random.default_rng(1)
    out["4000 small arrays"] = {
        f"a{i}": rng.standard_normal(int(rng.integers(4, 2048))) for i in range(4000)
    }
    try:
        from sklearn.datasets import make_classification
        from sklearn.ensemble import RandomForestClassifier
    except ImportError:
        print("scikit-learn is not installed: the forest is skipped", file=sys.stderr)
    else:
        X, y = make_classification(20000, 20, random_state=0)
        forest = RandomForestClassifier(200, random_state=0, n_jobs=-1).fit(X, y)
        out["RandomForest, 200 trees"] = forest
    return out


def measure(path: Path, label: str, repeat: int) -> tuple:
    with ContainerReader(path, verify="off") as reader:
        count, size = len(reader.entries), reader.trailer.manifest_offset - HEADER_SIZE

    def opened(**options: Any) -> Callable[[], None]:
        def run() -> None:
            with ContainerReader(path, **options):
                pass

        return run

    off, old, full, nommap = interleaved(
        [
            opened(verify="off"),
            lambda: verify_region(path),
            opened(verify="full"),
            opened(verify="full", use_mmap=False),
        ],
        repeat,
    )
    return (f"{label} ({count} tensors, {size / 2**20:.0f} MiB)", off, old, full, nommap)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.verify")
    parser.add_argument("--size-mb", type=float, default=1024)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="amber-bench-verify-", dir=args.data_dir) as tmp:
        for label, model in models(args.size_mb).items():
            path = Path(tmp) / "model.amber"
            amber.save(model, path)
            del model
            print(f"{label}...", file=sys.stderr)
            rows.append(measure(path, label, args.repeat))
            os.unlink(path)
    print(f"full verification, medians of {args.repeat} runs: wall / CPU ms")
    print(
        f"  {'file':<50}{'open (off)':>14}{'0.1.0 full':>14}{'full now':>14}"
        f"{'now / 0.1.0':>16}{'now, mmap=False':>18}"
    )
    for label, off, old, full, nommap in rows:
        print(
            f"  {label:<50}"
            + "".join(f"{w:7.1f}/{c:<6.1f}" for w, c in (off, old, full))
            + f"{full[0] / old[0]:>8.2f}x/{full[1] / old[1]:4.2f}x"
            + f"{nommap[0]:>11.1f}/{nommap[1]:<6.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
