"""The .amber file: bytes <-> {manifest, tensors}. Knows no models (docs/format.md)."""

from amber.container.format import FORMAT_MAJOR, FORMAT_MINOR
from amber.container.manifest import TensorEntry
from amber.container.reader import ContainerReader
from amber.container.writer import WriteResult, write

__all__ = ["FORMAT_MAJOR", "FORMAT_MINOR", "ContainerReader", "TensorEntry", "WriteResult", "write"]
