"""Magnitude pruning on save: how many weights become zero (per layer, global, threshold),
the sparse storage that makes the file shrink, composition with quantization and
compression, bad arguments, and the accuracy cost (reported, not asserted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import amber
from amber.container import ContainerReader, write
from amber.errors import InvalidArgumentError


def weights() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "big.weight": (rng.standard_normal((256, 512)) * 0.02).astype(np.float32),
        "small.weight": (rng.standard_normal((64, 128)) * 2.0).astype(np.float32),
        "big.bias": rng.standard_normal(256).astype(np.float32),
        "ids.weight": np.arange(64, dtype=np.int64).reshape(8, 8),
    }


def zeros(a: np.ndarray) -> float:
    return float((a == 0).mean())


def test_fraction_per_layer_and_global(tmp_path: Path) -> None:
    original = weights()
    path = tmp_path / "p.amber"
    amber.save(original, path, prune=0.75)
    per_layer = amber.load(path)
    for name in ("big.weight", "small.weight"):
        assert zeros(per_layer[name]) == pytest.approx(0.75, abs=1e-3)
        kept = per_layer[name] != 0
        # The largest magnitudes survive, unchanged.
        assert np.array_equal(per_layer[name][kept], original[name][kept])
        assert np.abs(original[name][~kept]).max() <= np.abs(original[name][kept]).min()
    for name in ("big.bias", "ids.weight"):  # never biases or integer tensors
        assert np.array_equal(per_layer[name], original[name])
    # Global: one cut over both matrices: the one of small magnitudes (std 0.02) takes all
    # the zeros, the other (std 2) keeps almost everything.
    amber.save(original, path, prune=amber.Prune(fraction=0.5, scope="global"))
    everywhere = amber.load(path)
    total = everywhere["big.weight"].size + everywhere["small.weight"].size
    zeroed = (everywhere["big.weight"] == 0).sum() + (everywhere["small.weight"] == 0).sum()
    assert zeroed / total == pytest.approx(0.5, abs=1e-3)
    assert zeros(everywhere["big.weight"]) > 0.52
    assert zeros(everywhere["small.weight"]) < 0.01
    # Threshold: every magnitude at or below it.
    amber.save(original, path, prune=amber.Prune(threshold=0.01))
    cut = amber.load(path)["big.weight"]
    assert np.array_equal(cut == 0, np.abs(original["big.weight"]) <= 0.01)


def test_sparse_storage_shrinks_the_file(tmp_path: Path) -> None:
    original = weights()
    raw = amber.save(original, tmp_path / "raw.amber").size
    sizes = {}
    for fraction in (0.5, 0.9):
        info = amber.save(original, tmp_path / f"{fraction}.amber", prune=fraction)
        assert info.format_version == "1.1"
        assert {t.name: t.codec for t in info.tensors}["big.weight"] == "bitmask"
        sizes[fraction] = info.size
    # Stored: a bit per element plus the kept elements.
    assert raw / sizes[0.5] > 1.8
    assert raw / sizes[0.9] > 6


def test_pruning_composes_with_quantization_and_compression(tmp_path: Path) -> None:
    original = weights()
    path = tmp_path / "p.amber"
    info = amber.save(original, path, prune=0.5, quantize="int8", compress="auto")
    codecs = {t.name: (t.codec, t.quantization) for t in info.tensors}
    assert codecs["big.weight"] == ("bitmask-zstd", "int8")
    loaded = amber.load(path)
    # The zeros of pruning stay zeros after quantization, and the rest is within int8's bound.
    pruned = amber.prune(original, 0.5)
    assert np.array_equal(loaded["big.weight"] == 0, pruned["big.weight"] == 0)
    step = np.abs(pruned["big.weight"]).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(loaded["big.weight"] - pruned["big.weight"]) <= step / 2 + 1e-7)
    with ContainerReader(path, use_mmap=False) as reader:
        assert reader.entries["big.weight"].compression.codec == "bitmask-zstd"
    assert info.size < amber.save(original, tmp_path / "q.amber", quantize="int8").size


def test_every_dtype_survives_the_bitmask_codec(tmp_path: Path) -> None:
    # Sparse storage keeps each element's exact bytes: -0.0 and NaN are non-zero bytes.
    import ml_dtypes

    values = np.array([[0.0, -0.0, np.nan, 1.5], [0.0, 0.0, -np.inf, 3.0]] * 5000)
    items = [
        (np.dtype(dtype).name, values.astype(dtype))
        for dtype in (np.float16, np.float32, np.float64, ml_dtypes.bfloat16)
    ]
    items.append(("int8", np.tile(np.array([0, -3, 0, 7], np.int8), 9000)))
    for compress in (None, "zstd"):
        path = tmp_path / "s.amber"
        write(path, items, sparse=[name for name, _ in items], compress=compress)
        with ContainerReader(path) as reader:
            for name, array in items:
                expected = "bitmask" if compress is None else "bitmask-zstd"
                assert reader.entries[name].compression.codec == expected
                assert reader.array(name).tobytes() == array.tobytes(), name
    # Pruning itself turns -0.0 into +0.0 (its magnitude is 0): a pruned weight is 0.
    pruned = amber.prune({"w.weight": values[:2].astype(np.float32)}, amber.Prune(threshold=0.0))
    assert not np.signbit(pruned["w.weight"][0, 1])


@pytest.mark.parametrize(
    "spec",
    [
        1.0,
        -0.1,
        "half",
        True,
        lambda: amber.Prune(),
        lambda: amber.Prune(fraction=0.5, threshold=0.1),
        lambda: amber.Prune(fraction=0.5, scope="row"),
        lambda: amber.Prune(threshold=0.1, scope="global"),
        lambda: amber.Prune(threshold=float("inf")),
        lambda: amber.Prune(fraction=0.5, include="*"),
    ],
)
def test_bad_prune_arguments_are_refused(tmp_path: Path, spec: object) -> None:
    path = tmp_path / "p.amber"
    with pytest.raises(InvalidArgumentError):
        amber.save(weights(), path, prune=spec() if callable(spec) else spec)
    assert not path.exists()


def test_pruned_mlp_accuracy_is_reported(tmp_path: Path) -> None:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16, y, test_size=0.3, random_state=0)
    model = MLPClassifier((64,), max_iter=300, random_state=0).fit(X_train, y_train)
    before = model.score(X_test, y_test)
    for fraction in (0.5, 0.8):
        pruned = amber.prune(model, fraction)
        assert zeros(pruned.coefs_[0]) == pytest.approx(fraction, abs=1e-3)
        after = pruned.score(X_test, y_test)
        print(f"\ndigits MLP prune {fraction}: accuracy {before:.4f} -> {after:.4f}")
        assert 0.0 <= after <= 1.0  # reported, not asserted: the cost depends on the model
