"""The audit of a Keras model configuration: plain JSON, checked before Keras sees it.

Keras's own loader resolves every ``{"module", "class_name", "registered_name"}`` it meets
by importing the module named, and resolves strings (``"relu"``, ``"adam"``) through its
registries, the user's custom objects included; ``safe_mode`` has been bypassed through
exactly these doors (CVE-2025-1550 any module, CVE-2025-8747 ``keras.utils.get_file``,
CVE-2025-9906 ``enable_unsafe_deserialization``). Here every object reference must be an
exact (module, class) pair of ``keras_names.CLASSES``, every function a listed Keras
function, every string Keras would look up a listed built-in name, and Lambda layers are
refused outright (they hold bytecode). Nothing is imported.
"""

from __future__ import annotations

import json
import re
from typing import Any

from amber.adapters import keras_names as names
from amber.errors import FormatError, UntrustedTypeError
from amber.graph.names import QualName
from amber.graph.trust import REGISTRY


class UntrustedKerasConfig(UntrustedTypeError, FormatError):
    """A Keras configuration naming what amber does not trust. Both an UntrustedTypeError
    (what it means) and a FormatError (so the graph decoder passes it on unchanged)."""


MAX_CONFIG_BYTES = 64 << 20
# Each backend's optimizer classes (torch's Adam lives in keras.src.backend.torch.optimizers
# .torch_adam): a listed optimizer under such a module is renamed to keras.optimizers, which
# resolves to the backend of the loading process.
_BACKEND_OPTIMIZERS = re.compile(
    r"keras\.src\.backend\.(torch|jax|tensorflow|numpy|openvino)\.optimizers(\.[a-z_0-9]+)?"
)
MAX_DEPTH = 64
# Inert values Keras encodes as special class names.
_VALUE_KINDS = frozenset(
    {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__ellipsis__", "__slice__"}
)
_CODE_KINDS = {
    "__lambda__": "a Python lambda (bytecode)",
    "__typespec__": "a TensorFlow type spec naming classes",
}
_OBJECT_KEYS = frozenset(
    {
        "module",
        "class_name",
        "config",
        "registered_name",
        "build_config",
        "compile_config",
        "name",
        "inbound_nodes",
        "shared_object_id",
    }
)
# Keys whose string values Keras resolves through a registry, and the names allowed there.
_STRING_TABLES: list[tuple[str, frozenset[str]]] = [
    ("_initializer", names.INITIALIZERS),
    ("_regularizer", names.REGULARIZERS),
    ("_constraint", names.CONSTRAINTS),
]
_COMPILE_TABLES = {
    "optimizer": names.OPTIMIZERS,
    "loss": names.LOSSES,
    "metrics": names.METRICS,
    "weighted_metrics": names.METRICS,
}


def parse_config(text: Any) -> Any:
    """The configuration JSON as plain Python data (FormatError when malformed)."""
    if type(text) is not str or len(text) > MAX_CONFIG_BYTES:
        raise FormatError("a Keras model's configuration must be a JSON string under 64 MiB")
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        raise FormatError("the Keras model configuration in the file is not valid JSON") from None


class _Audit:
    def __init__(self) -> None:
        self.refused: dict[str, str] = {}  # dotted name -> why

    def refuse(self, name: str, why: str) -> None:
        self.refused.setdefault(name[:200], why)

    def walk(self, value: Any, key: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise FormatError("the Keras model configuration is nested too deeply")
        if isinstance(value, dict):
            if "class_name" in value:
                self.reference(value, depth)
                return
            for k, item in value.items():
                if k == "compile_config" and isinstance(item, dict):
                    self.compile_config(item, depth + 1)
                else:
                    self.walk(item, str(k), depth + 1)
        elif isinstance(value, list):
            for item in value:
                self.walk(item, key, depth + 1)
        elif isinstance(value, str):
            self.string(value, key, _table_for(key))

    def string(self, value: str, key: str, table: frozenset[str] | None) -> None:
        if table is not None and value not in table:
            self.refuse(value, f"not a built-in Keras name for {key!r}")

    def reference(self, ref: dict[str, Any], depth: int) -> None:
        kind = ref.get("class_name")
        module = ref.get("module")
        registered = ref.get("registered_name")
        if not isinstance(kind, str):
            raise FormatError("a Keras object in the configuration has no class name")
        if kind in _CODE_KINDS:
            self.refuse(kind, f"{_CODE_KINDS[kind]}: code is never loaded")
            return
        if kind in _VALUE_KINDS:
            self.values(ref, depth)
            return
        if kind == "function":
            function = ref.get("config")
            allowed = names.FUNCTIONS.get(module) if isinstance(module, str) else None
            if (
                allowed is None
                or not isinstance(function, str)
                or function not in allowed
                or registered not in (None, function)
            ):
                self.refuse(f"{module}.{function}", "not a built-in Keras function")
            return
        if not isinstance(module, str):
            self.refuse(kind, "a custom object without a module")
            return
        if _BACKEND_OPTIMIZERS.fullmatch(module) and kind in names.CLASSES["keras.optimizers"]:
            module = ref["module"] = "keras.optimizers"
        allowed = names.CLASSES.get(module, frozenset())
        if kind == "Lambda":
            self.refuse(f"{module}.Lambda", "a Lambda layer holds Python bytecode")
            return
        if kind not in allowed or registered not in (None, kind):
            dotted = f"{module}.{kind}"
            if not _user_trusted(module, kind, registered):
                self.refuse(
                    dotted if registered in (None, kind) else f"{dotted} ({registered})",
                    "not a built-in Keras class",
                )
                return
        unknown = set(ref) - _OBJECT_KEYS
        if unknown:
            raise FormatError(
                f"a Keras object {kind[:60]!r} has unexpected keys {sorted(unknown)[:5]}"
            )
        for k in ("config", "build_config", "inbound_nodes"):
            if k in ref:
                self.walk(ref[k], k, depth + 1)
        if "compile_config" in ref and ref["compile_config"] is not None:
            if not isinstance(ref["compile_config"], dict):
                raise FormatError("a Keras compile_config must be a mapping")
            self.compile_config(ref["compile_config"], depth + 1)

    def values(self, ref: dict[str, Any], depth: int) -> None:
        """Tensors, arrays, bytes, slices: data; only their nested values are walked."""
        if set(ref) - {"class_name", "config"}:
            raise FormatError(f"a Keras value {ref['class_name']!r} has unexpected keys")
        self.walk(ref.get("config"), "value", depth + 1)

    def compile_config(self, config: dict[str, Any], depth: int) -> None:
        for k, item in config.items():
            table = _COMPILE_TABLES.get(k)
            if table is None:
                self.walk(item, str(k), depth + 1)
            else:
                self.compiled(item, k, table, depth + 1)

    def compiled(self, item: Any, key: str, table: frozenset[str], depth: int) -> None:
        """A loss, metric or optimizer: a name of ``table``, an object, or lists and dicts
        of them (one per output)."""
        if depth > MAX_DEPTH:
            raise FormatError("the Keras model configuration is nested too deeply")
        if isinstance(item, str):
            self.string(item, key, table)
        elif isinstance(item, list):
            for element in item:
                self.compiled(element, key, table, depth + 1)
        elif isinstance(item, dict):
            if "class_name" in item:
                self.reference(item, depth)
            else:
                for element in item.values():
                    self.compiled(element, key, table, depth + 1)
        else:
            self.walk(item, key, depth)


def _table_for(key: str) -> frozenset[str] | None:
    if key == "activation" or key.endswith("_activation"):  # recurrent_activation
        return names.ACTIVATIONS
    for suffix, table in _STRING_TABLES:
        if key.endswith(suffix):
            return table
    return None


def _user_trusted(module: str, kind: str, registered: Any) -> bool:
    """Did the caller trust ``module.kind``, and does the name Keras will look it up by
    (``registered_name``, from Keras's registry of custom objects) lead to exactly it?"""
    try:
        if not REGISTRY.by_user(QualName.parse(f"{module}:{kind}")):
            return False
    except Exception:  # a module or class name that is not a Python name
        return False
    if registered in (None, kind):
        return True
    if not isinstance(registered, str):
        return False
    from keras.saving import get_registered_object  # the model's class imported Keras

    found = get_registered_object(registered)
    return isinstance(found, type) and found.__module__ == module and found.__qualname__ == kind


def audit_config(config: Any) -> None:
    """Refuse a configuration naming anything outside the allowlist: one
    UntrustedTypeError listing every refused name; FormatError when malformed."""
    if not isinstance(config, dict):
        raise FormatError("a Keras model configuration must be a JSON object")
    audit = _Audit()
    audit.walk(config, "model", 0)
    if audit.refused:
        listed = ", ".join(f"{name} ({why})" for name, why in sorted(audit.refused.items()))
        raise UntrustedKerasConfig(
            f"the Keras model configuration names what amber does not trust: {listed}; "
            "nothing was built. Lambda layers are never loaded; a custom layer you wrote or "
            "reviewed is loaded once trusted by name, e.g. amber.trust('my_package.MyLayer'), "
            "and registered with keras.saving.register_keras_serializable"
        )
