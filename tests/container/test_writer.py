"""The writer: atomic under every injected fault, streaming with bounded memory."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import amber
from amber.container import write
from amber.container.writer import CHUNK_BYTES, iter_chunks
from amber.errors import InvalidArgumentError, SerializationError, WriteError

PREVIOUS = b"previous content that must survive"


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "model.amber"
    path.write_bytes(PREVIOUS)
    return path


def _weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {f"w{i}": rng.standard_normal((64, 1024)) for i in range(6)}  # ~3 MiB


def _assert_untouched(target: Path) -> None:
    assert target.read_bytes() == PREVIOUS
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def _failing_after(real, calls: int, exc: BaseException):
    """Wrap ``real`` so that its ``calls``-th call (1-based) raises ``exc``."""
    count = 0

    def wrapper(*args, **kwargs):
        nonlocal count
        count += 1
        if count == calls:
            raise exc
        return real(*args, **kwargs)

    return wrapper


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str, tmp_path: Path) -> int:
    count = 0
    real = getattr(os, name)

    def counting(*args, **kwargs):
        nonlocal count
        count += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(os, name, counting)
    amber.save(_weights(), tmp_path / "probe.amber")
    monkeypatch.setattr(os, name, real)
    (tmp_path / "probe.amber").unlink()
    return count


@pytest.mark.parametrize(
    ("code", "advice"),
    [
        (errno.ENOSPC, "free disk space"),
        (errno.EIO, "check the target path"),
        (errno.EDQUOT, "quota"),
    ],
)
def test_write_fault_at_every_write_call_leaves_nothing(
    target: Path, monkeypatch: pytest.MonkeyPatch, code: int, advice: str
) -> None:
    total = _count_calls(monkeypatch, "write", target.parent)
    assert total > 5
    for call in range(1, total + 1):
        fault = OSError(code, os.strerror(code))
        monkeypatch.setattr(os, "write", _failing_after(os.write, call, fault))
        with pytest.raises(WriteError) as info:
            amber.save(_weights(), target)
        monkeypatch.undo()
        assert info.value.errno == code
        assert str(target) in str(info.value)
        assert "nothing was written" in str(info.value) and advice in str(info.value)
        _assert_untouched(target)


@pytest.mark.parametrize("step", ["fsync", "replace"])
def test_fault_at_fsync_or_rename_leaves_nothing(
    target: Path, monkeypatch: pytest.MonkeyPatch, step: str
) -> None:
    monkeypatch.setattr(os, step, _failing_after(getattr(os, step), 1, OSError(errno.EIO, "I/O")))
    with pytest.raises(WriteError, match="nothing was written"):
        amber.save(_weights(), target)
    monkeypatch.undo()
    _assert_untouched(target)


def test_permission_denied_creating_the_temporary_file(
    target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Tests may run as root, which ignores directory permissions: inject the kernel's answer.
    monkeypatch.setattr(os, "open", _failing_after(os.open, 1, PermissionError(errno.EACCES, "")))
    with pytest.raises(WriteError, match="check the permissions"):
        amber.save(_weights(), target)
    monkeypatch.undo()
    _assert_untouched(target)


@pytest.mark.skipif(os.geteuid() == 0, reason="root bypasses directory permissions")
def test_read_only_directory(target: Path) -> None:
    target.parent.chmod(0o500)
    try:
        with pytest.raises(WriteError, match="check the permissions"):
            amber.save(_weights(), target)
    finally:
        target.parent.chmod(0o700)
    _assert_untouched(target)


def test_interrupt_mid_write_propagates_and_leaves_nothing(
    target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(os, "write", _failing_after(os.write, 3, KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        amber.save(_weights(), target)
    monkeypatch.undo()
    _assert_untouched(target)


def test_exception_from_the_tensor_stream_leaves_nothing(target: Path) -> None:
    def tensors() -> Iterator[tuple[str, np.ndarray]]:
        yield "a", np.ones(1000)
        raise RuntimeError("producer failed")

    with pytest.raises(RuntimeError, match="producer failed"):
        write(target, tensors(), {})
    _assert_untouched(target)


def test_real_file_size_limit_gives_write_error(tmp_path: Path) -> None:
    """A real kernel refusal (RLIMIT_FSIZE -> EFBIG), not a patched function."""
    script = textwrap.dedent(
        f"""
        import resource, signal, numpy as np, amber
        from amber.errors import WriteError
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        try:
            amber.save({{"w": np.ones(1 << 19)}}, {str(tmp_path / "big.amber")!r})
        except WriteError as exc:
            print("WriteError", exc.errno)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.stdout.split() == ["WriteError", str(errno.EFBIG)], result.stderr
    assert list(tmp_path.iterdir()) == []


