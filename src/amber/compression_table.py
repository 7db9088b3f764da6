"""``amber.compression_report`` and ``amber compress``: what each way of making a model
smaller costs, in one table (size, ratio, save and load time, the metric on evaluation
data against the original), so a user picks with numbers (docs/compression.md).

Each option is saved to a temporary file with ``amber.save`` and loaded back with
``amber.load``, exactly as a user would; nothing is estimated.
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amber.errors import InvalidArgumentError

DEFAULT_TRIES = ("zstd", "fp16", "int8", "int4", "prune:0.5")
_COMPRESS = {"zstd": "auto", "auto": "auto", "zstd-bytegroup": "zstd-bytegroup"}
_QUANTIZE = ("int8", "int4", "fp16", "bf16")


def parse_option(text: str) -> dict[str, Any]:
    """``amber.save`` keyword arguments of an option: parts joined by ``+`` among
    ``raw``, ``zstd`` (compress="auto"), ``zstd-bytegroup``, ``int8``, ``int4``, ``fp16``,
    ``bf16`` and ``prune:FRACTION`` (e.g. ``prune:0.5+int8+zstd``)."""
    options: dict[str, Any] = {}
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError(f"a compression option must be a non-empty string, not {text!r}")
    for part in text.strip().split("+"):
        if part == "raw":
            continue
        if part in _COMPRESS and "compress" not in options:
            options["compress"] = _COMPRESS[part]
        elif part in _QUANTIZE and "quantize" not in options:
            options["quantize"] = part
        elif part.startswith("prune:") and "prune" not in options:
            try:
                fraction = float(part.removeprefix("prune:"))
            except ValueError:
                fraction = math.nan
            if not 0 <= fraction < 1:
                raise InvalidArgumentError(f"{part!r}: the fraction must be a number in [0, 1)")
            options["prune"] = fraction
        else:
            raise InvalidArgumentError(
                f"unknown or repeated compression option {part!r} in {text!r}; use raw, zstd, "
                "zstd-bytegroup, int8, int4, fp16, bf16 or prune:FRACTION, joined by '+'"
            )
    return options


@dataclass
class Row:
    option: str
    size: int
    ratio: float
    save_s: float
    load_s: float
    metric: float | None = None
    change: float | None = None  # metric - the original's
    max_abs_diff: float | None = None  # torch: largest output difference

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Report:
    """One row per option; the first is the raw file. ``str(report)`` is the table."""

    metric_name: str | None
    rows: list[Row] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric_name, "rows": [r.to_dict() for r in self.rows]}

    def __str__(self) -> str:
        head = ["option", "size", "ratio", "save s", "load s"]
        if self.metric_name:
            head += [self.metric_name, "change"]
        if any(r.max_abs_diff is not None for r in self.rows):
            head.append("max |diff|")
        lines = [head]
        for r in self.rows:
            cells = [
                r.option,
                _size(r.size),
                f"{r.ratio:.2f}x",
                f"{r.save_s:.3f}",
                f"{r.load_s:.3f}",
            ]
            if self.metric_name:
                cells.append("" if r.metric is None else f"{r.metric:.4f}")
                cells.append("" if r.change is None else f"{r.change:+.4f}")
            if len(head) > len(cells):
                cells.append("" if r.max_abs_diff is None else f"{r.max_abs_diff:.3g}")
            lines.append(cells)
        widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
        return "\n".join(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
            for row in lines
        )


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _evaluator(
    model: Any, X: Any, y: Any, metric: Callable[..., float] | None
) -> tuple[str | None, Callable[[Any], float | None], Callable[[Any], float | None]]:
    """(metric name, model -> metric, model -> max abs output difference to the original)."""
    if X is None:
        return None, lambda m: None, lambda m: None
    if metric is not None:
        return (
            getattr(metric, "__name__", "metric"),
            lambda m: float(metric(m, X, y)),
            lambda m: None,
        )
    if hasattr(model, "score") and y is not None:  # scikit-learn: accuracy or R²
        name = "accuracy" if hasattr(model, "predict_proba") or hasattr(model, "classes_") else "R2"
        return name, lambda m: float(m.score(X, y)), lambda m: None
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None and isinstance(model, torch.nn.Module):
        inputs = torch.as_tensor(X)

        def outputs(m: Any) -> Any:
            m.eval()
            with torch.no_grad():
                return m(inputs).float()

        reference = outputs(model)

        def diff(m: Any) -> float:
            return float((outputs(m) - reference).abs().max())

        if y is None:
            return None, lambda m: None, diff
        target = torch.as_tensor(y)

        def accuracy(m: Any) -> float:
            return float((outputs(m).argmax(dim=1) == target).float().mean())

        return "accuracy", accuracy, diff
    raise InvalidArgumentError(
        f"no default metric for {type(model).__name__}: pass metric=callable(model, X, y)"
    )


def compression_report(
    model: Any,
    X: Any = None,
    y: Any = None,
    *,
    tries: Iterable[str] = DEFAULT_TRIES,
    metric: Callable[..., float] | None = None,
) -> Report:
    """Save ``model`` raw and with each option of ``tries`` (see ``parse_option``), load
    each back, and measure size, ratio, save and load time, and, with evaluation data
    ``X`` (and ``y``), the metric against the original: ``model.score`` for scikit-learn
    (accuracy or R²), accuracy and the largest output difference for a torch module, or
    ``metric(model, X, y)``."""
    import amber

    options = [("raw", {})] + [(t, parse_option(t)) for t in tries]
    name, evaluate, difference = _evaluator(model, X, y, metric)
    report = Report(name)
    original = evaluate(model)
    with tempfile.TemporaryDirectory(prefix="amber-report-") as folder:
        for index, (label, kwargs) in enumerate(options):
            path = Path(folder) / f"{index}.amber"
            start = time.perf_counter()
            info = amber.save(model, path, **kwargs)
            saved = time.perf_counter()
            loaded = amber.load(path, mmap=False)
            done = time.perf_counter()
            value = evaluate(loaded)
            raw_size = report.rows[0].size if report.rows else info.size
            report.rows.append(
                Row(
                    label,
                    info.size,
                    raw_size / info.size,
                    saved - start,
                    done - saved,
                    value,
                    None if value is None or original is None else value - original,
                    difference(loaded),
                )
            )
    return report
