"""Small models and data shared by the batch tests (fitted in well under a second)."""

from __future__ import annotations

from typing import Any

import numpy as np


def customers(n: int = 300, seed: int = 0) -> Any:
    """A DataFrame of mixed-type columns (int, float, text) and a binary target."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "age": rng.integers(18, 80, n).astype("int64"),
            "income": rng.normal(50.0, 12.0, n),
            "plan": rng.choice(["basic", "plus", "pro"], n),
        }
    )
    target = ((frame["age"] > 45) ^ (frame["plan"] == "pro")).astype(int)
    return frame, target


def pipeline(frame: Any, target: Any) -> Any:
    """One-hot on the text column, scaling on the numbers, logistic regression."""
    from sklearn.compose import make_column_transformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    pre = make_column_transformer(
        (OneHotEncoder(handle_unknown="ignore"), ["plan"]),
        (StandardScaler(), ["age", "income"]),
    )
    return make_pipeline(pre, LogisticRegression(max_iter=500)).fit(frame, target)


def features(n: int = 300, width: int = 6, seed: int = 1) -> tuple[Any, Any]:
    """A float matrix and a target depending on its first two columns."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, width))
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