def test_existing_file_is_replaced_only_when_complete(target: Path) -> None:
    amber.save({"w": np.arange(3)}, target)
    assert np.array_equal(amber.load(target)["w"], np.arange(3))
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_target_problems_are_reported_before_writing(tmp_path: Path) -> None:
    with pytest.raises(WriteError, match="directory does not exist"):
        amber.save([1], tmp_path / "missing" / "x.amber")
    with pytest.raises(WriteError, match="is a directory"):
        amber.save([1], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_container_write_argument_checks(tmp_path: Path) -> None:
    path = tmp_path / "x.amber"
    with pytest.raises(InvalidArgumentError, match="alignment"):
        write(path, [], {}, alignment=100)
    with pytest.raises(InvalidArgumentError, match="reserved"):
        write(path, [], {"tensors": []})
    with pytest.raises(SerializationError, match="used twice"):
        write(path, [("a", np.ones(2)), ("a", np.ones(2))], {})
    with pytest.raises(SerializationError, match="numpy array"):
        write(path, [("a", [1, 2])], {})
    with pytest.raises(SerializationError, match="strict JSON"):
        write(path, [], {"x": float("nan")})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("alignment", [64, 4096])
def test_alignment_is_honoured(tmp_path: Path, alignment: int) -> None:
    path = tmp_path / "x.amber"
    result = write(path, [("a", np.ones(3)), ("b", np.ones(100, np.int8))], {}, alignment=alignment)
    assert all(e.offset % alignment == 0 for e in result.tensors)
    with amber.open(path) as f:
        assert f["b"].sum() == 100


@pytest.mark.parametrize(
    "array",
    [
        np.arange(10_000, dtype=np.float64).reshape(100, 100)[:, ::3],
        np.broadcast_to(np.arange(7, dtype=">i4"), (5000, 7)),
        np.arange(4 * 3 * 2000, dtype=np.int16).reshape(4, 3, 2000).transpose(2, 1, 0),
    ],
)
def test_chunking_yields_the_c_order_bytes_with_small_chunks(array: np.ndarray) -> None:
    expected = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()
    chunks = list(iter_chunks(array, "C", limit=4096))
    assert all(c.nbytes <= 4096 for c in chunks)
    assert b"".join(bytes(c) for c in chunks) == expected


def test_streaming_save_memory_is_bounded(tmp_path: Path) -> None:
    """Saving 1.5 GiB of arrays that occupy almost no memory (broadcast views, one big-endian,
    one Fortran-ordered) must not materialize them: peak RSS grows by about one chunk."""
    script = textwrap.dedent(
        f"""
        import resource, numpy as np, amber
        n = 1 << 27  # 512 MiB of float32 each
        arrays = {{
            "c": np.broadcast_to(np.float32(1.5), (n,)),
            "be": np.broadcast_to(np.array(2.5, ">f4"), (1 << 13, 1 << 14)),
            "f": np.broadcast_to(np.float32(3.5), (1 << 14, 1 << 13)).T,
        }}
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        amber.save(arrays, {str(tmp_path / "big.amber")!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) // 1024)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    growth_mib = int(result.stdout.strip())
    saved_mib = 3 * 512
    assert growth_mib < 4 * CHUNK_BYTES // (1 << 20), f"peak RSS grew {growth_mib} MiB"
    path = tmp_path / "big.amber"
    assert path.stat().st_size > saved_mib << 20
    with amber.open(path) as f:
        assert f["c"][-1] == 1.5 and f["be"][-1, -1] == 2.5 and f["f"][-1, -1] == 3.5
        assert f["be"].dtype.isnative
    path.unlink()


def test_fault_in_background_write_back_leaves_nothing(
    target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer asks the kernel to write back every 64 MiB from a helper thread; an error
    there fails the save like any other."""
    monkeypatch.setattr(os, "fdatasync", _failing_after(os.fdatasync, 1, OSError(errno.EIO, "I/O")))
    with pytest.raises(WriteError, match="nothing was written"):
        amber.save({"w": np.zeros(20 * 1024 * 1024)}, target)  # 160 MiB: several flushes
    monkeypatch.undo()
    _assert_untouched(target)
