"""Convert or load hostile Keras files under the audit-hook tripwire (a script).

    python -P tests/adapters/_keras_tripwire.py SPEC.json

``test_keras_file.py`` runs this in a fresh interpreter with the repository root on
``sys.path``. It warms up with benign ``.keras`` conversions (h5 and npz weights) and an ``.amber``
load (so what
a valid run imports is imported), then runs each case
with the tripwire of ``tests/graph/_tripwire.py`` armed (opening any file but the
case's own counts as an event) and prints one JSON report per
case: the exception, the modules that appeared, the events recorded.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from typing import Any

os.environ.setdefault("KERAS_BACKEND", "torch")


def main() -> None:
    import amber
    from tests.graph import _tripwire as tripwire

    with open(sys.argv[1]) as f:
        spec = json.load(f)
    out = tempfile.mkdtemp(prefix="amber-keras-tripwire-")

    def step(case: dict[str, Any]) -> Any:
        if case["step"] == "convert":
            target = os.path.join(out, case["key"] + ".amber")
            return amber.convert(case["path"], target)
        return amber.load(case["path"])

    warm = [
        {"key": "warm", "step": "convert", "path": spec["benign_keras"]},
        {"key": "warm2", "step": "load", "path": spec["benign_amber"]},
        {"key": "warm3", "step": "convert", "path": spec["benign_npz_keras"]},
    ]
    for case in warm:
        step(case)
    # The hook of the tripwire module (it records only while armed). A hostile file may
    # open nothing but itself: no allowance is learned from valid runs.
    sys.addaudithook(tripwire._hook)
    reports = {}
    for case in spec["cases"]:
        _, report = tripwire.armed(lambda case=case: step(case), {tripwire._real(case["path"])})
        reports[case["key"]] = report
    shutil.rmtree(out)
    print(json.dumps({"cases": reports}))


if __name__ == "__main__":
    main()
