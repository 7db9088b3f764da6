"""What changed between two versions, and how they compare on the same data."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from amber.errors import AmberError, InvalidArgumentError
from amber.store.reader import VersionReader
from amber.store.signature import compatible

if TYPE_CHECKING:
    from amber.store.store import Store


def _changes(a: dict[str, Any], b: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """key -> (value in a, value in b) for every key added, removed or changed."""
    missing = object()
    out = {}
    for key in sorted(a.keys() | b.keys()):
        old, new = a.get(key, missing), b.get(key, missing)
        if old is missing or new is missing or old != new:
            out[key] = (None if old is missing else old, None if new is missing else new)
    return out


@dataclass
class TensorChange:
    name: str
    change: str  # "added", "removed", "changed"
    nbytes: int
    max_abs_diff: float | None = None  # numeric tensors of one shape and dtype
    note: str = ""


@dataclass
class Diff:
    a: str
    b: str
    metadata: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    metrics: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    params: dict[str, tuple[Any, Any]] | None = None  # None: not comparable (see notes)
    environment: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    signature_compatible: bool = True
    signature_notes: list[str] = field(default_factory=list)
    tensors: list[TensorChange] = field(default_factory=list)
    same_content: bool = False
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "a": self.a,
            "b": self.b,
            "same_content": self.same_content,
            "metadata": {k: list(v) for k, v in self.metadata.items()},
            "metrics": {k: list(v) for k, v in self.metrics.items()},
            "params": None
            if self.params is None
            else {k: [repr(x) for x in v] for k, v in self.params.items()},
            "environment": {k: list(v) for k, v in self.environment.items()},
            "signature_compatible": self.signature_compatible,
            "signature_notes": self.signature_notes,
            "tensors": [t.__dict__ for t in self.tensors],
            "notes": self.notes,
        }

    def __str__(self) -> str:
        lines = [f"{self.a} -> {self.b}" + ("  (same content)" if self.same_content else "")]

        def section(title: str, changes: dict[str, tuple[Any, Any]] | None) -> None:
            if changes:
                lines.append(f"{title}:")
                lines.extend(f"  {k}: {v[0]!r} -> {v[1]!r}" for k, v in changes.items())

        section("metrics", self.metrics)
        section("params", self.params)
        section("metadata", self.metadata)
        section("environment", self.environment)
        if self.signature_notes:
            state = "compatible" if self.signature_compatible else "INCOMPATIBLE"
            lines.append(f"signature ({state}):")
            lines.extend(f"  {n}" for n in self.signature_notes)
        if self.tensors:
            lines.append("tensors:")
            for t in self.tensors:
                extra = f", max |diff| {t.max_abs_diff:.6g}" if t.max_abs_diff is not None else ""
                lines.append(f"  {t.change:<8} {t.name} ({t.nbytes} bytes{extra}){t.note}")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


def _params(store: Store, a: str, b: str, notes: list[str]) -> dict[str, tuple[Any, Any]] | None:
    try:
        models = [store.load(spec) for spec in (a, b)]
    except AmberError as exc:
        notes.append(f"params not compared: {exc}")
        return None
    if not all(callable(getattr(m, "get_params", None)) for m in models):
        return None
    pa, pb = (m.get_params(deep=True) for m in models)
    shown = {k: v for k, v in pa.items() if not hasattr(v, "get_params")}
    other = {k: v for k, v in pb.items() if not hasattr(v, "get_params")}
    return _changes(_plain(shown), _plain(other))


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    return {
        k: v if isinstance(v, (int, float, str, bool, type(None))) else repr(v)
        for k, v in params.items()
    }


def _max_abs_diff(ra: VersionReader, rb: VersionReader, name: str) -> float | None:
    import numpy as np

    ea, eb = ra.entries[name], rb.entries[name]
    if (ea.dtype, ea.shape) != (eb.dtype, eb.shape) or ea.dtype == "bool":
        return None
    try:
        xa, xb = ra.array(name), rb.array(name)
    except AmberError:
        return None
    if xa.dtype.kind not in "iufc" or xa.size == 0:
        return None
    wide = np.complex128 if xa.dtype.kind == "c" else np.float64  # keep imaginary parts
    return float(np.max(np.abs(xa.astype(wide) - xb.astype(wide))))


def diff(store: Store, a: str, b: str) -> Diff:
    ra_record, rb_record = store.resolve(a), store.resolve(b)
    va, vb = store.model_version(ra_record), store.model_version(rb_record)
    out = Diff(va.spec, vb.spec)
    out.same_content = va.content_digest == vb.content_digest
    out.metadata = _changes(va.metadata, vb.metadata)
    out.metrics = _changes(va.metrics, vb.metrics)
    pa = {"python": va.environment.get("python"), **(va.environment.get("packages") or {})}
    pb = {"python": vb.environment.get("python"), **(vb.environment.get("packages") or {})}
    out.environment = _changes(pa, pb)
    out.signature_compatible, out.signature_notes = compatible(va.signature, vb.signature)
    ra = VersionReader(ra_record, store.files, verify="lazy")
    try:
        rb = VersionReader(rb_record, store.files, verify="lazy")
    except BaseException:
        ra.close()
        raise
    try:
        for name in sorted(ra.entries.keys() - rb.entries.keys()):
            out.tensors.append(TensorChange(name, "removed", ra.entries[name].nbytes))
        for name in sorted(rb.entries.keys() - ra.entries.keys()):
            out.tensors.append(TensorChange(name, "added", rb.entries[name].nbytes))
        for name in sorted(ra.entries.keys() & rb.entries.keys()):
            ea, eb = ra.entries[name], rb.entries[name]
            same = (ea.digest, ea.shape, ea.dtype) == (eb.digest, eb.shape, eb.dtype)
            if same and ea.stored_digest != eb.stored_digest:
                # Equal decoded digests over different stored bytes: a record's claim for a
                # compressed object. Decoding checks it (CorruptFileError when false), so
                # "no change" is never reported from an unverified claim.
                for reader, entry in ((ra, ea), (rb, eb)):
                    if entry.compression is not None:
                        reader.array(name, bits=True, dequantize=False)
            if not same:
                note = (
                    "" if ea.shape == eb.shape else f" shape {list(ea.shape)} -> {list(eb.shape)}"
                )
                out.tensors.append(
                    TensorChange(name, "changed", eb.nbytes, _max_abs_diff(ra, rb, name), note)
                )
    finally:
        ra.close()
        rb.close()
    out.params = _params(store, va.spec, vb.spec, out.notes)
    return out


# -- compare ---------------------------------------------------------------------------------

_PROBA = {"log_loss", "roc_auc"}


def _metric(name: str) -> Callable[[Any, Any], float]:
    from sklearn import metrics as m

    table: dict[str, Callable[[Any, Any], float]] = {
        "accuracy": m.accuracy_score,
        "balanced_accuracy": m.balanced_accuracy_score,
        "f1": lambda y, p: m.f1_score(y, p, average="macro"),
        "precision": lambda y, p: m.precision_score(y, p, average="macro", zero_division=0),
        "recall": lambda y, p: m.recall_score(y, p, average="macro", zero_division=0),
        "r2": m.r2_score,
        "mse": m.mean_squared_error,
        "rmse": lambda y, p: math.sqrt(m.mean_squared_error(y, p)),
        "mae": m.mean_absolute_error,
        "log_loss": m.log_loss,
        "roc_auc": lambda y, p: m.roc_auc_score(
            y, p[:, 1] if p.ndim == 2 and p.shape[1] == 2 else p, multi_class="ovr"
        ),
    }
    if name not in table:
        raise InvalidArgumentError(
            f"unknown metric {name!r}; known: {', '.join(sorted(table))}, or pass a function "
            "f(y_true, y_pred)"
        )
    return table[name]


@dataclass
class Comparison:
    """One row per version: ``{"version": spec, metric: value, ...}``."""

    metrics: list[str]
    rows: list[dict[str, Any]]

    def best(self, metric: str, *, higher_is_better: bool = True) -> str:
        pick = max if higher_is_better else min
        return pick(self.rows, key=lambda r: r[metric])["version"]

    def __str__(self) -> str:
        width = max(len("version"), *(len(r["version"]) for r in self.rows))
        head = f"{'version':<{width}}" + "".join(f"{m:>14}" for m in self.metrics)
        body = [
            f"{r['version']:<{width}}" + "".join(f"{r[m]:>14.6g}" for m in self.metrics)
            for r in self.rows
        ]
        return "\n".join([head, *body])


def compare(
    store: Store, specs: list[str], X: Any, y: Any, metrics: Iterable[Any] | None
) -> Comparison:
    if not specs:
        raise InvalidArgumentError("compare needs at least one version")
    models = {store.get(spec).spec: store.load(spec) for spec in specs}
    for spec, model in models.items():
        if not callable(getattr(model, "predict", None)):
            raise InvalidArgumentError(f"{spec} has no predict method; compare needs one")
    if metrics is None:
        first = next(iter(models.values()))
        metrics = ["accuracy"] if hasattr(first, "classes_") else ["r2"]
    chosen: list[tuple[str, Callable[[Any, Any], float], bool]] = []
    for metric in metrics:
        if isinstance(metric, str):
            chosen.append((metric, _metric(metric), metric in _PROBA))
        elif callable(metric):
            chosen.append((getattr(metric, "__name__", "metric"), metric, False))
        else:
            raise InvalidArgumentError(f"a metric is a name or a function, got {metric!r}")
    rows = []
    for spec, model in models.items():
        row: dict[str, Any] = {"version": spec}
        predicted = model.predict(X)
        for label, function, needs_proba in chosen:
            row[label] = float(function(y, model.predict_proba(X) if needs_proba else predicted))
        rows.append(row)
    return Comparison([label for label, _, _ in chosen], rows)
