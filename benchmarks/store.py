"""``python -m benchmarks.store``: the model store, measured in one run.

1. Dedup. 10 versions of a ~200 MB transformer-shaped state dict where each version
   changes 5% of the tensors; then 10 versions where each changes a contiguous 2% slice of
   every large tensor. Bytes stored, against one version and against 10 full copies. For
   the second case, the bytes that fixed-size chunking would store (64 KiB to 4 MiB chunks,
   computed by hashing the same payloads) are printed beside amber's whole-tensor objects:
   the measurement behind the choice of whole tensors (docs/store.md, "Dedup").
2. Load from the store against loading the same model from a standalone .amber file, and
   save into the store against a standalone save (medians; ratios).
3. Listing: ``store.versions`` and ``store.models`` over N versions across 100 models, and
   ``amber ls`` / ``amber versions`` as fresh processes when the CLI is installed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import amber
from amber.container.digest import hasher
from amber.store import Store
from benchmarks import weights
from benchmarks.timing import Timing, now, prefault, quiet_gc, set_prefault, touch, user_environment

CHUNKS = (64 << 10, 1 << 20, 4 << 20)
LARGE = 1 << 20


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def stored_bytes(store_root: Path) -> int:
    return folder_bytes(store_root / "objects") + folder_bytes(store_root / "versions")


def chunk_digests(array: np.ndarray, size: int) -> set[bytes]:
    raw = memoryview(np.ascontiguousarray(array).reshape(-1).view(np.uint8))
    out = set()
    for start in range(0, raw.nbytes, size):
        h = hasher()
        h.update(raw[start : start + size])
        out.add(h.digest())
    return out


def scenario(
    base: dict[str, np.ndarray],
    versions: int,
    change: Callable[[dict, np.random.Generator], None],
    root: Path,
    seed: int,
) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    state = {k: v.copy() for k, v in base.items()}
    chunked = {size: set() for size in CHUNKS}
    chunk_bytes = dict.fromkeys(CHUNKS, 0)
    with Store(root) as store:
        for i in range(versions):
            if i:
                change(state, rng)
            store.save(state, "model", metrics={"step": i})
            for size in CHUNKS:
                for array in state.values():
                    for digest in chunk_digests(array, size):
                        if digest not in chunked[size]:
                            chunked[size].add(digest)
                            chunk_bytes[size] += min(size, array.nbytes)
    one = sum(a.nbytes for a in base.values())
    return {"one": one, "stored": stored_bytes(root), "chunked": chunk_bytes, "versions": versions}


def change_tensors(state: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    names = sorted(state)
    count = max(1, round(0.05 * len(names)))
    for name in rng.choice(names, size=count, replace=False):
        state[name] += np.float32(0.001)


def change_slices(state: dict[str, np.ndarray], rng: np.random.Generator) -> None:
    for array in state.values():
        if array.nbytes < LARGE:
            continue
        flat = array.reshape(-1)
        width = max(1, len(flat) // 50)
        start = int(rng.integers(0, len(flat) - width))
        flat[start : start + width] += np.float32(0.001)


def report_dedup(label: str, result: dict[str, Any]) -> float:
    one, stored, n = result["one"], result["stored"], result["versions"]
    ratio = stored / one
    print(f"\n{label}")
    print(f"  one version              {one / 2**20:9.1f} MiB")
    print(f"  {n} full copies          {n * one / 2**20:9.1f} MiB   {n:.2f}x one version")
    print(f"  amber store (tensors)    {stored / 2**20:9.1f} MiB   {ratio:.2f}x one version")
    for size, total in result["chunked"].items():
        print(
            f"  fixed {size >> 10:>5} KiB chunks   {total / 2**20:9.1f} MiB   "
            f"{total / one:.2f}x one version (estimate: unique chunks)"
        )
    return ratio


def median_ms(action: Callable[[], Any], repeat: int, nbytes: int) -> Timing:
    timing = Timing(nbytes)
    for _ in range(repeat):
        prefault()
        with quiet_gc():
            start = now()
            action()
            timing.samples.append(now() - start)
    return timing


def load_ready(load: Callable[[], dict[str, np.ndarray]]) -> Callable[[], float]:
    return lambda: touch(load().values())


def listing(root: Path, total: int, models: int) -> dict[str, float]:
    per_model = max(1, total // models)
    with Store(root) as store:
        for m in range(models):
            for v in range(per_model):
                store.save({"v": v}, f"model-{m:03d}", metrics={"score": v / per_model})
        out = {
            "store.versions(one model)": median_ms(lambda: store.versions("model-000"), 7, 0),
            "store.models()": median_ms(store.models, 7, 0),
            "store.search(metric)": median_ms(lambda: store.search(metrics=["score>=0.5"]), 7, 0),
        }
    cli = shutil.which("amber") or str(Path(sys.executable).with_name("amber"))
    results = {k: t.median * 1e3 for k, t in out.items()}
    if Path(cli).exists():
        env = {**user_environment(), "AMBER_STORE": str(root)}
        for label, argv in (
            ("amber ls", [cli, "ls"]),
            ("amber versions", [cli, "versions", "model-000"]),
        ):
            subprocess.run(argv, env=env, capture_output=True, check=False)  # warm .pyc
            times = []
            for _ in range(5):
                start = now()
                done = subprocess.run(argv, env=env, capture_output=True, check=False)
                times.append(now() - start)
            if done.returncode == 0:
                results[f"{label} (process)"] = sorted(times)[len(times) // 2] * 1e3
            else:
                results[f"{label} (process)"] = float("nan")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.store")
    parser.add_argument("--size-mb", type=float, default=200)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--listing-versions", type=int, default=10_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    shape = weights.shape_for(int(args.size_mb * 2**20))
    base = weights.generate(shape)
    nbytes = sum(a.nbytes for a in base.values())
    set_prefault(nbytes)
    print(f"state dict: {shape.describe()}", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="amber-bench-store-", dir=args.data_dir) as tmp:
        work = Path(tmp)
        print("dedup: 5% of tensors change...", file=sys.stderr)
        first = scenario(base, args.versions, change_tensors, work / "s1", 1)
        print("dedup: 2% slices change...", file=sys.stderr)
        second = scenario(base, args.versions, change_slices, work / "s2", 2)
        shutil.rmtree(work / "s1")
        shutil.rmtree(work / "s2")
        print("load and save...", file=sys.stderr)
        file = work / "model.amber"
        amber.save(base, file)
        with Store(work / "s3") as store:
            store.save(base, "model")
            load_file = median_ms(load_ready(lambda: amber.load(file)), args.repeat, nbytes)
            load_store = median_ms(load_ready(lambda: store.load("model")), args.repeat, nbytes)
            load_file_off = median_ms(
                load_ready(lambda: amber.load(file, verify="off")), args.repeat, nbytes
            )
            load_store_off = median_ms(
                load_ready(lambda: store.load("model", verify="off")), args.repeat, nbytes
            )
            save_file = median_ms(
                lambda: amber.save(base, work / "again.amber"), args.repeat, nbytes
            )
            fresh_stores = iter(range(10**6))

            def save_fresh() -> None:  # every tensor new: a store of its own each run
                with Store(work / f"fresh-{next(fresh_stores)}") as empty:
                    empty.save(base, "model")

            save_new = median_ms(save_fresh, args.repeat, nbytes)
            save_dedup = median_ms(lambda: store.save(base, "model"), args.repeat, nbytes)
        shutil.rmtree(work / "s3")
        for folder in work.glob("fresh-*"):
            shutil.rmtree(folder)
        print(f"listing: {args.listing_versions} versions across 100 models...", file=sys.stderr)
        lists = listing(work / "s4", args.listing_versions, 100)
    print(f"model store: {nbytes / 2**20:.0f} MiB state dict; medians of {args.repeat} runs")
    r1 = report_dedup("dedup: each version changes 5% of the tensors", first)
    r2 = report_dedup(
        "dedup: each version changes a contiguous 2% slice of every large tensor", second
    )
    print("\nload ready (every byte read) and save")
    rows = [
        ("amber.load(file)", load_file, load_file),
        ("store.load(name)", load_store, load_file),
        ("amber.load(file, verify=off)", load_file_off, load_file_off),
        ("store.load(name, verify=off)", load_store_off, load_file_off),
        ("amber.save(file) (durable)", save_file, save_file),
        ("store.save (all data new)", save_new, save_file),
        ("store.save (all data already stored)", save_dedup, save_file),
    ]
    for label, t, base_t in rows:
        print(f"  {label:<40}{t.median * 1e3:9.1f} ms  {t.median / base_t.median:6.2f}x")
    print(f"\nlisting ({args.listing_versions} versions across 100 models), ms")
    for label, ms in lists.items():
        print(f"  {label:<32}{ms:9.1f}")
    ratio = load_store.median / load_file.median
    print("\ntargets")
    checks = [
        (r1 <= 1.6, f"dedup, 5% of tensors change: {r1:.2f}x one version (<= 1.6x)"),
        (ratio <= 1.2, f"store load vs file load: {ratio:.2f}x (<= 1.2x)"),
    ]
    for label, ms in lists.items():
        checks.append((ms < 200, f"{label}: {ms:.0f} ms (< 200 ms)"))
    for passed, text in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {text}")
    print(f"  INFO  dedup, 2% slices change: {r2:.2f}x one version (reported)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
