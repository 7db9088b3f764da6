"""Plain-text tables of the results, the targets verdicts, and the JSON dump."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.runner import Results
from benchmarks.timing import Timing

# Row labels the targets refer to: they must match the labels in peers.py and runner.py
# (the smoke test checks that the targets that need only amber get a verdict).
MEMCPY = "memcpy (np.copyto)"
MMAP_TOUCH = "page-cache read (mmap + numpy sum)"
WRITE_FSYNC = "write + fsync (file and dir)"
BLAKE3_ONE = "blake3, 1 thread"
BLAKE3_AUTO = "blake3, max_threads=AUTO"
SAVE_BASELINE = "write + fsync, same bytes (baseline)"
LOAD_LIMIT = "mmap + numpy sum (limit)"
AMBER_SAVE = "amber.save (durable)"
AMBER_FULL = "amber.load verify=full"
AMBER_OFF = "amber.load verify=off"
TORCH_SAVE_FSYNC = "torch.save + fsync"
ST_NUMPY_LOAD = "safetensors.numpy.load_file"
ST_TORCH_LOAD = "safetensors.torch.load_file"
INSPECT = "amber.inspect"
VERIFY_QUICK = "amber.verify(quick=True)"
CLI_INSPECT = "amber inspect FILE"
CLI_VERIFY = "amber verify --quick FILE"
IMPORT_PASS = "python -c pass"
IMPORT_AMBER = "python -c 'import amber'"

QUICK_TARGET_S = 0.050
IMPORT_TARGET_S = 0.100


def seconds(s: float) -> str:
    return f"{s * 1e3:.1f} ms" if s < 1 else f"{s:.3f} s"


def ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}x"


def ratio_to(value: float, base: float) -> str:
    """``value / base`` as a table cell of width 6."""
    return f"{value / base:5.2f}x" if base else "  n/a"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned first column, right-aligned others."""
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return "  " + "  ".join([first, *rest]).rstrip()

    return [line(headers), "  " + "  ".join("-" * w for w in widths), *map(line, rows)]


def _section(title: str) -> list[str]:
    return ["", title, "=" * len(title)]


def _spread(t: Timing) -> str:
    return f"±{t.spread * 100:.0f}%"


def header(results: Results) -> list[str]:
    c = results.config
    lines = _section("amber benchmark")
    lines += [f"  {k}: {v}" for k, v in c.items()]
    lines.append("  GB/s = 10^9 bytes of tensor data per second, from the median of the runs;")
    lines.append("  ± = half the range of the runs relative to the median; best = fastest run.")
    if results.warnings:
        lines.append("")
        lines += [f"  WARNING: {w}" for w in results.warnings]
    if results.skipped:
        lines.append("")
        lines += [f"  skipped {what}: {why}" for what, why in results.skipped]
    if results.failed:
        lines.append("")
        lines += [f"  FAILED {what}: {why}" for what, why in results.failed]
    return lines


def _timing_row(label: str, t: Any, last: str) -> list[str]:
    """label, median, GB/s, spread, best, then ``last`` (a size or a ratio)."""
    return [label, seconds(t.median), f"{t.gbps:.2f}", _spread(t), seconds(t.best), last]


def limits(results: Results) -> list[str]:
    if not results.limits:
        return []
    rows = [
        _timing_row(label, t, f"{t.nbytes / 2**20:.0f} MiB") for label, t in results.limits.items()
    ]
    return [
        *_section("Machine limits (same run)"),
        *_table(["operation", "median", "GB/s", "±", "best", "bytes"], rows),
    ]


