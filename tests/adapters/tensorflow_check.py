"""A manual check with TensorFlow (not collected by pytest; TensorFlow is not a test extra).

    KERAS_BACKEND=tensorflow python tests/adapters/tensorflow_check.py

In an environment with ``tensorflow-cpu`` and Keras 3 (and amber): a ``tf.keras`` model
saved with amber loads and predicts identically, continued training after reload matches
training without a save, and a store records its signature and predicts the same through
the predictor ``amber serve`` uses. Exits non-zero on any difference.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

os.environ["KERAS_BACKEND"] = "tensorflow"


def main() -> int:
    import numpy as np
    import tensorflow as tf

    import amber
    from amber.adapters.predictors import load
    from amber.store import Store

    keras = tf.keras
    print("tensorflow", tf.__version__, "keras", keras.__version__, keras.backend.backend())
    keras.utils.set_random_seed(0)
    inp = keras.Input((8,), name="x")
    hidden = keras.layers.Dense(16, activation="relu")(inp)
    hidden = keras.layers.Dropout(0.2)(keras.layers.BatchNormalization()(hidden))
    model = keras.Model(inp, keras.layers.Dense(3, activation="softmax")(hidden))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(64, 8)).astype("float32")
    y = np.arange(64) % 3
    model.fit(x, y, epochs=2, verbose=0)
    checks: dict[str, bool] = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        amber.save(model, root / "tf.amber")
        loaded = amber.load(root / "tf.amber")
        checks["predict identical"] = np.array_equal(
            model.predict(x, verbose=0), loaded.predict(x, verbose=0)
        )
        for m in (model, loaded):
            keras.utils.set_random_seed(1)
            m.fit(x, y, epochs=1, verbose=0, shuffle=False)
        checks["continued training identical"] = all(
            np.array_equal(np.asarray(a), np.asarray(b))
            for a, b in zip(model.variables, loaded.variables, strict=True)
        )
        seq = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        amber.save(seq, root / "seq.amber")
        checks["sequential identical"] = np.array_equal(
            seq.predict(x[:, :4], verbose=0),
            amber.load(root / "seq.amber").predict(x[:, :4], verbose=0),
        )
        with Store(root / "store") as store:
            version = store.save(model, "m")
            checks["signature recorded"] = version.signature["inputs"] == {
                "type": "ndarray",
                "name": "x",
                "dtype": "float32",
                "shape": [None, 8],
            }
            checks["store predictor identical"] = np.array_equal(
                load(store, "m@1").predict(x), model.predict(x, verbose=0)
            )
    for name, ok in checks.items():
        print(f"{name}: {ok}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
