"""Conversion between amber and other model file formats (safetensors).

Nothing here imports numpy, torch or the ``safetensors`` package at import time.
"""

from __future__ import annotations

from amber.interop.convert import ConvertResult, convert, detect_format
from amber.interop.safetensors import read_safetensors, write_safetensors

__all__ = ["ConvertResult", "convert", "detect_format", "read_safetensors", "write_safetensors"]