def saves(results: Results) -> list[str]:
    if not results.saves:
        return []
    rows_in = dict(results.saves)
    if WRITE_FSYNC in results.limits:
        rows_in = {SAVE_BASELINE: results.limits[WRITE_FSYNC], **rows_in}
    amber = rows_in.get(AMBER_SAVE)
    rows = [
        _timing_row(label, t, ratio(t.median / amber.median if amber else None))
        for label, t in rows_in.items()
    ]
    return [
        *_section("Save (to a new file; '+ fsync' adds fsync of the file and its directory)"),
        *_table(["format", "median", "GB/s", "±", "best", "amber x"], rows),
        "  amber x: this row's time / amber.save's (durable) time; above 1 means amber is faster.",
    ]


def loads(results: Results) -> list[str]:
    if not results.loads:
        return []
    full = results.loads.get(AMBER_FULL)
    off = results.loads.get(AMBER_OFF)
    rows = []
    if MMAP_TOUCH in results.limits:
        t = results.limits[MMAP_TOUCH]
        rows.append(
            [
                LOAD_LIMIT,
                "-",
                "-",
                seconds(t.median),
                f"{t.gbps:.2f}",
                _spread(t),
                seconds(t.best),
                ratio(t.median / full.ready.median if full else None),
                ratio(t.median / off.ready.median if off else None),
            ]
        )
    for label, lt in results.loads.items():
        o, r = lt.open, lt.ready
        rows.append(
            [
                label,
                seconds(o.median),
                ratio(o.median / full.open.median if full else None),
                seconds(r.median),
                f"{r.gbps:.2f}",
                _spread(r),
                seconds(r.best),
                ratio(r.median / full.ready.median if full else None),
                ratio(r.median / off.ready.median if off else None),
            ]
        )
    headers = ["loader", "open", "amber x", "ready", "GB/s", "±", "best", "amber x", "amber-off x"]
    return [
        *_section("Load (page cache warm; ready = open + numpy sum of every array)"),
        *_table(headers, rows),
        "  best: the fastest ready run.",
        "  amber x: this row's time / amber.load verify=full's time (open, then ready);",
        "  amber-off x: this row's ready time / amber.load verify=off's ready time.",
        "  Above 1 means amber is faster.",
    ]


def quick(results: Results) -> list[str]:
    if not results.quick and not results.imports:
        return []
    lines = _section("Inspect / verify --quick of the benchmark file, and import time")
    rows = []
    for label, t in results.quick.items():
        if isinstance(t, str):
            rows.append([label, t, "", ""])
        else:
            rows.append([label, seconds(t.median), _spread(t), f"{len(t.samples)} runs"])
    base = results.imports.get(IMPORT_PASS)
    for label, t in results.imports.items():
        extra = f"+{seconds(t.median - base.median)}" if base and label != IMPORT_PASS else ""
        rows.append([label, seconds(t.median), _spread(t), f"{len(t.samples)} runs {extra}"])
    lines += _table(["operation", "median", "±", "notes"], rows)
    return lines


@dataclass(frozen=True)
class Verdict:
    status: str  # PASS, FAIL or N/A
    goal: str
    detail: str


def _check(goal: str, needs: Sequence[Any], test: Callable[[], tuple[bool, str]]) -> Verdict:
    if any(x is None or isinstance(x, str) for x in needs):
        missing = next(
            (x for x in needs if isinstance(x, str)),
            "not measured (skipped, failed or left out by --only)",
        )
        return Verdict("N/A", goal, missing)
    ok, detail = test()
    return Verdict("PASS" if ok else "FAIL", goal, detail)


