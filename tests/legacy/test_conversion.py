"""Conversions equal what each library's own loader returns for the same file.

Benign files are made here with pickle (protocols 0-5), joblib (each compressor, and the
uncompressed mmap-able form), ``torch.save`` (zip and legacy) and numpy; the reference is
the library's own loader run in a child process (``reference_child.py``), saved with
amber there. Every fitted estimator of the all-estimators test is among them.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
import torch

import amber
from amber.legacy.reader import load
from tests.adapters.compare import assert_same
from tests.adapters.sklearn_cases import all_estimator_classes, data_for, fit, make_estimator

ROOT = Path(__file__).resolve().parents[2]
ESTIMATORS = all_estimator_classes()
# Every estimator with AMBER_LEGACY_FULL=1 (211 fits, about a minute); otherwise every third
# one, in name order, so that each run still covers all six pickle protocols (the
# estimators are pickled at protocol i % 6) and every family of scikit-learn.
FULL = os.environ.get("AMBER_LEGACY_FULL") == "1"
SWEEP = {name: cls for i, (name, cls) in enumerate(ESTIMATORS.items()) if FULL or i % 3 == 0}
JOBLIB_COMPRESSORS = ("zlib", "gzip", "bz2", "xz", "lzma", "lz4")


def _lz4_installed() -> bool:
    try:
        import lz4  # noqa: F401
    except ImportError:
        return False
    return True


def _torch_objects() -> dict[str, Any]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    base = torch.arange(12.0).reshape(3, 4)
    return {
        "state_dict": model.state_dict(),
        "checkpoint": {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": 3,
            "loss": 0.25,
        },
        "views": {
            "base": base,
            "column": base[:, 1],
            "transposed": base.t(),
            "half": torch.ones(3, dtype=torch.float16),
            "bf16": torch.ones(2, dtype=torch.bfloat16),
            "ints": torch.tensor([1, 2], dtype=torch.int64),
            "flags": torch.tensor([True, False]),
            "param": torch.nn.Parameter(torch.ones(2)),
            "frozen": torch.nn.Parameter(torch.ones(2), requires_grad=False),
        },
    }


def _seed_example() -> Any:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X, y = load_iris(return_X_y=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=200)).fit(X, y)


def _references(directory: Path) -> None:
    """Run the libraries' own loaders on every file of ``directory`` in a child process."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.legacy.reference_child", str(directory)],
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    failures = json.loads(result.stdout.strip().splitlines()[-1])
    assert failures == {}, failures


