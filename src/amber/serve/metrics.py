"""Prometheus metrics, written in the text exposition format (no client library needed)."""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _labels(pairs: tuple[tuple[str, str], ...]) -> str:
    if not pairs:
        return ""
    esc = [(k, v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")) for k, v in pairs]
    return "{" + ",".join(f'{k}="{v}"' for k, v in esc) + "}"


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.total = 0
        self.sum = 0.0

    def observe(self, value: float) -> None:
        for i, edge in enumerate(self.buckets):
            if value <= edge:
                self.counts[i] += 1
        self.total += 1
        self.sum += value


class Metrics:
    """Counters, gauges and histograms keyed by label tuples; safe across threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[tuple, float]] = defaultdict(lambda: defaultdict(float))
        self._gauges: dict[str, dict[tuple, float]] = defaultdict(dict)
        self._hists: dict[str, dict[tuple, _Histogram]] = defaultdict(dict)
        self._help: dict[str, tuple[str, str]] = {}

    def _declare(self, name: str, kind: str, text: str) -> None:
        self._help.setdefault(name, (kind, text))

    def inc(self, name: str, text: str, value: float = 1.0, **labels: str) -> None:
        with self._lock:
            self._declare(name, "counter", text)
            self._counters[name][tuple(sorted(labels.items()))] += value

    def set(self, name: str, text: str, value: float, **labels: str) -> None:
        with self._lock:
            self._declare(name, "gauge", text)
            self._gauges[name][tuple(sorted(labels.items()))] = value

    def observe(
        self, name: str, text: str, value: float, buckets: tuple[float, ...], **labels: str
    ) -> None:
        with self._lock:
            self._declare(name, "histogram", text)
            key = tuple(sorted(labels.items()))
            hist = self._hists[name].get(key)
            if hist is None:
                hist = self._hists[name][key] = _Histogram(buckets)
            hist.observe(value)

    def render(self) -> str:
        lines: list[str] = []
        with self._lock:
            for name, (kind, text) in sorted(self._help.items()):
                lines.append(f"# HELP {name} {text}")
                lines.append(f"# TYPE {name} {kind}")
                if kind == "counter":
                    for key, v in sorted(self._counters[name].items()):
                        lines.append(f"{name}{_labels(key)} {v:g}")
                elif kind == "gauge":
                    for key, v in sorted(self._gauges[name].items()):
                        lines.append(f"{name}{_labels(key)} {v:g}")
                else:
                    for key, h in sorted(self._hists[name].items()):
                        for edge, c in zip(h.buckets, h.counts, strict=True):
                            lab = _labels((*key, ("le", f"{edge:g}")))
                            lines.append(f"{name}_bucket{lab} {c}")
                        lines.append(f"{name}_bucket{_labels((*key, ('le', '+Inf')))} {h.total}")
                        lines.append(f"{name}_sum{_labels(key)} {h.sum:g}")
                        lines.append(f"{name}_count{_labels(key)} {h.total}")
        return "\n".join(lines) + "\n"
