"""The producing environment is recorded and compared on load."""

from __future__ import annotations

import platform
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

import amber
from amber.errors import EnvironmentMismatch, EnvironmentMismatchWarning
from tests.corpus.build import edit_manifest


def _model(tmp_path: Path) -> Path:
    path = tmp_path / "model.amber"
    x = np.arange(20.0).reshape(10, 2)
    amber.save(LogisticRegression().fit(x, np.arange(10) % 2), path)
    return path


def test_versions_of_every_framework_involved_are_recorded(tmp_path: Path) -> None:
    env = amber.inspect(_model(tmp_path)).environment
    assert env["python"] == platform.python_version()
    for package in ("numpy", "scikit-learn", "amber"):
        assert package in env["packages"], package


def test_same_environment_loads_silently(tmp_path: Path) -> None:
    path = _model(tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        amber.load(path)


def _with_versions(path: Path, **packages: str) -> None:
    def edit(manifest: dict) -> None:
        manifest["environment"]["packages"].update(packages)

    path.write_bytes(edit_manifest(path.read_bytes(), edit))


def test_minor_version_difference_warns_naming_each_package(tmp_path: Path) -> None:
    path = _model(tmp_path)
    _with_versions(path, **{"scikit-learn": "0.24.2", "numpy": "1.0.0"})
    with pytest.warns(EnvironmentMismatchWarning) as record:
        model = amber.load(path)
    message = str(record[0].message)
    assert "scikit-learn saved 0.24.2, installed" in message
    assert "numpy saved 1.0.0, installed" in message
    assert model.predict(np.zeros((1, 2))).shape == (1,)


def test_strict_refuses_a_mismatch(tmp_path: Path) -> None:
    path = _model(tmp_path)
    _with_versions(path, **{"scikit-learn": "0.24.2"})
    with pytest.raises(EnvironmentMismatch, match=r"scikit-learn saved 0\.24\.2"):
        amber.load(path, strict=True)


def test_patch_version_difference_is_fine(tmp_path: Path) -> None:
    path = _model(tmp_path)
    major, minor, *_ = np.__version__.split(".")
    _with_versions(path, numpy=f"{major}.{minor}.999")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        amber.load(path, strict=True)


def test_missing_package_is_named(tmp_path: Path) -> None:
    path = _model(tmp_path)
    _with_versions(path, **{"not-a-real-package": "1.0"})
    with pytest.warns(
        EnvironmentMismatchWarning, match="not-a-real-package saved 1.0, not installed"
    ):
        amber.load(path)
