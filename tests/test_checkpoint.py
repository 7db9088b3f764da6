"""Training checkpoints: exact resumption in a new process, and refusals that change nothing."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import amber
from amber.errors import InvalidArgumentError, StateDictMismatch

RUN = Path(__file__).with_name("training_run.py")
STEPS, CHECKPOINT_AT = 20, 8


def _run(optimizer: str, mode: str, out: Path) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(RUN), optimizer, mode, str(out), str(CHECKPOINT_AT), str(STEPS)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads((out / f"{mode}.losses.json").read_text())


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_resumed_run_is_bit_identical_to_an_uninterrupted_one(
    tmp_path: Path, optimizer: str
) -> None:
    full = _run(optimizer, "full", tmp_path)
    first = _run(optimizer, "first", tmp_path)
    resumed = _run(optimizer, "resume", tmp_path)  # a new process, from the file alone
    assert len(full) == STEPS and len(first) == CHECKPOINT_AT
    assert first == full[:CHECKPOINT_AT]
    assert resumed == full[CHECKPOINT_AT:]  # every loss, to the last bit
    final = amber.load(tmp_path / "full.weights.amber")
    again = amber.load(tmp_path / "resume.weights.amber")
    assert list(final) == list(again)
    for key in final:
        assert torch.equal(final[key], again[key]), key


def _setup() -> tuple[nn.Module, torch.optim.Optimizer, object]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=10)
    x = torch.randn(16, 4)
    for _ in range(3):
        optimizer.zero_grad()
        model(x).sum().backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def test_checkpoint_restores_every_part(tmp_path: Path) -> None:
    model, optimizer, scheduler = _setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    path = tmp_path / "c.amber"
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    info = amber.save_checkpoint(
        path,
        model=model,
        optimizer=optimizer,
        scheduler=scheduler,
        scaler=scaler,
        step=3,
        epoch=1,
        extra={"best": 0.5, "seen": np.arange(3)},
        metadata={"run": "r1"},
    )
    assert info.metadata == {"run": "r1"}
    expected = (random.random(), np.random.rand(), torch.rand(1).item())

    model2, optimizer2, scheduler2 = _setup()
    scaler2 = torch.amp.GradScaler("cpu", init_scale=2.0)
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model2.parameters():
            p.add_(1.0)
    restored = amber.load_checkpoint(
        path, model=model2, optimizer=optimizer2, scheduler=scheduler2, scaler=scaler2
    )
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert restored.step == 3 and restored.epoch == 1
    assert restored.extra["best"] == 0.5
    np.testing.assert_array_equal(restored.extra["seen"], np.arange(3))
    assert set(restored.parts) == {"model", "optimizer", "scheduler", "scaler", "rng"}
    for key, value in model.state_dict().items():
        assert torch.equal(model2.state_dict()[key], value)
    saved_state = optimizer.state_dict()["state"]
    loaded_state = optimizer2.state_dict()["state"]
    for index, values in saved_state.items():
        for name, value in values.items():
            assert torch.equal(loaded_state[index][name], value), (index, name)
    assert scheduler2.state_dict() == scheduler.state_dict()
    assert scaler2.get_scale() == 1024.0


def test_rng_can_be_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "c.amber"
    torch.manual_seed(1)
    amber.save_checkpoint(path, step=0)
    torch.manual_seed(2)
    expected = torch.rand(1)
    torch.manual_seed(2)
    amber.load_checkpoint(path, restore_rng=False)
    assert torch.equal(torch.rand(1), expected)


def test_refusals_leave_model_and_optimizer_unchanged(tmp_path: Path) -> None:
    model, optimizer, _ = _setup()
    path = tmp_path / "c.amber"
    amber.save_checkpoint(path, model=model, optimizer=optimizer, step=1)

    other = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    other_optimizer = torch.optim.Adam(other.parameters())
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(StateDictMismatch, match=r"2\.weight: file \(2, 8\)"):
        amber.load_checkpoint(path, model=other, optimizer=other_optimizer)
    assert all(torch.equal(before[k], v) for k, v in other.state_dict().items())
    assert other_optimizer.state_dict()["state"] == {}

    fewer = torch.optim.Adam(list(model.parameters())[:2])
    with pytest.raises(StateDictMismatch, match="parameter groups of sizes"):
        amber.load_checkpoint(path, model=model, optimizer=fewer)

    _, _, scheduler = _setup()
    with pytest.raises(StateDictMismatch, match="holds no scheduler state"):
        amber.load_checkpoint(path, scheduler=scheduler)


def test_not_a_checkpoint_and_bad_arguments(tmp_path: Path) -> None:
    amber.save({"model": {}}, tmp_path / "plain.amber")
    with pytest.raises(InvalidArgumentError, match="not an amber checkpoint"):
        amber.load_checkpoint(tmp_path / "plain.amber")
    with pytest.raises(InvalidArgumentError, match="step must be"):
        amber.save_checkpoint(tmp_path / "x.amber", step=-1)
    with pytest.raises(InvalidArgumentError, match="extra must be a dict"):
        amber.save_checkpoint(tmp_path / "x.amber", extra=[1])
    assert not (tmp_path / "x.amber").exists()


def test_checkpoint_model_loads_into_a_module(tmp_path: Path) -> None:
    model, optimizer, _ = _setup()
    amber.save_checkpoint(tmp_path / "c.amber", model=model, optimizer=optimizer)
    state = amber.load(tmp_path / "c.amber")
    assert state["format"] == "amber.checkpoint"
    fresh = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    amber.load(tmp_path / "c.amber", into=fresh)  # the checkpoint's model weights
    assert torch.equal(fresh[0].weight, model[0].weight)
    partial = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 2))
    amber.load(tmp_path / "c.amber", into=partial, keys=["2.bias"])
    assert torch.equal(partial[2].bias, model[2].bias)
    assert not torch.equal(partial[0].weight, model[0].weight)


def test_bad_rng_or_scaler_state_changes_nothing(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    sevens = {k: v * 0 + 7 for k, v in model.state_dict().items()}
    amber.save(
        {"format": "amber.checkpoint", "version": 1, "model": sevens, "rng": {"python": 5}},
        tmp_path / "rng.amber",
    )
    target = nn.Linear(2, 2)
    before = target.weight.clone()
    with pytest.raises(StateDictMismatch, match="random generator state cannot be restored"):
        amber.load_checkpoint(tmp_path / "rng.amber", model=target)
    assert torch.equal(target.weight, before)
    amber.save_checkpoint(
        tmp_path / "s.amber", model=model, scaler=torch.amp.GradScaler("cpu", enabled=False)
    )
    with pytest.raises(StateDictMismatch, match="scaler state cannot be restored"):
        amber.load_checkpoint(
            tmp_path / "s.amber", model=target, scaler=torch.amp.GradScaler("cpu")
        )
    assert torch.equal(target.weight, before)


def test_optimizer_state_of_another_shape_is_refused(tmp_path: Path) -> None:
    _, optimizer, _ = _setup()
    amber.save_checkpoint(tmp_path / "c.amber", optimizer=optimizer)
    other = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 3))
    other_optimizer = torch.optim.Adam(other.parameters(), lr=0.01)
    with pytest.raises(StateDictMismatch, match="has shape"):
        amber.load_checkpoint(tmp_path / "c.amber", optimizer=other_optimizer)
    assert other_optimizer.state_dict()["state"] == {}
