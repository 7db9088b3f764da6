"""PyTorch tensors as ``torch`` graph nodes over container tensors.

A node names the container tensor holding its bytes and its torch dtype. Without a
``view`` it *is* that container tensor (shape and layout included): the common case, where
a state dict's ``fc.weight`` is stored as a tensor named ``fc.weight`` that any reader can
open. Tensors that share one storage but see different parts of it (views, slices, a
transposed copy) are stored once, as the span of the storage they cover, and each node
carries ``"view": {"shape", "stride", "offset"}`` in elements of its own dtype. Loading
builds one base tensor per container tensor, so shared storage comes back shared.

Only the tables below are consulted to map names to dtypes: a file names no code here.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from amber.container import dtypes
from amber.container.format import MAX_RANK
from amber.errors import InvalidArgumentError
from amber.graph.names import QualName

TENSOR = QualName("torch", "Tensor")
PARAMETER = QualName("torch.nn.parameter", "Parameter")

# torch dtype name -> item size. The closed set a file may name.
TORCH_DTYPES: dict[str, int] = {
    "float64": 8,
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float8_e4m3fn": 1,
    "float8_e4m3fnuz": 1,
    "float8_e5m2": 1,
    "float8_e5m2fnuz": 1,
    "float8_e8m0fnu": 1,
    "float4_e2m1fn_x2": 1,
    "complex128": 16,
    "complex64": 8,
    "complex32": 4,
    "int64": 8,
    "int32": 4,
    "int16": 2,
    "int8": 1,
    "uint64": 8,
    "uint32": 4,
    "uint16": 2,
    "uint8": 1,
    "bool": 1,
}
_STAND_IN = {1: "uint8", 2: "uint16", 4: "uint32", 8: "uint64"}
# A view may repeat elements (stride 0), so its size is not bounded by the storage; this
# bounds what a file can make a later operation allocate.
MAX_VIEW_ELEMENTS = 1 << 40


def container_dtype(torch_dtype: str) -> str:
    """The tensor-table dtype a torch dtype is stored as: itself when the table has it, else
    an unsigned integer of its size holding its bits (complex32, float4 pairs)."""
    if torch_dtype in dtypes.ITEMSIZE:
        return torch_dtype
    return _STAND_IN[TORCH_DTYPES[torch_dtype]]


def dtype_name(dtype: Any) -> str | None:
    name = str(dtype).removeprefix("torch.")
    return name if name in TORCH_DTYPES else None


# -- saving ---------------------------------------------------------------------------------


@dataclass
class _Group:
    """The tensors of one storage met while encoding, and the container slot reserved for
    them (so payloads keep first-seen order)."""

    name: str
    slot: int
    members: list[tuple[dict[str, Any], Any]] = field(default_factory=list)


class TorchTensors:
    """Collects tensor nodes while an object is encoded; ``finish`` decides, storage by
    storage, what is written and fills in the nodes."""

    def __init__(self, add_slot: Any) -> None:
        # add_slot(path) -> (container tensor name, index of its slot in the tensor list)
        self._add_slot = add_slot
        self._groups: dict[tuple[str, int], _Group] = {}
        self._items: list[tuple[int, tuple[str, Any, str]]] = []

    def encode(self, tensor: Any, path: Any, fail: Any) -> tuple[dict[str, Any], QualName]:
        torch = sys.modules["torch"]
        cls = type(tensor)
        if cls is not torch.Tensor and cls is not torch.nn.Parameter:
            raise fail(
                f"tensor subclass {cls.__module__}.{cls.__qualname__} cannot be saved; save "
                "a plain tensor (t.as_subclass(torch.Tensor)) or its state"
            )
        problem = _unsupported(tensor, torch)
        if problem:
            raise fail(problem)
        name = dtype_name(tensor.dtype)
        if name is None:
            raise fail(f"torch dtype {tensor.dtype} cannot be saved")
        node: dict[str, Any] = {"k": "torch", "tensor": "", "dtype": name}
        is_param = cls is torch.nn.Parameter
        if is_param:
            node["param"] = True
        if tensor.requires_grad != is_param:  # Parameters default to True, tensors to False
            node["grad"] = tensor.requires_grad
        storage = tensor.untyped_storage()
        if tensor.is_conj() or tensor.is_neg():
            # A lazily conjugated or negated view: its stored bytes are not its values. It
            # is saved resolved, as a tensor of its own (its sharing is not kept).
            tensor = tensor.resolve_conj().resolve_neg()
            key: tuple = ("resolved", id(node))
        elif tensor.numel() == 0 or storage.nbytes() == 0:
            key = ("empty", id(node))  # nothing to share
        else:
            # The storage itself, not its address: two storages can start at one address
            # (two torch.from_numpy calls on one numpy buffer).
            key = (str(tensor.device), storage._cdata)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(*self._add_slot(path))
        group.members.append((node, tensor.detach()))
        return node, PARAMETER if is_param else TENSOR

    def finish(self, tensors: list[Any]) -> None:
        """Fill the reserved slots of ``tensors`` and the nodes of every group."""
        for group in self._groups.values():
            views = {_signature(t) for _, t in group.members}
            if len(views) == 1:  # one tensor, or the same view several times (tied weights)
                first = group.members[0][1]
                dtype = group.members[0][0]["dtype"]
                tensors[group.slot] = (group.name, _producer(first), container_dtype(dtype))
                for node, _ in group.members:
                    node["tensor"] = group.name
            else:
                tensors[group.slot] = self._span(group)

    def _span(self, group: _Group) -> tuple[str, Any, str]:
        """One container tensor for the bytes of a storage that its members cover."""
        ranges = [_byte_range(t) for _, t in group.members]
        start = min(r[0] for r in ranges)
        end = max(r[1] for r in ranges)
        if end > group.members[0][1].untyped_storage().nbytes():  # grouping is by storage
            raise AssertionError("a view reaches past its storage")
        sizes = [t.element_size() for _, t in group.members]
        if any((r[0] - start) % item for r, item in zip(ranges, sizes, strict=True)):
            start = 0  # views of several dtypes at offsets no common start aligns
        names = {node["dtype"] for node, _ in group.members}
        common = names.pop() if len(names) == 1 else None
        size = TORCH_DTYPES[common] if common else 1
        if (end - start) % size:
            common, size = None, 1
        # A member that is exactly the span, contiguous, gives the stored tensor its shape
        # (readers of the container see "encoder.weight" as [4, 6], not as 24 elements).
        whole = next(
            (
                t
                for node, t in group.members
                if node["dtype"] == common
                and t.is_contiguous()
                and t.storage_offset() * size == start
                and t.numel() * size == end - start
            ),
            None,
        )
        for node, tensor in group.members:
            item = tensor.element_size()
            node["tensor"] = group.name
            if whole is not None and _signature(tensor) == _signature(whole):
                continue
            node["view"] = {
                "shape": list(tensor.shape),
                "stride": list(tensor.stride()),
                "offset": (tensor.storage_offset() * item - start) // item,
            }
        if whole is not None:
            return group.name, _producer(whole), container_dtype(common)
        first = group.members[0][1]

        def produce() -> Any:
            torch = sys.modules["torch"]
            raw = torch.empty(0, dtype=torch.uint8, device=first.device)
            raw.set_(first.untyped_storage())
            piece = raw[start:end]
            if common is not None:
                piece = piece.view(getattr(torch, common))
            return numpy_bits(piece.cpu())

        return group.name, produce, container_dtype(common) if common else "uint8"


def _unsupported(tensor: Any, torch: Any) -> str | None:
    if tensor.layout != torch.strided:
        return f"{tensor.layout} tensors cannot be saved; convert with .to_dense() first"
    if tensor.is_quantized:
        return "quantized tensors cannot be saved; save their int_repr() and scales"
    if tensor.is_meta:
        return "meta tensors have no data to save"
    if tensor.is_nested:
        return "nested tensors cannot be saved"
    if any(s < 0 for s in tensor.stride()):
        return "tensors with negative strides cannot be saved"
    return None


def _signature(tensor: Any) -> tuple:
    return (tensor.dtype, tensor.storage_offset(), tuple(tensor.shape), tuple(tensor.stride()))


def _byte_range(tensor: Any) -> tuple[int, int]:
    item = tensor.element_size()
    extent = sum((n - 1) * s for n, s in zip(tensor.shape, tensor.stride(), strict=True)) + 1
    start = tensor.storage_offset() * item
    return start, start + extent * item


def numpy_bits(tensor: Any) -> Any:
    """A numpy view of a CPU tensor's elements: its own dtype where numpy has it, else
    unsigned integers of the same size (written with the declared table dtype)."""
    torch = sys.modules["torch"]
    tensor = tensor.resolve_conj().resolve_neg()
    name = dtype_name(tensor.dtype)
    if name in dtypes.NUMPY_DTYPES:
        return tensor.numpy()
    return tensor.view(getattr(torch, _STAND_IN[TORCH_DTYPES[name]])).numpy()


def _producer(tensor: Any) -> Any:
    if tensor.device.type == "cpu":
        return numpy_bits(tensor)
    # Copied off the device when the writer reaches it: one tensor in host memory at a time.
    return lambda: numpy_bits(tensor.cpu())


# -- loading --------------------------------------------------------------------------------


class TorchLoader:
    """Builds tensors of ``torch`` nodes; one base tensor per container tensor (moved to
    ``device`` once), so tensors that shared storage share it again."""

    def __init__(self, bits: Any, device: Any = None) -> None:
        self._bits = bits  # name -> numpy array of the payload (bits for non-numpy types)
        self._device = device
        self._bases: dict[str, Any] = {}

    def tensor(self, node: dict[str, Any], bad: Any) -> Any:
        import torch

        dtype_text = node.get("dtype")
        if type(dtype_text) is not str or dtype_text not in TORCH_DTYPES:
            raise bad(f"unknown torch dtype {dtype_text!r}; known: {', '.join(TORCH_DTYPES)}")
        dtype = getattr(torch, dtype_text)
        item = TORCH_DTYPES[dtype_text]
        base = self._base(node["tensor"])
        view = node.get("view")
        if view is None:
            if base.element_size() != item:
                raise bad(
                    f"a {dtype_text} tensor cannot be stored with {base.element_size()}-byte "
                    "elements without a 'view'"
                )
            out = base.view(dtype)
            if out.dtype != dtype:
                raise bad("container tensor cannot be viewed as its torch dtype")
        else:
            shape, stride, offset = _view(view, bad)
            count = base.untyped_storage().nbytes() // item
            numel = 1
            for n in shape:
                numel *= n
            if numel > MAX_VIEW_ELEMENTS:
                raise bad(f"view has {numel} elements; the limit is {MAX_VIEW_ELEMENTS}")
            if numel:
                last = offset + sum((n - 1) * s for n, s in zip(shape, stride, strict=True))
                if last >= count:
                    raise bad(
                        f"view reaches element {last} of a storage of {count} {dtype_text} "
                        "elements; it points outside the stored data"
                    )
            elif offset > count:
                raise bad("view offset is past the end of the stored data")
            # The storage's bytes, whatever the container tensor's shape and order.
            raw = torch.empty(0, dtype=torch.uint8, device=base.device)
            raw.set_(base.untyped_storage())
            try:
                out = raw[: count * item].view(dtype).as_strided(shape, stride, offset)
            except RuntimeError as exc:  # a check above should have caught it first
                raise bad(f"torch refused the view: {exc}") from None
        grad = node.get("grad", node.get("param") is True)
        if type(grad) is not bool or type(node.get("param", False)) is not bool:
            raise bad("'grad' and 'param' must be true or false")
        if grad and not (dtype.is_floating_point or dtype.is_complex):
            raise bad(f"a {dtype_text} tensor cannot require gradients")
        if node.get("param"):
            return torch.nn.Parameter(out, requires_grad=grad)
        return out.requires_grad_(True) if grad else out

    def _base(self, name: str) -> Any:
        base = self._bases.get(name)
        if base is None:
            import torch

            array = self._bits(name)
            if not array.flags.writeable:
                # torch has no read-only tensors; a write into a read-only mapping would
                # crash the process, so such loads get private copies.
                array = array.copy()
            base = torch.from_numpy(array)
            if self._device is not None:
                try:
                    base = base.to(self._device)
                except (RuntimeError, AssertionError) as exc:  # torch's "no CUDA" is an assert
                    raise InvalidArgumentError(
                        f"cannot place tensors on {self._device}: {exc}; load on 'cpu' or "
                        "pick a device this machine has"
                    ) from None
            self._bases[name] = base
        # A new tensor object on the same storage: tied tensors stay two objects that share.
        return base.detach()


def _view(view: Any, bad: Any) -> tuple[list[int], list[int], int]:
    if type(view) is not dict or view.keys() != {"shape", "stride", "offset"}:
        raise bad("'view' must be an object with exactly 'shape', 'stride' and 'offset'")
    shape, stride, offset = view["shape"], view["stride"], view["offset"]
    if (
        type(shape) is not list
        or type(stride) is not list
        or len(shape) != len(stride)
        or len(shape) > MAX_RANK
    ):
        raise bad(f"view 'shape' and 'stride' must be lists of equal length <= {MAX_RANK}")
    limit = 1 << 62
    for value in [*shape, *stride, offset]:
        if type(value) is not int or not 0 <= value < limit:
            raise bad(f"view holds {value!r}; sizes, strides and offset are integers >= 0")
    return shape, stride, offset


def check_node(node: dict[str, Any]) -> QualName:
    """The class a torch node stands for (audited before torch is imported)."""
    if node.get("param") is True:
        return PARAMETER
    return TENSOR
