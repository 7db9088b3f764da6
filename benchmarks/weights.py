"""Deterministic float32 weights shaped like a small decoder-only transformer."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# Parameters per layer are about 12 * hidden**2 (attention 4 d^2, MLP 8 d^2) and the
# embedding has vocab = 16 * hidden rows, so 4 layers hold ~64 * hidden**2 float32 values.
LAYERS = 4
VOCAB_PER_HIDDEN = 16
MLP_RATIO = 4
# Hidden sizes are multiples of this, as in real models (and keeps rows cache-line sized).
HIDDEN_STEP = 64


@dataclass(frozen=True)
class ModelShape:
    hidden: int
    layers: int
    vocab: int
    ffn: int

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        """(name, shape) of every tensor, in state-dict order."""
        d, f = self.hidden, self.ffn
        out: list[tuple[str, tuple[int, ...]]] = [("embed_tokens.weight", (self.vocab, d))]
        for i in range(self.layers):
            p = f"layers.{i}."
            out += [(p + "input_layernorm.weight", (d,)), (p + "input_layernorm.bias", (d,))]
            for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
                out += [(p + f"attn.{proj}.weight", (d, d)), (p + f"attn.{proj}.bias", (d,))]
            out += [
                (p + "post_attention_layernorm.weight", (d,)),
                (p + "post_attention_layernorm.bias", (d,)),
                (p + "mlp.up_proj.weight", (f, d)),
                (p + "mlp.up_proj.bias", (f,)),
                (p + "mlp.down_proj.weight", (d, f)),
                (p + "mlp.down_proj.bias", (d,)),
            ]
        out += [("final_layernorm.weight", (d,)), ("final_layernorm.bias", (d,))]
        return out

    @property
    def nbytes(self) -> int:
        return sum(4 * math.prod(shape) for _, shape in self.tensors())

    def describe(self) -> str:
        return (
            f"hidden {self.hidden}, {self.layers} layers, vocab {self.vocab}, ffn {self.ffn}: "
            f"{len(self.tensors())} float32 tensors, {self.nbytes / 2**20:.1f} MiB"
        )


def shape_for(target_bytes: int) -> ModelShape:
    """The model shape whose weights come closest to ``target_bytes``."""
    hidden = round(math.sqrt(target_bytes / (4 * 16 * LAYERS)) / HIDDEN_STEP) * HIDDEN_STEP
    hidden = max(HIDDEN_STEP, hidden)
    vocab, ffn = VOCAB_PER_HIDDEN * hidden, MLP_RATIO * hidden
    base = ModelShape(hidden, 0, vocab, ffn).nbytes
    per_layer = ModelShape(hidden, 1, vocab, ffn).nbytes - base
    layers = max(1, round((target_bytes - base) / per_layer))
    return ModelShape(hidden, layers, vocab, ffn)


def generate(shape: ModelShape, seed: int = 0) -> dict[str, np.ndarray]:
    """Random N(0, 0.02) weights, the same for a given shape and seed."""
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for name, dims in shape.tensors():
        array = rng.standard_normal(dims, dtype=np.float32)
        array *= np.float32(0.02)  # in place: no second 1 GiB temporary
        weights[name] = array
    return weights
