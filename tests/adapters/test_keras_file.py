""".keras import and export without Keras's loader: round trips, and hostile archives,
configurations and HDF5 weights refused under the tripwire with nothing imported and
nothing outside read."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import amber
from amber.errors import FormatError, SerializationError, UntrustedTypeError
from amber.interop.keras_file import plain_h5
from tests.adapters.keras_models import fdata, functional, keras, sequential

h5py = pytest.importorskip("h5py", reason="h5py is not installed (pip install 'amber[keras]')")
ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("_keras_tripwire.py")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    model = functional()
    x, y = fdata()
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    path = tmp_path_factory.mktemp("keras") / "model.keras"
    model.save(path)
    return model, path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def rezip(path: Path, content: dict[str, bytes], **infos: Any) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in content.items():
            info = zipfile.ZipInfo(name)
            for key, value in infos.get(name, {}).items():
                setattr(info, key, value)
            archive.writestr(info, data)
    return path


def test_keras_to_amber_and_back(trained: tuple[Any, Path], tmp_path: Path) -> None:
    model, path = trained
    x, _ = fdata()
    result = amber.convert(path, tmp_path / "m.amber")
    assert (result.src_format, result.dst_format) == ("keras", "amber")
    loaded = amber.load(tmp_path / "m.amber")
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations)
    back = amber.convert(tmp_path / "m.amber", tmp_path / "back.keras")
    assert (back.src_format, back.dst_format) == ("amber", "keras")
    again = keras.saving.load_model(tmp_path / "back.keras")
    assert np.array_equal(again.predict(x, verbose=0), model.predict(x, verbose=0))
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_export_refuses_what_is_not_a_keras_model(tmp_path: Path) -> None:
    amber.save({"w": np.zeros(2)}, tmp_path / "d.amber")
    with pytest.raises(SerializationError, match="not a Keras"):
        amber.convert(tmp_path / "d.amber", tmp_path / "d.keras")
    assert not (tmp_path / "d.keras").exists()


def test_cli_refuses_hostile_keras(tmp_path: Path) -> None:
    from tests.cli.test_main import run as amber_cli

    evil = rezip(tmp_path / "evil.keras", {"../evil.json": b"{}"})
    result = amber_cli("convert", str(evil), str(tmp_path / "e.amber"))
    assert result.returncode != 0 and result.stderr.startswith("error: ")
    assert "escaping path" in result.stderr and "Traceback" not in result.stderr


# -- hostile archives -------------------------------------------------------------------------


def hostile_archives(good: dict[str, bytes], folder: Path, secret: Path) -> dict[str, Path]:
    """name -> a hostile .keras file (each also run under the tripwire below)."""
    cases: dict[str, Path] = {}

    def add(name: str, content: dict[str, bytes], **infos: Any) -> None:
        cases[name] = rezip(folder / f"{name}.keras", content, **infos)

    add("dotdot member", {**good, "../../escape.txt": b"x"})
    add("absolute member", {**good, "/etc/amber-escape": b"x"})
    add("unexpected member", {**good, "scripts/run.py": b"import os"})
    add("asset dotdot", {**good, "assets/../../escape.txt": b"x"})
    add(
        "asset symlink",
        {**good, "assets/vocab.txt": str(secret).encode()},
        **{"assets/vocab.txt": {"external_attr": (0o120777 << 16)}},
    )
    add("asset folder with data", {**good, "assets/words/": b"x"})
    big = folder / "asset over the cap.keras"
    with zipfile.ZipFile(big, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in good.items():
            archive.writestr(name, data)
        archive.writestr("assets/vocab.txt", b"a\n" * ((64 << 20) // 2 + 1))
    cases["asset over the cap"] = big
    add("two weights files", {**good, "model.weights.npz": npz({"vars/0.npy": np.zeros(1)})})
    h5_less = {k: v for k, v in good.items() if k != "model.weights.h5"}
    evil = pickle_npy(b"\x80\x04cos\nsystem\n\x8c\x12echo amber-planted\x85R.")
    add(
        "npz pickle calling os.system",
        {**h5_less, "model.weights.npz": npz({"layers/dense.npy": evil})},
    )
    add(
        "npz pickle importing a planted module",
        {
            **h5_less,
            "model.weights.npz": npz(
                {"layers/dense.npy": pickle_npy(b"\x80\x04camber_planted_module\nEvil\n)R.")}
            ),
        },
    )
    add("npz strings", {**h5_less, "model.weights.npz": npz({"vars/0.npy": np.array(["a"])})})
    add("npz not a zip", {**h5_less, "model.weights.npz": b"PK\x03\x04 nope"})
    add(
        "symlink member",
        {**good, "metadata.json": str(secret).encode()},
        **{"metadata.json": {"external_attr": (0o120777 << 16)}},
    )
    bomb = folder / "zip bomb.keras"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("config.json", good["config.json"])
        archive.writestr("model.weights.h5", b"\0" * (8 << 20))
    cases["zip bomb"] = bomb
    add("missing config", {"model.weights.h5": good["model.weights.h5"]})
    (folder / "not a zip.keras").write_bytes(b"PK\x03\x04 not really a zip")
    cases["not a zip"] = folder / "not a zip.keras"
    config = json.loads(good["config.json"])
    lam = json.loads(json.dumps(config))
    lam["config"]["layers"].append(
        {
            "module": "keras.layers",
            "class_name": "Lambda",
            "registered_name": None,
            "config": {
                "name": "l",
                "function": {"class_name": "__lambda__", "config": {"value": "4wAAAA=="}},
            },
        }
    )
    add("lambda config", {**good, "config.json": json.dumps(lam).encode()})
    outside = json.loads(json.dumps(config))
    outside["config"]["layers"].append(
        {
            "module": "amber_planted_module",
            "class_name": "Evil",
            "config": {},
            "registered_name": None,
        }
    )
    add("module outside keras", {**good, "config.json": json.dumps(outside).encode()})
    get_file = json.loads(json.dumps(config))
    get_file["config"]["layers"].append(
        {
            "module": "keras.utils",
            "class_name": "get_file",
            "registered_name": None,
            "config": {"origin": "http://127.0.0.1:9/x", "fname": str(secret)},
        }
    )
    add("get_file config", {**good, "config.json": json.dumps(get_file).encode()})
    unsafe = json.loads(json.dumps(config))
    unsafe["config"]["layers"].append(
        {
            "module": "keras.layers",
            "class_name": "Activation",
            "registered_name": None,
            "config": {
                "name": "a",
                "activation": {
                    "module": "keras.config",
                    "class_name": "function",
                    "config": "enable_unsafe_deserialization",
                    "registered_name": "enable_unsafe_deserialization",
                },
            },
        }
    )
    add("unsafe switch config", {**good, "config.json": json.dumps(unsafe).encode()})
    for name, builder in HDF5_CASES.items():
        weights = folder / f"{name}.h5"
        builder(weights, secret)
        add(name, {**good, "model.weights.h5": weights.read_bytes()})
    return cases


def npz(members: dict[str, Any]) -> bytes:
    """An npz archive built by hand: arrays saved with np.save, or raw .npy bytes."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in members.items():
            if isinstance(value, bytes):
                archive.writestr(name, value)
                continue
            member = io.BytesIO()
            np.save(member, value, allow_pickle=False)
            archive.writestr(name, member.getvalue())
    return buffer.getvalue()


