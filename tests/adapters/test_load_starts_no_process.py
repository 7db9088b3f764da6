"""A load starts no process, even where scikit-learn would: the OpenMP thread counts that
amber resets to this machine's are counted without joblib's ``lscpu``."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="the scikit-learn cases need amber[sklearn]")

import amber

CHILD = textwrap.dedent(
    """
    import json, sys
    import sklearn.cluster, sklearn.ensemble  # imported before the hook: not the load's
    import amber
    events = []
    WATCH = ("subprocess.Popen", "os.system", "os.posix_spawn", "os.fork", "os.forkpty")
    def hook(event, args):
        if event in WATCH or event.startswith(("os.exec", "os.spawn")):
            events.append(event)
    sys.addaudithook(hook)
    models = [amber.load(path) for path in sys.argv[1:]]
    hgb, kmeans = models
    print(json.dumps({
        "events": events,
        "bin_threads": hgb._bin_mapper.n_threads,
        "kmeans_threads": kmeans._n_threads,
    }))
    """
)


def test_loading_openmp_models_spawns_nothing(tmp_path: Path) -> None:
    from sklearn.cluster import KMeans
    from sklearn.ensemble import HistGradientBoostingClassifier

    rng = np.random.default_rng(0)
    X = rng.standard_normal((200, 4))
    y = (X[:, 0] > 0).astype(int)
    hgb = HistGradientBoostingClassifier(max_iter=5).fit(X, y)
    kmeans = KMeans(n_clusters=3, n_init=1, random_state=0).fit(X)
    paths = [tmp_path / "hgb.amber", tmp_path / "kmeans.amber"]
    amber.save(hgb, paths[0])
    amber.save(kmeans, paths[1])
    out = subprocess.run(
        [sys.executable, "-c", CHILD, *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["events"] == []
    assert seen["bin_threads"] is None  # counted by scikit-learn when it transforms
    assert isinstance(seen["kmeans_threads"], int) and seen["kmeans_threads"] >= 1
    # And the models still answer as the originals.
    np.testing.assert_array_equal(amber.load(paths[0]).predict(X), hgb.predict(X))
    np.testing.assert_array_equal(amber.load(paths[1]).predict(X), kmeans.predict(X))