@pytest.fixture(scope="module")
def estimators(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Fitted estimators pickled at protocols 0-5 and their references: (dir, originals)."""
    directory = tmp_path_factory.mktemp("estimators")
    originals: dict[str, Any] = {}
    for i, (name, cls) in enumerate(ESTIMATORS.items()):
        if name not in SWEEP:
            continue
        estimator = make_estimator(name, cls)
        fit(estimator, data_for(name, estimator))
        (directory / f"sk-{name}.pkl").write_bytes(pickle.dumps(estimator, protocol=i % 6))
        originals[f"sk-{name}.pkl"] = estimator
    _references(directory)
    return directory, originals


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """Every other benign file (seed example, joblib, torch, numpy) and its reference."""
    directory = tmp_path_factory.mktemp("benign")
    seed = _seed_example()
    for protocol in range(6):
        (directory / f"seed-p{protocol}.pkl").write_bytes(pickle.dumps(seed, protocol=protocol))
    forest = ESTIMATORS["RandomForestClassifier"]
    model = make_estimator("RandomForestClassifier", forest)
    fit(model, data_for("RandomForestClassifier", model))
    mixed = {"model": model, "scaler_mean": np.arange(5.0), "labels": np.array(["a", "b"])}
    for compressor in JOBLIB_COMPRESSORS:
        if compressor == "lz4" and not _lz4_installed():
            continue
        joblib.dump(mixed, directory / f"jl-{compressor}.joblib", compress=(compressor, 3))
    joblib.dump(mixed, directory / "jl-mmapable.joblib")  # uncompressed: joblib can mmap it
    joblib.dump(np.array([1, "x", None], dtype=object), directory / "jl-objects.joblib")
    for name, obj in _torch_objects().items():
        torch.save(obj, directory / f"pt-{name}.pt")
        torch.save(obj, directory / f"pt-legacy-{name}.pt", _use_new_zipfile_serialization=False)
    np.save(directory / "np-plain.npy", np.arange(10.0).reshape(2, 5))
    np.save(directory / "np-fortran.npy", np.asfortranarray(np.ones((3, 2))))
    np.save(directory / "np-objects.npy", np.array([{"a": 1}, [2]], dtype=object))
    np.savez(directory / "np-archive.npz", x=np.arange(3), y=np.array(["s"]))
    np.savez_compressed(directory / "np-compressed.npz", z=np.eye(3))
    _references(directory)
    return directory, {}


def _same(a: Any, b: Any, path: str) -> None:
    """assert_same, with torch tensors compared by type, dtype, shape, strides, grad, values."""
    if isinstance(a, torch.Tensor):
        assert type(a) is type(b), path
        assert (a.dtype, a.shape, a.stride(), a.requires_grad) == (
            b.dtype,
            b.shape,
            b.stride(),
            b.requires_grad,
        ), path
        assert torch.equal(a.detach(), b.detach()), path
    elif isinstance(a, dict):
        assert type(a) is type(b) and list(a) == list(b), path
        for key in a:
            _same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{path}[{i}]")
    else:
        assert_same(a, b, path)


def _check(directory: Path, name: str) -> Any:
    """Convert ``name`` with amber, load the result, compare with the child's reference."""
    src = directory / name
    converted = src.with_name(src.name + ".amber")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        amber.convert(src, converted, force=True)
        reference = amber.load(src.with_name(src.name + ".ref.amber"))
        out = amber.load(converted)
    _same(reference, out, name)
    return out


@pytest.mark.parametrize("name", SWEEP)
def test_fitted_estimators_convert_equal_to_pickle_load(
    name: str, estimators: tuple[Path, dict[str, Any]]
) -> None:
    directory, originals = estimators
    file = f"sk-{name}.pkl"
    reference = amber.load(directory / f"{file}.ref.amber")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = load(directory / file)  # the object convert writes, before writing
    assert_same(reference, out, name)
    assert type(out) is type(originals[file])


@pytest.mark.parametrize("protocol", range(6))
def test_seed_example_converts_for_every_protocol(
    protocol: int, corpus: tuple[Path, dict[str, Any]]
) -> None:
    directory, _ = corpus
    out = _check(directory, f"seed-p{protocol}.pkl")
    X = np.linspace(0, 5, 16).reshape(4, 4)
    assert (out.predict(X) == _seed_example().predict(X)).all()


@pytest.mark.parametrize("compressor", [*JOBLIB_COMPRESSORS, "mmapable"])
def test_joblib_files_convert_equal_to_joblib_load(
    compressor: str, corpus: tuple[Path, dict[str, Any]]
) -> None:
    directory, _ = corpus
    if compressor == "lz4" and not _lz4_installed():
        pytest.skip("lz4 is not installed (pip install amber[legacy]): no lz4 file to read")
    _check(directory, f"jl-{compressor}.joblib")


def test_joblib_object_arrays_are_nested_pickles(corpus: tuple[Path, dict[str, Any]]) -> None:
    directory, _ = corpus
    out = _check(directory, "jl-objects.joblib")
    assert out.dtype == object and list(out) == [1, "x", None]


@pytest.mark.parametrize("kind", ["state_dict", "checkpoint", "views"])
@pytest.mark.parametrize("container", ["pt", "pt-legacy"])
def test_torch_files_convert_equal_to_torch_load(
    kind: str, container: str, corpus: tuple[Path, dict[str, Any]]
) -> None:
    directory, _ = corpus
    out = _check(directory, f"{container}-{kind}.pt")
    if kind == "views":  # tensors over one storage share it again
        out["column"][0] = 100.0
        assert out["base"][0, 1] == 100.0 and out["transposed"][1, 0] == 100.0
        assert isinstance(out["param"], torch.nn.Parameter) and out["param"].requires_grad
        assert not out["frozen"].requires_grad


@pytest.mark.parametrize(
    "name",
    ["np-plain.npy", "np-fortran.npy", "np-objects.npy", "np-archive.npz", "np-compressed.npz"],
)
def test_numpy_files_convert_equal_to_numpy_load(
    name: str, corpus: tuple[Path, dict[str, Any]]
) -> None:
    directory, _ = corpus
    _check(directory, name)