def pickle_npy(payload: bytes) -> bytes:
    """An object-dtype .npy member whose data is ``payload`` (a hand-written pickle)."""
    header = "{'descr': '|O', 'fortran_order': False, 'shape': (), }"
    header += " " * (63 - (10 + len(header)) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode() + payload


def _external_storage(path: Path, secret: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "layers/dense/vars/0", shape=(4,), dtype="<f4", external=[(str(secret), 0, 16)]
        )


def _virtual(path: Path, secret: Path) -> None:
    layout = h5py.VirtualLayout(shape=(4,), dtype="<f4")
    layout[:] = h5py.VirtualSource(str(secret) + ".h5", "data", shape=(4,))
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("layers/dense/vars/0", layout)


def _soft_link(path: Path, secret: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.zeros(4, "f4"))
        f["layers/dense/vars/0"] = h5py.SoftLink("/data")


def _external_link(path: Path, secret: Path) -> None:
    with h5py.File(path, "w") as f:
        f["layers/dense/vars/0"] = h5py.ExternalLink(str(secret) + ".h5", "/data")


def _strings(path: Path, secret: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "layers/dense/vars/0", data=np.array([b"x"], dtype=object), dtype=h5py.string_dtype()
        )


def _compressed(path: Path, secret: Path) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("layers/dense/vars/0", data=np.zeros(1000, "f4"), compression="gzip")


HDF5_CASES = {
    "hdf5 external storage": _external_storage,
    "hdf5 virtual dataset": _virtual,
    "hdf5 soft link": _soft_link,
    "hdf5 external link": _external_link,
    "hdf5 string dataset": _strings,
    "hdf5 compressed dataset": _compressed,
}
UNTRUSTED = {"lambda config", "module outside keras", "get_file config", "unsafe switch config"}


@pytest.fixture(scope="module")
def hostile(trained: tuple[Any, Path], tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("hostile")
    secret = tmp_path_factory.mktemp("outside") / "secret.bin"
    secret.write_bytes(np.arange(4, dtype="<f4").tobytes())
    with h5py.File(str(secret) + ".h5", "w") as f:
        f.create_dataset("data", data=np.arange(4, dtype="<f4"))
    return hostile_archives(members(trained[1]), folder, secret), secret


@pytest.mark.parametrize(
    "name",
    sorted(
        [
            "dotdot member",
            "absolute member",
            "unexpected member",
            "asset dotdot",
            "asset symlink",
            "asset folder with data",
            "asset over the cap",
            "two weights files",
            "npz pickle calling os.system",
            "npz pickle importing a planted module",
            "npz strings",
            "npz not a zip",
            "symlink member",
            "zip bomb",
            "missing config",
            "not a zip",
            *UNTRUSTED,
            *HDF5_CASES,
        ]
    ),
)
def test_hostile_archive_is_refused(hostile: Any, name: str, tmp_path: Path) -> None:
    cases, _ = hostile
    error = UntrustedTypeError if name in UNTRUSTED else FormatError
    with pytest.raises(error):
        amber.convert(cases[name], tmp_path / "out.amber")
    assert not (tmp_path / "out.amber").exists()
    assert "amber_planted_module" not in sys.modules


def _h5_arrays(path: Path) -> dict[str, Any]:
    return plain_h5(members(path)["model.weights.h5"], "test")


def _with_npz(path: Path, weights: bytes, target: Path, **extra: bytes) -> Path:
    content = {k: v for k, v in members(path).items() if k != "model.weights.h5"}
    return rezip(target, {**content, "model.weights.npz": weights, **extra})


def test_npz_weights_plain_layout(trained: tuple[Any, Path], tmp_path: Path) -> None:
    """Keras 3.15 has no public npz writer: the fixture is built by hand, each array under
    its HDF5 dataset path, and the archive carries a plain asset beside it."""
    model, path = trained
    arrays = _h5_arrays(path)
    weights = npz({f"{name}.npy": array for name, array in arrays.items()})
    source = _with_npz(path, weights, tmp_path / "npz.keras", **{"assets/notes.txt": b"hi\n"})
    amber.convert(source, tmp_path / "m.amber")
    loaded = amber.load(tmp_path / "m.amber")
    x, _ = fdata()
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))
    assert int(loaded.optimizer.iterations) == int(model.optimizer.iterations)


