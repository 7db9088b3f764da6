"""``python -m benchmarks``: time amber and its peers in one run and print the report.

Progress goes to stderr, the report to stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import machine, quick, report, weights
from benchmarks.peers import PEERS, Peer, Weights, save_amber
from benchmarks.runner import Results, bench_load, bench_saves
from benchmarks.timing import Timing, remove, set_prefault

if TYPE_CHECKING:
    import numpy as np

SECTIONS = ("limits", *(p.key for p in PEERS), "inspect", "import")
# Average CPUs taken by others above which the report warns.
OTHER_LOAD_WARNING = 0.25
VERSIONED = ("numpy", "blake3", "safetensors", "torch")

_START = time.perf_counter()


def progress(message: str) -> None:
    print(f"[{time.perf_counter() - _START:7.1f}s] {message}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Time amber's save/load against pickle, npz, safetensors and torch.",
    )
    parser.add_argument("--size-mb", type=float, default=1024, help="weights size (default 1024)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure (default 5)")
    parser.add_argument(
        "--only",
        default=None,
        help=f"comma-separated subset of: {','.join(SECTIONS)} (default: all)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write results to PATH")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where the files go, in a fresh subfolder removed afterwards (default: system temp)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    parser.add_argument(
        "--no-prefault",
        action="store_true",
        help="do not touch fresh memory before each timed run (see timing.prefault)",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.size_mb <= 0:
        parser.error("--repeat must be >= 1 and --size-mb > 0")
    if args.only is None:
        args.only = set(SECTIONS)
    else:
        args.only = {name.strip() for name in args.only.split(",") if name.strip()}
        unknown = args.only - set(SECTIONS)
        if unknown:
            parser.error(f"unknown --only names {sorted(unknown)}; known: {', '.join(SECTIONS)}")
    return args


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def run_limits(results: Results, arrays: list[np.ndarray], workdir: Path, repeat: int) -> None:
    """memcpy, BLAKE3 and page-cache read. write + fsync is timed with amber's saves."""
    progress("machine limits: memcpy, blake3")
    buffer = machine.scratch(sum(a.nbytes for a in arrays))
    results.limits[report.MEMCPY] = machine.memcpy(buffer, repeat)
    results.limits[report.BLAKE3_ONE] = machine.digest(buffer, repeat, parallel=False)
    results.limits[report.BLAKE3_AUTO] = machine.digest(buffer, repeat, parallel=True)
    del buffer
    progress("machine limits: page-cache read")
    path = workdir / "raw.bin"
    machine.write_fsync_once(arrays, path)
    results.limits[report.MMAP_TOUCH] = machine.page_cache_read(path, repeat)
    remove(path)


def write_fsync_baseline(
    results: Results, arrays: list[np.ndarray], workdir: Path
) -> Callable[[], None]:
    """A function timing one run of the write + fsync baseline into ``results.limits``."""
    timing = results.limits[report.WRITE_FSYNC] = Timing(sum(a.nbytes for a in arrays))
    path = workdir / "raw.bin"

    def run_once() -> None:
        timing.samples.append(machine.write_fsync_once(arrays, path))
        remove(path)

    return run_once


def run_peer(
    results: Results,
    peer: Peer,
    data: Weights,
    workdir: Path,
    repeat: int,
    paired: Callable[[], None] | None = None,
) -> None:
    nbytes = sum(a.nbytes for a in data.values())
    path = workdir / f"weights{peer.suffix}"
    try:
        prepared = peer.prepare(data)
        with_baseline = ", each after a write + fsync baseline run" if paired else ""
        progress(f"{peer.key}: save x{repeat}{with_baseline}")
        results.saves.update(bench_saves(peer, prepared, path, nbytes, repeat, paired))
        del prepared  # only the file is needed from here on
        for variant in peer.loads:
            progress(f"{peer.key}: {variant.label} x{repeat}")
            results.loads[variant.label] = bench_load(variant, path, nbytes, repeat)
    except Exception as exc:
        traceback.print_exc()
        results.failed.append((peer.key, f"{type(exc).__name__}: {exc}"))
    finally:
        remove(path)


def run_quick(results: Results, data: Weights, workdir: Path, repeat: int) -> None:
    path = workdir / "inspect.amber"
    progress("inspect / verify --quick")
    try:
        save_amber(data, path)
        results.quick.update(quick.api_calls(path, quick.api_runs(repeat)))
        results.quick.update(quick.cli_calls(path, quick.subprocess_runs(repeat)))
    except Exception as exc:
        traceback.print_exc()
        results.failed.append(("inspect", f"{type(exc).__name__}: {exc}"))
    finally:
        remove(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    shape = weights.shape_for(int(args.size_mb * 2**20))
    # Twice the data: a copying loader may hold a file-sized buffer and the arrays at once.
    prefault_bytes = 0 if args.no_prefault else 2 * shape.nbytes + min(shape.nbytes, 2**28)
    set_prefault(prefault_bytes)
    results = Results()
    results.config = {
        "weights": shape.describe(),
        "repeat": args.repeat,
        "prefault": f"{prefault_bytes / 2**20:.0f} MiB of fresh memory touched before each "
        "timed run"
        if prefault_bytes
        else "off",
        "sections": ",".join(s for s in SECTIONS if s in args.only),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "python": platform.python_version(),
        "versions": ", ".join(f"{n} {_version(n)}" for n in ("amber", *VERSIONED)),
    }
    runnable = []
    for peer in (p for p in PEERS if p.key in args.only):
        reason = peer.unavailable()
        if reason is None:
            runnable.append(peer)
        else:
            results.skipped.append((f"{peer.label} / {peer.loads[0].label}", reason))
            progress(f"skipping {peer.key}: {reason}")

    watch = machine.CpuWatch()
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="amber-bench-", dir=args.data_dir))
    results.config["data dir"] = str(workdir)
    try:
        progress(f"generating {shape.describe()}")
        data = weights.generate(shape, args.seed)
        arrays = list(data.values())
        baseline = None
        if "limits" in args.only:
            run_limits(results, arrays, workdir, args.repeat)
            baseline = write_fsync_baseline(results, arrays, workdir)
            if not any(peer.key == "amber" for peer in runnable):
                progress(f"machine limits: write + fsync x{args.repeat}")
                for _ in range(args.repeat):
                    baseline()
        for peer in runnable:
            # amber's saves alternate with the baseline's runs: the target compares them.
            paired = baseline if peer.key == "amber" else None
            run_peer(results, peer, data, workdir, args.repeat, paired)
        del arrays
        if "inspect" in args.only:
            run_quick(results, data, workdir, args.repeat)
        del data
        if "import" in args.only:
            progress("import time")
            results.imports.update(quick.import_overhead(quick.subprocess_runs(args.repeat)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    load = watch.summary()
    if load is not None:
        results.config["other load"] = (
            f"{load[0]:.2f} CPUs busy with other processes, {load[1]:.2f} stolen by the "
            "hypervisor (averages over the run)"
        )
        if load[0] + load[1] > OTHER_LOAD_WARNING:
            results.warnings.append(
                "the machine was busy with other work during the run; timings are not "
                "comparable with a quiet run; rerun when it is idle"
            )
    results.prune()
    sys.stdout.write(report.render(results))
    if args.json is not None:
        args.json.write_text(json.dumps(report.to_json(results), indent=2) + "\n")
        progress(f"results written to {args.json}")
    return 1 if results.failed else 0


if __name__ == "__main__":
    sys.exit(main())
