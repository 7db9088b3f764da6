"""`import amber` and `amber --help` stay light: no framework (and not even numpy) is imported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY = {"torch", "sklearn", "scipy", "xgboost", "lightgbm", "boto3", "pandas", "numpy", "obstore"}
HEAVY = {"torch", "sklearn", "scipy", "xgboost", "lightgbm", "boto3", "pandas", "numpy"}
HEAVY |= {"keras", "onnx", "onnxruntime", "h5py", "google", "tensorflow", "jax"}


def _modules_after(code: str) -> set[str]:
    probe = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return {name.split(".")[0] for name in json.loads(out.strip().splitlines()[-1])}


def test_import_amber_imports_no_framework() -> None:
    assert not HEAVY & _modules_after("import amber")


def test_public_names_resolve_without_frameworks() -> None:
    loaded = _modules_after("import amber\nfor n in amber.__all__: getattr(amber, n)")
    assert not (HEAVY - {"numpy"}) & loaded


def test_cli_help_imports_no_framework() -> None:
    code = (
        "import sys\nfrom amber.cli.main import app\n"
        "try:\n    app(['--help'])\nexcept SystemExit:\n    pass"
    )
    assert not HEAVY & _modules_after(code)


def test_console_script_help_runs() -> None:
    amber = Path(sys.executable).with_name("amber")
    result = subprocess.run([str(amber), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    assert "inspect" in result.stdout and "verify" in result.stdout


def test_legacy_readers_import_no_framework() -> None:
    # Reading a pickle imports numpy (arrays) only when it meets one, and torch never.
    code = "import amber.legacy.reader, amber.legacy.scan, amber.cli.scan_cmd"
    assert not (HEAVY | {"joblib", "lz4"}) & _modules_after(code)


def test_serve_package_imports_no_server_or_framework() -> None:
    loaded = _modules_after("import amber.serve")
    assert not (HEAVY | {"starlette", "uvicorn", "httpx", "anyio"}) & loaded
    help_loaded = _modules_after(
        "from amber.cli.main import app\n"
        "try:\n    app(['serve', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert not (HEAVY | {"starlette", "uvicorn"}) & help_loaded


def test_batch_and_spark_faces_import_no_framework() -> None:
    # amber.spark and amber.batch load pyarrow, pandas and pyspark only when they run.
    loaded = _modules_after("import amber.spark, amber.dask, amber.batch, amber.cli.predict_cmd")
    assert not (HEAVY | {"pyarrow", "pyspark", "py4j", "dask"}) & loaded


def _after_command(argv: list[str]) -> set[str]:
    """Full module names loaded by running ``amber <argv>`` the way the console script does."""
    probe = (
        "import sys, json\nfrom amber.cli.main import build, modules_for\n"
        f"argv = ['amber', *{argv!r}]\n"
        "try:\n    build(modules_for(argv))(argv[1:])\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out.strip().splitlines()[-1]))


def test_cli_inspect_imports_only_its_command(tmp_path: Path) -> None:
    import amber

    path = tmp_path / "d.amber"
    amber.save({"a": [1, 2.5, "x"]}, path)
    loaded = _after_command(["inspect", str(path)])
    assert not HEAVY & {name.split(".")[0] for name in loaded}
    assert "amber.cli.inspect_cmd" in loaded
    others = {"serve_cmd", "predict_cmd", "store_cmds", "store_admin_cmds", "remote_cmds"}
    assert not {f"amber.cli.{name}" for name in others} & loaded
    assert not {"amber.store", "amber.serve", "amber.batch", "sqlite3"} & loaded
    # Save-only features and foreign-format sniffing stay off the inspect and load paths.
    assert not {"amber.pruning", "amber.quantization", "zipfile"} & loaded


def test_cli_ls_imports_no_framework(tmp_path: Path) -> None:
    loaded = _after_command(["ls", "--store", str(tmp_path / "none")])
    assert not HEAVY & {name.split(".")[0] for name in loaded}
    assert "amber.cli.serve_cmd" not in loaded and "amber.cli.inspect_cmd" not in loaded


def test_cli_command_table_lists_what_each_module_registers() -> None:
    import importlib

    import typer

    from amber.cli.main import COMMANDS, MODULES

    found: dict[str, str] = {}
    for module in MODULES:
        app = typer.Typer()
        importlib.import_module(f"amber.cli.{module}").register(app)
        for command in app.registered_commands:
            found[command.name or command.callback.__name__] = module
        for group in app.registered_groups:
            found[group.typer_instance.info.name] = module
    assert found == COMMANDS
