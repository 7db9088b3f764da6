"""Hostile native payloads for the XGBoost and LightGBM adapters.

``replace_tensor`` swaps the bytes of one tensor in a valid file (any new length) and
re-seals the container with the corpus helpers: offsets, digests, data digest and
trailer, so the reader accepts the file and the adapter's checks are what the test
exercises. ``load_isolated`` loads files in forked children, so a crash in native code
shows up as a signal instead of killing the test run.

The children fork from a fresh fork server, not from pytest: the test process has run
LightGBM's and XGBoost's OpenMP thread pools, and a child forked from it hangs in its first
parallel region.
"""

from __future__ import annotations

import json
import multiprocessing
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from blake3 import blake3

from tests.corpus.build import (
    ALIGNMENT,
    HEADER_SIZE,
    manifest_of,
    set_trailer,
)

TIMEOUT_S = 60.0


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def tensor_bytes(data: bytes, name: str) -> bytes:
    entry = next(t for t in manifest_of(data)["tensors"] if t["name"] == name)
    return data[entry["offset"] : entry["offset"] + entry["nbytes"]]


def replace_tensor(data: bytes, name: str, payload: bytes) -> bytes:
    """``data`` with the uint8 tensor ``name`` holding ``payload``, laid out and sealed
    again as the format requires (format.md §2.4, §7)."""
    manifest = manifest_of(data)
    tensors = sorted(manifest["tensors"], key=lambda t: t["offset"])
    payloads = {t["name"]: data[t["offset"] : t["offset"] + t["nbytes"]] for t in tensors}
    payloads[name] = payload
    region = bytearray()
    for entry in tensors:
        body = payloads[entry["name"]]
        region += bytes(_align(HEADER_SIZE + len(region)) - HEADER_SIZE - len(region))
        entry["offset"] = HEADER_SIZE + len(region)
        entry["nbytes"] = len(body)
        entry["digest"] = "blake3:" + blake3(body).hexdigest()
        if entry["name"] == name:
            entry["shape"] = [len(body)]
        region += body
    region += bytes(_align(HEADER_SIZE + len(region)) - HEADER_SIZE - len(region))
    manifest["data_digest"] = "blake3:" + blake3(bytes(region)).hexdigest()
    text = json.dumps(manifest, separators=(",", ":")).encode()
    out = data[:HEADER_SIZE] + bytes(region) + text + bytes(64)
    return set_trailer(
        out,
        manifest_offset=HEADER_SIZE + len(region),
        manifest_length=len(text),
        manifest_digest=blake3(text).digest(),
        major=int.from_bytes(data[-16:-14], "little"),
        minor=int.from_bytes(data[-14:-12], "little"),
        reserved=0,
        magic=data[-8:],
    )


def mutations(payload: bytes, seed: int, count: int) -> Iterator[tuple[str, bytes]]:
    """Truncations, byte flips, deletions and insertions of ``payload``, reproducibly."""
    rng = random.Random(seed)
    for cut in (0, 1, len(payload) // 3, len(payload) // 2, len(payload) - 1):
        yield f"truncated to {cut}", payload[:cut]
    for i in range(count):
        buf = bytearray(payload)
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(buf))
            op = rng.random()
            if op < 0.5:
                buf[at] = rng.randrange(256)
            elif op < 0.75:
                del buf[at : at + rng.randint(1, 16)]
            else:
                buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        yield f"mutation {i}", bytes(buf)


def _load_child(path: str, rows: Any) -> None:
    """In the child: load, predict, and exit 0 (loaded), 3 (amber refused the file with a
    FormatError), 5 (another amber error) or 4 (another exception escaped)."""
    import os
    import sys

    import amber
    from amber.errors import AmberError, FormatError

    devnull = os.open(os.devnull, os.O_WRONLY)  # LightGBM and XGBoost log to stdout/stderr
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        model = amber.load(path)
        model.predict(rows)
    except FormatError:
        sys.exit(3)
    except AmberError:
        sys.exit(5)
    except Exception:
        sys.exit(4)
    sys.exit(0)


LOADED, REFUSED, OTHER_ERROR = 0, 3, 4


def load_isolated(paths: list[Path], rows: Any) -> dict[Path, int]:
    """Exit code of a child loading each file (negative: killed by that signal)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["amber", "xgboost", "lightgbm", "sklearn", "pandas"])
    codes: dict[Path, int] = {}
    for path in paths:
        child = context.Process(target=_load_child, args=(str(path), rows))
        child.start()
        child.join(TIMEOUT_S)
        if child.exitcode is None:  # a hang is a failure too; report it as SIGKILL
            child.kill()
            child.join()
            codes[path] = -9
        else:
            codes[path] = child.exitcode
    return codes
