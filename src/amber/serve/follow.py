"""Served slots and the follower that keeps each on the version its spec names.

A slot holds the ``ServedModel`` answering now. When an alias moves, the follower loads the
new version in the background (every digest verified), warms it up, and swaps the slot's
reference in one assignment: requests that already hold the old model finish on it, new
ones get the new one. A version that fails to load or to warm up is never swapped in; the
failure is logged, counted and shown in the model's metadata, and the old version keeps
serving.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Hashable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from amber.serve.models import ServedModel
from amber.serve.watch import AliasWatcher, LatestWatcher, Watcher

if TYPE_CHECKING:
    from amber.serve.metrics import Metrics
    from amber.store import Store

log = logging.getLogger("amber.serve")


@dataclass(frozen=True)
class ServeSpec:
    """What to serve: ``NAME[@VERSION|@ALIAS][:METHOD]``."""

    name: str
    ref: str | None  # a version number or an alias; None: the latest version
    method: str | None

    @classmethod
    def parse(cls, text: str) -> ServeSpec:
        from amber.errors import InvalidArgumentError
        from amber.store.names import parse_spec

        if not isinstance(text, str):
            raise InvalidArgumentError(f"a model to serve must be a string, got {type(text)}")
        spec, _, method = text.partition(":")
        if ":" in text and not method:
            raise InvalidArgumentError(f"{text!r}: give a method after ':' (e.g. :predict_proba)")
        parsed = parse_spec(spec)
        ref = parsed.alias if parsed.alias is not None else parsed.version
        return cls(parsed.name, None if ref is None else str(ref), method or None)

    @property
    def store_spec(self) -> str:
        return self.name if self.ref is None else f"{self.name}@{self.ref}"

    @property
    def follows(self) -> bool:
        return self.ref is None or not self.ref.isdigit()


def load_version(
    store: Store, name: str, version: int, method: str | None, forest_evaluator: bool = True
) -> ServedModel:
    """Load ``name@version`` (every digest verified) and warm it up."""
    spec = f"{name}@{version}"
    info = store.get(spec)
    from amber.adapters.predictors import load as load_predictor

    model = load_predictor(store, spec)  # ONNX: a session over the store's mapped files
    example = (info.metadata or {}).get("input_example")
    served = ServedModel(name, version, model, info.signature, method, example, forest_evaluator)
    served.warm_up()
    return served


class Slot:
    """One served model: the version answering now and what the follower knows."""

    def __init__(self, spec: ServeSpec, watcher: Watcher | None) -> None:
        self.spec = spec
        self.watcher = watcher
        self.current: ServedModel | None = None
        self.token: Hashable = None
        self.failure: dict[str, Any] | None = None
        self._failed_version: int | None = None
        self.lock = threading.Lock()

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {"spec": self.spec.store_spec, "follows": self.spec.follows}
        if self.current is not None:
            out["version"] = self.current.version
            out["method"] = self.current.method
            out["methods"] = self.current.methods
            out["batchable"] = self.current.batchable
            out["evaluator"] = self.current.evaluator
        if self.failure is not None:
            out["last_reload_error"] = self.failure
        return out


class Follower:
    """Loads every slot at start, then polls the followed ones every ``interval`` seconds."""

    def __init__(
        self,
        store: Store,
        specs: list[ServeSpec],
        interval: float,
        metrics: Metrics,
        forest_evaluator: bool = True,
    ) -> None:
        self.store = store
        self.forest_evaluator = forest_evaluator
        self.interval = interval
        self.metrics = metrics
        self.slots: dict[str, Slot] = {}
        self._store_lock = threading.Lock()  # one thread at a time in the store
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for spec in specs:
            if spec.name in self.slots:
                from amber.errors import InvalidArgumentError

                raise InvalidArgumentError(f"model {spec.name!r} is given twice")
            self.slots[spec.name] = Slot(spec, self._watcher(spec))

    def _watcher(self, spec: ServeSpec) -> Watcher | None:
        if not spec.follows:
            return None
        if spec.ref is None or spec.ref == "latest":
            return LatestWatcher(self.store, spec.store_spec)
        return AliasWatcher(self.store, spec.name, spec.ref)

    def load_all(self) -> None:
        """The first load of every slot; errors propagate (the server does not start)."""
        for slot in self.slots.values():
            with self._store_lock:
                slot.token = slot.watcher.token() if slot.watcher else None
                version = self.store.resolve(slot.spec.store_spec).version
                slot.current = load_version(
                    self.store, slot.spec.name, version, slot.spec.method, self.forest_evaluator
                )
            self._served(slot)

    def _served(self, slot: Slot) -> None:
        assert slot.current is not None
        self.metrics.set(
            "amber_model_version",
            "The version each model serves now.",
            slot.current.version,
            model=slot.spec.name,
        )

    def check(self, slot: Slot, force: bool = False) -> bool:
        """Look at the slot's spec once; load and swap if it moved. True if swapped."""
        if slot.watcher is None:
            return False
        with slot.lock, self._store_lock:
            token = slot.watcher.token()
            if token == slot.token and not force:
                return False
            slot.token = token
            try:
                version = self.store.resolve(slot.spec.store_spec).version
            except Exception as exc:  # alias removed, store unreachable: keep serving
                self._failed(slot, None, exc)
                return False
            if slot.current is not None and version == slot.current.version:
                return False
            if version == slot._failed_version and not force:
                return False
            start = time.perf_counter()
            try:
                new = load_version(
                    self.store, slot.spec.name, version, slot.spec.method, self.forest_evaluator
                )
            except Exception as exc:
                self._failed(slot, version, exc)
                return False
            old = slot.current
            slot.current = new  # the swap: one reference assignment
            slot.failure = None
            slot._failed_version = None
        self._served(slot)
        self.metrics.inc(
            "amber_reloads_total",
            "Versions swapped in by following an alias.",
            model=slot.spec.name,
        )
        log.info(
            "%s: now serving version %d (was %s; loaded, verified and warmed up in %.2f s)",
            slot.spec.store_spec,
            version,
            old.version if old else None,
            time.perf_counter() - start,
        )
        return True

    def _failed(self, slot: Slot, version: int | None, exc: Exception) -> None:
        slot._failed_version = version
        message = f"{type(exc).__name__}: {str(exc)[:300]}"
        slot.failure = {
            "version": version,
            "error": message,
            "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        self.metrics.inc(
            "amber_reload_failures_total",
            "Versions that failed to load or warm up (the previous one kept serving).",
            model=slot.spec.name,
        )
        served = slot.current.version if slot.current else None
        log.error(
            "%s: version %s failed to load or warm up; still serving %s: %s",
            slot.spec.store_spec,
            version,
            served,
            message,
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for slot in self.slots.values():
                try:
                    self.check(slot)
                except Exception:  # never let the follower die
                    log.exception("%s: checking for a new version failed", slot.spec.store_spec)

    def start(self) -> None:
        if any(s.watcher for s in self.slots.values()) and self.interval > 0:
            self._thread = threading.Thread(target=self._run, name="amber-follow", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
