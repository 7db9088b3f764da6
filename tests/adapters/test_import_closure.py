"""Importing what amber trusts pulls in only the packages listed here (rule R3).

Step 2 of the audit imports the modules of trusted names, and importing a module runs its
import-time code and that of everything it imports. This imports every module amber's
tables trust, in a fresh interpreter, and lists the top-level packages that appear. A new
package here (after an upgrade of scikit-learn, scipy or torch) must be reviewed, then
added: it is code that loading a file can make run.
"""

from __future__ import annotations

import json
import subprocess
import sys

from amber.adapters.sklearn import TABLE
from amber.adapters.torch import FUNCTIONS as TORCH_FUNCTIONS

# What scikit-learn, scipy and numpy import themselves (joblib's loky backend brings
# cloudpickle and psutil, narwhals brings pandas and dateutil, sklearn.calibration rich;
# pandas imports pyarrow where it is installed, numpy.f2py charset_normalizer, joblib's
# compressors lz4).
SKLEARN_CLOSURE = frozenset(
    {
        "sklearn",
        "numpy",
        "scipy",
        "joblib",
        "threadpoolctl",
        "narwhals",
        "pandas",
        "dateutil",
        "pytz",
        "tzdata",
        "six",
        "cloudpickle",
        "psutil",
        "rich",
        "markdown_it",
        "mdurl",
        "pygments",
        "packaging",
        "pyarrow",
        "charset_normalizer",
        "lz4",
    }
)
TORCH_CLOSURE = frozenset(
    {
        "torch",
        "numpy",
        "typing_extensions",
        "sympy",
        "mpmath",
        "networkx",
        "jinja2",
        "markupsafe",
        "fsspec",
        "filelock",
        "packaging",
        "functorch",
        "torchgen",
        "opt_einsum",
        "optree",
        "setuptools",
        "pkg_resources",
        "distutils",
        "yaml",
        "tqdm",  # torch.hub's progress bar, imported where installed (transformers brings it)
    }
)

_SCRIPT = """
import json, sys
before = set(sys.modules)
for name in json.loads(sys.argv[1]):
    __import__(name)
new = {m.split(".")[0] for m in set(sys.modules) - before}
print(json.dumps(sorted(new - set(sys.stdlib_module_names))))
"""


def _closure(modules: list[str]) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, json.dumps(modules)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    ).stdout
    # Extension modules registered under private top-level names (scipy's _csparsetools,
    # Cython's runtime) and multiprocessing's __mp_main__ are parts of the packages above.
    return {name for name in json.loads(out) if not name.startswith("_") and "cython" not in name}


def test_scikit_learn_table_modules_import_only_known_packages() -> None:
    table = json.loads(TABLE.read_text(encoding="utf-8"))
    modules = sorted({n.split(":")[0] for n in [*table["classes"], *table["functions"]]})
    found = _closure(modules)
    assert "sklearn" in found
    assert found <= SKLEARN_CLOSURE, sorted(found - SKLEARN_CLOSURE)


def test_torch_trusted_modules_import_only_known_packages() -> None:
    modules = sorted({name.split(":")[0] for name in TORCH_FUNCTIONS} | {"torch.nn.modules"})
    found = _closure(modules)
    assert "torch" in found
    assert found <= TORCH_CLOSURE, sorted(found - TORCH_CLOSURE)
