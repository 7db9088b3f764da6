"""User classes for the trust tests: module-level, as amber requires."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class NeuralNetwork:
    """The documented example: a user class holding a dict of weights."""

    def __init__(self, sizes: tuple[int, ...] = (4, 3)) -> None:
        rng = np.random.default_rng(0)
        self.weights = {
            "hidden": rng.standard_normal(sizes),
            "output": rng.standard_normal((sizes[1], 1)),
        }
        self.name = "tiny"

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.tanh(x @ self.weights["hidden"]) @ self.weights["output"]


class Color(enum.Enum):
    RED = 1
    BLUE = 2


@dataclass
class Config:
    lr: float = 0.1
    layers: list[int] = field(default_factory=lambda: [4, 2])
    color: Color = Color.RED


class Slotted:
    __slots__ = ("a", "b")

    def __init__(self) -> None:
        self.a = 1
        self.b = np.arange(3)


def scale(x: np.ndarray) -> np.ndarray:
    return x * 2


class Activated:
    """A user model that keeps a function it calls (trusted with callables=["activation"])."""

    def __init__(self, activation=np.tanh) -> None:
        self.activation = activation
        self.scale = 2.0

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.activation(x) * self.scale