def test_npz_weights_keras_layout(trained: tuple[Any, Path], tmp_path: Path) -> None:
    """Keras's own npz layout (one member per layer, a pickled dict of arrays), read by
    amber's pickle reader: arrays only, nothing run."""
    import io

    model, path = trained
    grouped: dict[str, dict[str, Any]] = {}
    for name, array in _h5_arrays(path).items():
        owner, _, index = name.rpartition("/vars/")
        grouped.setdefault(owner or "__root__", {})[index] = array
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.array(v, dtype=object) for k, v in grouped.items()})
    source = _with_npz(path, buffer.getvalue(), tmp_path / "layout.keras")
    loaded = amber.convert(source, tmp_path / "m.amber") and amber.load(tmp_path / "m.amber")
    x, _ = fdata()
    assert np.array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_keras_own_npz_writer_is_refused(trained: tuple[Any, Path], tmp_path: Path) -> None:
    """Keras 3.15's internal npz writer pickles backend Variable objects (its own loader,
    with allow_pickle=False, cannot read them either): refused, saying why."""
    from keras.src.saving import saving_lib

    model, _ = trained
    saving_lib.save_model(model, tmp_path / "own.keras", weights_format="npz")
    with pytest.raises(FormatError, match=r"model\.weights\.npz.*Variable objects"):
        amber.convert(tmp_path / "own.keras", tmp_path / "m.amber")
    assert not (tmp_path / "m.amber").exists()


def test_plain_h5_reads_plain_datasets() -> None:
    import io

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.create_dataset("a/b/0", data=np.arange(6, dtype="<f4").reshape(2, 3))
    arrays = plain_h5(buffer.getvalue(), "test")
    assert list(arrays) == ["a/b/0"] and arrays["a/b/0"].tolist() == [[0, 1, 2], [3, 4, 5]]
    with pytest.raises(FormatError, match="not an HDF5 file"):
        plain_h5(b"nope", "test")
    with pytest.raises(FormatError, match="cannot open"):
        plain_h5(buffer.getvalue()[:100], "test")


def test_hostile_archives_under_the_tripwire(
    hostile: Any, trained: tuple[Any, Path], tmp_path: Path
) -> None:
    """In a fresh interpreter with the audit-hook tripwire armed: every hostile archive is
    refused with an amber error, imports no module, and opens no file but itself."""
    cases, secret = hostile
    amber.save(sequential(), tmp_path / "benign.amber")
    spec = {
        "benign_keras": str(trained[1]),
        "benign_amber": str(tmp_path / "benign.amber"),
        "benign_npz_keras": str(
            _with_npz(
                trained[1],
                npz({f"{k}.npy": v for k, v in _h5_arrays(trained[1]).items()}),
                tmp_path / "benign-npz.keras",
            )
        ),
        "cases": [{"key": n, "step": "convert", "path": str(p)} for n, p in cases.items()],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    flags = ["-P"] if sys.version_info >= (3, 11) else []
    run = subprocess.run(
        [sys.executable, *flags, str(PROBE), str(tmp_path / "spec.json")],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    reports = json.loads(run.stdout.strip().splitlines()[-1])["cases"]
    assert set(reports) == set(cases)
    for name, report in reports.items():
        assert report["error"] is not None, name
        assert "amber.errors.AmberError" in report["error"]["types"], (name, report["error"])
        assert report["new_modules"] == [], (name, report["new_modules"])
        assert report["events"] == [], (name, report["events"])
        assert str(secret) not in json.dumps(report["events"])
