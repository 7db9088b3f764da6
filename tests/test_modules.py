"""torch.nn modules: whole modules, state dicts of real architectures, load(into=), keys=."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

import amber
from amber.errors import (
    InvalidArgumentError,
    StateDictMismatch,
    TensorNotFoundError,
    UntrustedTypeError,
)


class TiedLM(nn.Module):
    """An embedding model whose output layer reuses the input embedding."""

    def __init__(self, vocab: int = 50, dim: int = 16) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.body = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.head = nn.Linear(dim, vocab, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(self.embed(ids)))


class LSTMTagger(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(6, 8, num_layers=2, batch_first=True)
        self.out = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.lstm(x)[0])


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Dropout(0.1), nn.Linear(16, 3))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 4 * 4, 2),
    )


def transformer() -> nn.Module:
    layer = nn.TransformerEncoderLayer(16, 2, 32, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)


ARCHITECTURES: dict[str, tuple[Any, Any]] = {
    "mlp": (mlp, lambda: torch.randn(5, 8)),
    "cnn": (cnn, lambda: torch.randn(2, 3, 8, 8)),
    "lstm": (lambda: nn.LSTM(6, 8, num_layers=2, batch_first=True), lambda: torch.randn(2, 5, 6)),
    "lstm-tagger": (LSTMTagger, lambda: torch.randn(2, 5, 6)),
    "transformer": (transformer, lambda: torch.randn(2, 7, 16)),
    "tied-lm": (TiedLM, lambda: torch.randint(0, 50, (2, 9))),
}


def trained(name: str) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(0)
    make, data = ARCHITECTURES[name]
    model = make()
    x = data()
    model.train()
    for _ in range(2):  # move BatchNorm running stats away from their defaults
        out = model(x)
        out = out[0] if isinstance(out, tuple) else out
        out.float().pow(2).mean().backward()
    model.eval()
    return model, x


def outputs(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    return out[0] if isinstance(out, tuple) else out


def assert_same_state(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("name", sorted(ARCHITECTURES))
def test_state_dict_loads_into_a_fresh_model(tmp_path: Path, name: str) -> None:
    model, x = trained(name)
    path = tmp_path / "sd.amber"
    amber.save(model.state_dict(), path)
    torch.manual_seed(1)
    fresh = ARCHITECTURES[name][0]().eval()
    assert amber.load(path, into=fresh) is fresh
    assert_same_state(fresh, model)
    assert torch.equal(outputs(fresh, x), outputs(model, x))


@pytest.mark.parametrize("name", ["mlp", "cnn", "lstm", "transformer"])
def test_torch_nn_modules_load_whole_without_trust(tmp_path: Path, name: str) -> None:
    model, x = trained(name)
    path = tmp_path / "m.amber"
    amber.save(model, path)
    loaded = amber.load(path)
    assert type(loaded) is type(model)
    assert_same_state(loaded, model)
    assert torch.equal(outputs(loaded, x), outputs(model, x))
    assert not loaded.training


def test_user_module_class_needs_trust_but_weights_load_into(tmp_path: Path) -> None:
    model, x = trained("tied-lm")
    path = tmp_path / "lm.amber"
    amber.save(model, path)
    with pytest.raises(UntrustedTypeError, match=r"TiedLM.*into=model"):
        amber.load(path)
    fresh = TiedLM().eval()
    amber.load(path, into=fresh)  # the class is never imported from the file
    assert torch.equal(outputs(fresh, x), outputs(model, x))
    assert fresh.head.weight is fresh.embed.weight  # tying is the module's own

    loaded = amber.load(path, trusted=[TiedLM])
    assert type(loaded) is TiedLM
    assert loaded.head.weight is loaded.embed.weight
    assert torch.equal(outputs(loaded, x), outputs(model, x))


def test_tied_state_dict_is_stored_once(tmp_path: Path) -> None:
    model, _ = trained("tied-lm")
    info = amber.save(model.state_dict(), tmp_path / "sd.amber")
    names = [t.name for t in info.tensors]
    assert "embed.weight" in names and "head.weight" not in names
    out = amber.load(tmp_path / "sd.amber")
    assert out["embed.weight"].data_ptr() == out["head.weight"].data_ptr()


def test_buffers_round_trip(tmp_path: Path) -> None:
    model, _ = trained("cnn")
    bn = model[1]
    assert bn.num_batches_tracked.item() == 2
    amber.save(model.state_dict(), tmp_path / "bn.amber")
    fresh = cnn()
    amber.load(tmp_path / "bn.amber", into=fresh)
    assert torch.equal(fresh[1].running_mean, bn.running_mean)
    assert torch.equal(fresh[1].running_var, bn.running_var)
    assert fresh[1].num_batches_tracked.item() == 2


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_mismatch_lists_every_problem_and_changes_nothing(tmp_path: Path) -> None:
    source, _ = trained("mlp")
    state = dict(source.state_dict())
    del state["0.bias"]
    state["extra.weight"] = torch.ones(2)
    state["3.weight"] = torch.ones(5, 16)
    state["3.bias"] = state["3.bias"].double()
    amber.save(state, tmp_path / "bad.amber")
    target = mlp()
    before = _snapshot(target)
    with pytest.raises(StateDictMismatch) as info:
        amber.load(tmp_path / "bad.amber", into=target)
    message = str(info.value)
    assert "1 missing key: 0.bias" in message
    assert "1 unexpected key: extra.weight" in message
    assert "3.weight: file (5, 16) float32, module (3, 16) float32" in message
    assert "3.bias: file (3,) float64, module (3,) float32" in message
    assert "not changed" in message
    after = target.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_into_accepts_numpy_state_dicts(tmp_path: Path) -> None:
    model, x = trained("mlp")
    arrays = {k: v.numpy() for k, v in model.state_dict().items()}
    amber.save(arrays, tmp_path / "np.amber")
    fresh = mlp().eval()
    amber.load(tmp_path / "np.amber", into=fresh)
    assert torch.equal(outputs(fresh, x), outputs(model, x))


def test_into_refuses_non_state_dicts_and_non_modules(tmp_path: Path) -> None:
    amber.save([1, 2], tmp_path / "list.amber")
    with pytest.raises(StateDictMismatch, match="not a state dict"):
        amber.load(tmp_path / "list.amber", into=mlp())
    amber.save({"0.weight": "text"}, tmp_path / "str.amber")
    with pytest.raises(StateDictMismatch, match="holds a str, not a tensor"):
        amber.load(tmp_path / "str.amber", into=mlp())
    with pytest.raises(InvalidArgumentError, match=r"into= takes a torch\.nn\.Module"):
        amber.load(tmp_path / "list.amber", into={})


def test_keys_load_a_subset_reading_only_those_tensors(tmp_path: Path) -> None:
    model, _ = trained("transformer")
    path = tmp_path / "t.amber"
    amber.save(model.state_dict(), path)
    keys = ["layers.0.linear1.weight", "layers.1.norm2.bias"]
    # Damage a tensor that is not selected: a keys= load must not read (or check) it.
    data = bytearray(path.read_bytes())
    with amber.open(path) as f:
        other = next(t for t in f.info.tensors if t.name == "layers.0.linear2.weight")
    offset = _payload_offset(path, other.name)
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    out = amber.load(path, keys=keys)
    assert list(out) == keys
    for key in keys:
        assert torch.equal(out[key], model.state_dict()[key])
    with pytest.raises(amber.errors.CorruptFileError):
        amber.load(path, keys=["layers.0.linear2.weight"])
    with pytest.raises(TensorNotFoundError, match="'nope'"):
        amber.load(path, keys=["nope"])
    with pytest.raises(InvalidArgumentError, match="list of strings"):
        amber.load(path, keys="layers.0.linear1.weight")


def _payload_offset(path: Path, name: str) -> int:
    from tests.corpus.build import manifest_of

    entry = next(t for t in manifest_of(path.read_bytes())["tensors"] if t["name"] == name)
    return entry["offset"]


def test_keys_with_into_loads_part_of_a_module(tmp_path: Path) -> None:
    source, _ = trained("mlp")
    path = tmp_path / "m.amber"
    amber.save(source, path)
    target = mlp()
    untouched = target[3].weight.clone()
    amber.load(path, into=target, keys=["0.weight", "0.bias"])
    assert torch.equal(target[0].weight, source[0].weight)
    assert torch.equal(target[3].weight, untouched)


def test_keys_resolve_shared_objects_declared_elsewhere(tmp_path: Path) -> None:
    shared = {"lr": 0.1}
    base = torch.arange(10.0)
    amber.save(
        {"a": {"cfg": shared, "w": base}, "b": {"cfg": shared, "v": base[2:5]}}, tmp_path / "s"
    )
    out = amber.load(tmp_path / "s", keys=["b"])
    assert out["b"]["cfg"] == {"lr": 0.1}
    assert torch.equal(out["b"]["v"], base[2:5])


def test_keys_need_a_dict_file(tmp_path: Path) -> None:
    amber.save([1], tmp_path / "l.amber")
    with pytest.raises(amber.errors.FormatError, match="keys= needs"):
        amber.load(tmp_path / "l.amber", keys=["0"])


def test_module_files_read_like_state_dicts_in_other_tools(tmp_path: Path) -> None:
    model, _ = trained("mlp")
    info = amber.save(model, tmp_path / "m.amber")
    assert [t.name for t in info.tensors] == list(model.state_dict())
    with amber.open(tmp_path / "m.amber") as f:
        np.testing.assert_array_equal(f["0.weight"], model[0].weight.detach().numpy())


def test_keys_in_any_order_and_as_a_generator(tmp_path: Path) -> None:
    shared = torch.arange(4.0)
    inner = [1, 2]
    amber.save({"a": shared, "b": shared, "c": [inner, 5], "d": inner}, tmp_path / "k")
    out = amber.load(tmp_path / "k", keys=["d", "c", "b", "a"])
    assert out["a"] is out["b"] and out["c"][0] is out["d"]
    assert list(amber.load(tmp_path / "k", keys=(k for k in ["a"]))) == ["a"]


class WithExtraState(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.config = {"threshold": 0.5}

    def get_extra_state(self) -> dict:
        return dict(self.config)

    def set_extra_state(self, state: dict) -> None:
        self.config = dict(state)


def test_into_passes_extra_state_through(tmp_path: Path) -> None:
    source = WithExtraState()
    source.config = {"threshold": 0.9}
    amber.save(source.state_dict(), tmp_path / "e.amber")
    target = WithExtraState()
    amber.load(tmp_path / "e.amber", into=target)
    assert target.config == {"threshold": 0.9}
    assert torch.equal(target.linear.weight, source.linear.weight)


class _TiedLM(nn.Module):
    """A language model whose output head shares the embedding's weight (GPT-2, T5)."""

    def __init__(self) -> None:
        super().__init__()
        self.wte = nn.Embedding(10, 4)
        self.ln = nn.LayerNorm(4)
        self.lm_head = nn.Linear(4, 10, bias=False)
        self.lm_head.weight = self.wte.weight


