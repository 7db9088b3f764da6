"""``python -m benchmarks.torch_models``: a transformer-shaped torch state dict (1 GiB by
default), amber against torch.save/torch.load and safetensors.torch, in one run.

Figures are medians of ``--repeat`` runs on a warm page cache:
- save, durable: amber.save (fsync + atomic rename) against each peer followed by an fsync;
- load 'open' (the call returns) and 'ready' (every byte then read through numpy);
- loading into an existing module: ``amber.load(path, into=model)`` against
  ``model.load_state_dict(torch.load(path, ...))``.
Each figure is printed with its ratio to ``safetensors.torch.load_file`` (loads) or
``torch.save`` + fsync (saves), and the report ends with the targets marked PASS/FAIL.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import amber
from benchmarks import weights
from benchmarks.timing import Timing, fresh, fsync_path, now, prefault, quiet_gc, remove
from benchmarks.timing import set_prefault as _set_prefault
from benchmarks.timing import touch as _touch


def state_dict(size_mb: float, seed: int) -> dict[str, Any]:
    import torch

    shape = weights.shape_for(int(size_mb * 2**20))
    print(f"weights: {shape.describe()}", file=sys.stderr)
    return {k: torch.from_numpy(v) for k, v in weights.generate(shape, seed).items()}


def module_for(state: dict[str, Any]) -> Any:
    """An nn.Module whose parameters have the state dict's names and shapes (zeros)."""
    import torch
    from torch import nn

    root = nn.Module()
    for name, tensor in state.items():
        owner = root
        *path, leaf = name.split(".")
        for part in path:
            if not hasattr(owner, part):
                owner.add_module(part, nn.Module())
            owner = getattr(owner, part)
        owner.register_parameter(leaf, nn.Parameter(torch.zeros_like(tensor)))
    return root


def touch(state: dict[str, Any]) -> float:
    return _touch(t.detach().numpy() for t in state.values())


def durable(save: Callable[[dict[str, Any], Path], Any]) -> Callable[[dict[str, Any], Path], Any]:
    def run(state: dict[str, Any], path: Path) -> None:
        save(state, path)
        fsync_path(path)

    return run


def save_torch(state: dict[str, Any], path: Path) -> None:
    import torch

    torch.save(state, path)


def save_safetensors(state: dict[str, Any], path: Path) -> None:
    from safetensors.torch import save_file

    save_file(state, str(path))


def load_torch(mmap: bool) -> Callable[[Path], Any]:
    def run(path: Path) -> Any:
        import torch

        return torch.load(path, weights_only=True, mmap=mmap)

    return run


def load_safetensors(path: Path) -> Any:
    from safetensors.torch import load_file

    return load_file(str(path))


SAVERS: dict[str, tuple[Callable[[dict[str, Any], Path], Any], str]] = {
    "amber.save (durable)": (lambda s, p: amber.save(s, p), "amber"),
    "torch.save + fsync": (durable(save_torch), "pt"),
    "safetensors.torch.save_file + fsync": (durable(save_safetensors), "safetensors"),
}
LOADERS: dict[str, tuple[Callable[[Path], Any], str]] = {
    "amber.load (verify=full)": (lambda p: amber.load(p), "amber"),
    "amber.load (verify=off)": (lambda p: amber.load(p, verify="off"), "amber"),
    "torch.load(weights_only)": (load_torch(mmap=False), "pt"),
    "torch.load(weights_only, mmap)": (load_torch(mmap=True), "pt"),
    "safetensors.torch.load_file": (load_safetensors, "safetensors"),
}


def time_saves(state: dict[str, Any], folder: Path, repeat: int) -> dict[str, Timing]:
    nbytes = sum(t.nbytes for t in state.values())
    out = {}
    for label, (save, suffix) in SAVERS.items():
        path = folder / f"save.{suffix}"
        timing = Timing(nbytes)
        for _ in range(repeat):
            fresh(path)
            prefault()
            with quiet_gc():
                start = now()
                save(state, path)
                timing.samples.append(now() - start)
        remove(path)
        out[label] = timing
    return out