def verdicts(results: Results) -> list[Verdict]:
    s, ld, lim, q, imp = (
        results.saves,
        results.loads,
        results.limits,
        results.quick,
        results.imports,
    )
    amber_save, base, torch_save = s.get(AMBER_SAVE), lim.get(WRITE_FSYNC), s.get(TORCH_SAVE_FSYNC)
    full, off = ld.get(AMBER_FULL), ld.get(AMBER_OFF)
    st_np, st_pt, touch = ld.get(ST_NUMPY_LOAD), ld.get(ST_TORCH_LOAD), lim.get(MMAP_TOUCH)
    out = [
        _check(
            "durable amber.save >= 0.9x plain write+fsync throughput",
            [amber_save, base],
            lambda: (
                amber_save.gbps >= 0.9 * base.gbps,
                f"{amber_save.gbps:.2f} GB/s vs {base.gbps:.2f} GB/s "
                f"({amber_save.gbps / base.gbps:.2f}x; best runs: "
                f"{base.best / amber_save.best:.2f}x)",
            ),
        ),
        _check(
            "durable amber.save faster than torch.save + fsync",
            [amber_save, torch_save],
            lambda: (
                amber_save.median < torch_save.median,
                f"{seconds(amber_save.median)} vs {seconds(torch_save.median)} "
                f"({torch_save.median / amber_save.median:.2f}x)",
            ),
        ),
        _check(
            "amber.load (verify=full) ready >= 2x faster than safetensors.numpy.load_file",
            [full, st_np],
            lambda: (
                st_np.ready.median >= 2 * full.ready.median,
                f"{seconds(full.ready.median)} vs {seconds(st_np.ready.median)} "
                f"({st_np.ready.median / full.ready.median:.2f}x)",
            ),
        ),
        _check(
            "amber.load (verify=off) ready within 1.2x of mmap-and-touch",
            [off, touch],
            lambda: (
                off.ready.median <= 1.2 * touch.median,
                f"{seconds(off.ready.median)} vs {seconds(touch.median)} "
                f"({off.ready.median / touch.median:.2f}x the limit)",
            ),
        ),
        _check(
            "amber.load (verify=off) ready at least as fast as safetensors.torch.load_file",
            [off, st_pt],
            lambda: (
                off.ready.median <= st_pt.ready.median,
                f"{seconds(off.ready.median)} vs {seconds(st_pt.ready.median)} "
                f"({st_pt.ready.median / off.ready.median:.2f}x)",
            ),
        ),
    ]
    for label in (INSPECT, VERIFY_QUICK, CLI_INSPECT, CLI_VERIFY):
        t = q.get(label)
        out.append(
            _check(
                f"{label} < {QUICK_TARGET_S * 1e3:.0f} ms",
                [t],
                lambda t=t: (t.median < QUICK_TARGET_S, seconds(t.median)),
            )
        )
    amber_imp, pass_imp = imp.get(IMPORT_AMBER), imp.get(IMPORT_PASS)
    out.append(
        _check(
            f"import amber overhead < {IMPORT_TARGET_S * 1e3:.0f} ms",
            [amber_imp, pass_imp],
            lambda: (
                amber_imp.median - pass_imp.median < IMPORT_TARGET_S,
                f"+{seconds(amber_imp.median - pass_imp.median)} "
                f"({seconds(amber_imp.median)} vs {seconds(pass_imp.median)})",
            ),
        )
    )
    return out


def targets(results: Results) -> list[str]:
    lines = _section("Targets")
    for v in verdicts(results):
        lines.append(f"  {v.status:<4}  {v.goal}: {v.detail}")
    return lines


def render(results: Results) -> str:
    parts = [header, limits, saves, loads, quick, targets]
    return "\n".join(line for part in parts for line in part(results)) + "\n"


def to_json(results: Results) -> dict[str, Any]:
    def timings(d: dict[str, Any]) -> dict[str, Any]:
        return {k: {"unavailable": v} if isinstance(v, str) else v.to_json() for k, v in d.items()}

    return {
        "config": results.config,
        "limits": timings(results.limits),
        "saves": timings(results.saves),
        "loads": timings(results.loads),
        "quick": timings(results.quick),
        "imports": timings(results.imports),
        "skipped": [{"what": w, "why": y} for w, y in results.skipped],
        "failed": [{"what": w, "why": y} for w, y in results.failed],
        "warnings": results.warnings,
        "targets": [vars(v) for v in verdicts(results)],
    }
