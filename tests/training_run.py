"""A small deterministic training run, used by test_checkpoint.py in fresh processes.

usage: python training_run.py OPTIMIZER MODE OUT_DIR [K] [N]
MODE: "full" trains steps 0..N; "first" trains 0..K then saves a checkpoint and stops;
"resume" loads that checkpoint in this new process and trains K..N. Each run writes the loss
of every step it ran (exact float64 values as hex) and its final weights.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

import amber


def build(optimizer_name: str) -> tuple[nn.Module, torch.optim.Optimizer, object]:
    model = nn.Sequential(
        nn.Linear(8, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 3)
    )
    if optimizer_name == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True)
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=5, gamma=0.5)
    return model, optimizer, scheduler


def main() -> None:
    optimizer_name, mode, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    k, n = int(sys.argv[4]), int(sys.argv[5])
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    # The data is fixed by its own generator; the run's randomness comes from the globals.
    data_rng = torch.Generator().manual_seed(1234)
    x = torch.randn(128, 8, generator=data_rng)
    y = torch.randint(0, 3, (128,), generator=data_rng)
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    model, optimizer, scheduler = build(optimizer_name)
    start = 0
    checkpoint = out / "run.ckpt.amber"
    if mode == "resume":
        restored = amber.load_checkpoint(
            checkpoint, model=model, optimizer=optimizer, scheduler=scheduler
        )
        start = restored.step
    stop = k if mode == "first" else n
    losses = []
    model.train()
    for _ in range(start, stop):
        batch = torch.randperm(128)[:32]  # torch's global generator
        noise = float(np.random.normal(scale=0.01))  # numpy's
        scale = 1.0 + random.random() * 0.01  # python's
        out_logits = model(x[batch] * scale + noise)
        loss = nn.functional.cross_entropy(out_logits, y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(float(loss.item()).hex())
    if mode == "first":
        amber.save_checkpoint(
            checkpoint,
            model=model,
            optimizer=optimizer,
            scheduler=scheduler,
            step=stop,
            extra={"note": "mid-run"},
        )
    amber.save(model.state_dict(), out / f"{mode}.weights.amber")
    (out / f"{mode}.losses.json").write_text(json.dumps(losses))


if __name__ == "__main__":
    main()