def time_loads(
    files: dict[str, Path], nbytes: int, repeat: int
) -> dict[str, tuple[Timing, Timing]]:
    out = {}
    for label, (load, suffix) in LOADERS.items():
        opened, ready = Timing(nbytes), Timing(nbytes)
        for _ in range(repeat):
            prefault()
            with quiet_gc():
                start = now()
                state = load(files[suffix])
                middle = now()
                touch(state)
                end = now()
            opened.samples.append(middle - start)
            ready.samples.append(end - start)
            del state
        out[label] = (opened, ready)
    return out


def time_into(model: Any, files: dict[str, Path], nbytes: int, repeat: int) -> dict[str, Timing]:
    runs: dict[str, Callable[[], Any]] = {
        "amber.load(into=model)": lambda: amber.load(files["amber"], into=model),
        "amber.load(into=model, verify=off)": lambda: amber.load(
            files["amber"], into=model, verify="off"
        ),
        "load_state_dict(torch.load(mmap))": lambda: model.load_state_dict(
            load_torch(mmap=True)(files["pt"])
        ),
        "load_state_dict(torch.load())": lambda: model.load_state_dict(
            load_torch(mmap=False)(files["pt"])
        ),
        "load_state_dict(safetensors)": lambda: model.load_state_dict(
            load_safetensors(files["safetensors"])
        ),
    }
    out = {}
    for label, run in runs.items():
        timing = Timing(nbytes)
        for _ in range(repeat):
            prefault()
            with quiet_gc():
                start = now()
                run()
                timing.samples.append(now() - start)
        out[label] = timing
    return out


def _row(label: str, t: Timing, base: Timing) -> str:
    return (
        f"  {label:<38}{t.median * 1e3:>10.1f} ms{t.gbps:>8.2f} GB/s"
        f"{t.median / base.median:>8.2f}x  (spread ±{t.spread:.0%})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.torch_models")
    parser.add_argument("--size-mb", type=float, default=1024, help="state dict size")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.size_mb <= 0:
        parser.error("--repeat must be >= 1 and --size-mb > 0")
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    state = state_dict(args.size_mb, args.seed)
    nbytes = sum(t.nbytes for t in state.values())
    _set_prefault(nbytes)
    with tempfile.TemporaryDirectory(prefix="amber-bench-torch-") as tmp:
        folder = Path(tmp)
        print("timing saves...", file=sys.stderr)
        saves = time_saves(state, folder, args.repeat)
        files = {"amber": folder / "w.amber", "pt": folder / "w.pt"}
        files["safetensors"] = folder / "w.safetensors"
        amber.save(state, files["amber"])
        save_torch(state, files["pt"])
        save_safetensors(state, files["safetensors"])
        print("timing loads...", file=sys.stderr)
        loads = time_loads(files, nbytes, args.repeat)
        print("timing loads into a module...", file=sys.stderr)
        into = time_into(module_for(state), files, nbytes, args.repeat)
    print(f"torch state dict: {nbytes / 2**20:.0f} MiB; medians of {args.repeat} runs")
    print("\nsave (durable); ratio to torch.save + fsync")
    for label, t in saves.items():
        print(_row(label, t, saves["torch.save + fsync"]))
    st_open, st_ready = loads["safetensors.torch.load_file"]
    print("\nload 'open' (call returns); ratio to safetensors.torch.load_file")
    for label, (opened, _) in loads.items():
        print(_row(label, opened, st_open))
    print("\nload 'ready' (every byte read); ratio to safetensors.torch.load_file")
    for label, (_, ready) in loads.items():
        print(_row(label, ready, st_ready))
    print("\nload into an existing module; ratio to load_state_dict(torch.load(mmap))")
    for label, t in into.items():
        print(_row(label, t, into["load_state_dict(torch.load(mmap))"]))
    off = loads["amber.load (verify=off)"][1].median / st_ready.median
    full = loads["amber.load (verify=full)"][1].median / st_ready.median
    save = saves["amber.save (durable)"].median / saves["torch.save + fsync"].median
    checks = [
        (off <= 1.0, f"load ready, verify=off: {off:.2f}x safetensors.torch (<= 1x)"),
        (full <= 2.0, f"load ready, verify=full: {full:.2f}x safetensors.torch (<= 2x)"),
        (save < 1.0, f"durable save: {save:.2f}x torch.save + fsync (< 1x)"),
    ]
    print("\ntargets")
    for passed, text in checks:
        print(f"  {'PASS' if passed else 'FAIL'}  {text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