def test_tied_weight_left_out_by_save_pretrained_loads_through_its_twin(tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = _TiedLM()
    # save_pretrained writes the shared tensor once, under the embedding's name.
    state = {k: v for k, v in source.state_dict().items() if k != "lm_head.weight"}
    amber.save(state, tmp_path / "tied.amber")
    target = _TiedLM()
    assert amber.load(tmp_path / "tied.amber", into=target) is target
    assert target.lm_head.weight is target.wte.weight  # the tie is kept
    assert torch.equal(target.lm_head.weight, source.wte.weight)


def test_missing_key_message_names_the_tied_keys(tmp_path: Path) -> None:
    state = {
        k: v for k, v in _TiedLM().state_dict().items() if k not in ("lm_head.weight", "ln.weight")
    }
    amber.save(state, tmp_path / "tied.amber")
    target = _TiedLM()
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with pytest.raises(StateDictMismatch) as caught:
        amber.load(tmp_path / "tied.amber", into=target)
    message = str(caught.value)
    assert "1 missing key: ln.weight" in message
    assert "lm_head.weight (tied to wte.weight)" in message
    assert all(torch.equal(before[k], v) for k, v in target.state_dict().items())


def test_untied_target_still_needs_every_key(tmp_path: Path) -> None:
    untied = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 10, bias=False))
    amber.save({"0.weight": untied[0].weight.detach()}, tmp_path / "half.amber")
    with pytest.raises(StateDictMismatch, match=r"1 missing key: 1\.weight"):
        amber.load(tmp_path / "half.amber", into=untied)


def test_compiled_module_is_saved_as_the_module_it_compiled(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(3, 2))
    compiled = torch.compile(model)  # compiles lazily: nothing runs until it is called
    amber.save(compiled, tmp_path / "c.amber")
    loaded = amber.load(tmp_path / "c.amber")
    assert type(loaded) is nn.Sequential
    assert list(loaded.state_dict()) == ["0.weight", "0.bias"]  # no _orig_mod. prefix
    fresh = torch.compile(nn.Sequential(nn.Linear(3, 2)))
    assert amber.load(tmp_path / "c.amber", into=fresh) is fresh
    assert torch.equal(fresh._orig_mod[0].weight, model[0].weight)
    amber.save({"compiled": compiled, "model": model}, tmp_path / "both.amber")
    both = amber.load(tmp_path / "both.amber")
    assert both["compiled"] is both["model"]  # one module, shared
