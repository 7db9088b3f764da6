"""pickle, joblib, torch.save and numpy files -> ``.amber``, without running them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from amber.legacy import formats

LEGACY_FORMATS = formats.CONVERTIBLE


def legacy_format(path: Path) -> str | None:
    """The foreign format amber converts that ``path`` holds, else None."""
    fmt = formats.detect(Path(path), formats.read_head(path))
    return fmt if fmt in LEGACY_FORMATS else None


def legacy_to_amber(
    src: Path, dst: Path, framework: str, *, trusted: Any = None
) -> tuple[int, int]:
    """Rebuild the object of ``src`` through amber's audit and save it at ``dst``; returns
    the tensor count and bytes written. ``framework`` does not apply (torch tensors stay
    torch tensors, numpy arrays numpy arrays)."""
    import amber
    from amber.legacy.reader import build, parse

    parsed = parse(src, trusted=trusted)
    obj = build(parsed, trusted)
    info = amber.save(obj, dst, metadata={"converted_from": parsed.format, "source": src.name})
    return len(info.tensors), info.tensor_bytes
