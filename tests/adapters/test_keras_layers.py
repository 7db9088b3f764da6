"""Every built-in Keras layer: built in a small model, saved, loaded, outputs compared
bit for bit. Every layer class of ``keras.layers`` is accounted for: tested, refused by
the allowlist (``DENIED_LAYERS``, with why), or left out here with the reason."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import amber
from amber.adapters.keras_names import CLASSES, DENIED_LAYERS
from amber.errors import SerializationError
from tests.adapters.keras_models import keras

L = keras.layers
SEQ = (5, 4)
IMG = (8, 8, 3)
VOL = (4, 4, 4, 2)


def _rnn(cell: Any) -> Any:
    return lambda: L.RNN(cell())


# name -> (a factory of the layer, the input shapes, the input dtype)
SPECS: dict[str, tuple[Any, list[tuple[int, ...]], str]] = {}


def spec(names: str, factory: Any, shapes: list[tuple[int, ...]], dtype: str = "float32") -> None:
    for name in names.split():
        SPECS[name] = (factory, shapes, dtype)


def words(text: str) -> list[str]:
    return text.split()


def kw(name: str, **kwargs: Any) -> Any:
    return lambda: getattr(L, name)(**kwargs)


for n in words("Activation"):
    spec(n, kw(n, activation="tanh"), [(4,)])
for n in words("ActivityRegularization BatchNormalization ELU Identity LayerNormalization"):
    spec(n, kw(n), [(4,)])
for n in words("LeakyReLU PReLU ReLU Softmax UnitNormalization RMSNormalization Masking"):
    spec(n, kw(n), [(4,)])
for n in words("Add Average Maximum Minimum Multiply Subtract Concatenate"):
    spec(n, kw(n), [(4,), (4,)])
spec("Dot", kw("Dot", axes=1), [(4,), (4,)])
for n in words("Attention AdditiveAttention"):
    spec(n, kw(n), [(3, 4), (3, 4)])
spec("MultiHeadAttention", kw("MultiHeadAttention", num_heads=2, key_dim=2), [(3, 4), (3, 4)])
spec(
    "GroupQueryAttention",
    kw("GroupQueryAttention", head_dim=2, num_query_heads=2, num_key_value_heads=1),
    [(3, 4), (3, 4)],
)
for dim, shape in ((1, (8, 3)), (2, IMG), (3, VOL)):
    for base in ("AdaptiveAveragePooling", "AdaptiveMaxPooling"):
        spec(f"{base}{dim}D", kw(f"{base}{dim}D", output_size=2), [shape])
    for n in words(
        f"AveragePooling{dim}D AvgPool{dim}D MaxPooling{dim}D MaxPool{dim}D "
        f"GlobalAveragePooling{dim}D GlobalAvgPool{dim}D GlobalMaxPooling{dim}D "
        f"GlobalMaxPool{dim}D UpSampling{dim}D ZeroPadding{dim}D SpatialDropout{dim}D"
    ):
        args: dict[str, Any] = {"rate": 0.3} if n.startswith("Spatial") else {}
        if n.startswith(("Average", "AvgPool", "MaxPool")):
            args["pool_size"] = 2
        spec(n, kw(n, **args), [shape])
    spec(f"Cropping{dim}D", kw(f"Cropping{dim}D", cropping=1), [shape])
    for n in words(f"Conv{dim}D Convolution{dim}D Conv{dim}DTranspose Convolution{dim}DTranspose"):
        spec(n, kw(n, filters=2, kernel_size=3), [shape])
for dim, shape in ((1, (8, 3)), (2, IMG)):
    for n in words(f"SeparableConv{dim}D SeparableConvolution{dim}D"):
        spec(n, kw(n, filters=2, kernel_size=3), [shape])
    spec(f"DepthwiseConv{dim}D", kw(f"DepthwiseConv{dim}D", kernel_size=3), [shape])
spec("ConvLSTM1D", kw("ConvLSTM1D", filters=2, kernel_size=3), [(3, 8, 2)])
spec("ConvLSTM2D", kw("ConvLSTM2D", filters=2, kernel_size=3), [(3, 6, 6, 2)])
spec("ConvLSTM3D", kw("ConvLSTM3D", filters=1, kernel_size=3), [(2, 4, 4, 4, 1)])
spec("Dense", kw("Dense", units=3, activation="relu"), [(4,)])
spec("EinsumDense", kw("EinsumDense", equation="ab,bc->ac", output_shape=3), [(4,)])
for n in words("Dropout AlphaDropout GaussianDropout"):
    spec(n, kw(n, rate=0.3), [(4,)])
spec("GaussianNoise", kw("GaussianNoise", stddev=0.1), [(4,)])
spec("GroupNormalization", kw("GroupNormalization", groups=2), [(4,)])
spec("Discretization", kw("Discretization", bin_boundaries=[0.0, 1.0]), [(4,)])
spec("Normalization", kw("Normalization", mean=0.5, variance=2.0), [(4,)])
spec("Embedding", kw("Embedding", input_dim=10, output_dim=3), [(4,)], "int32")
spec("ReversibleEmbedding", kw("ReversibleEmbedding", input_dim=10, output_dim=3), [(4,)], "int32")
spec(
    "CategoryEncoding",
    kw("CategoryEncoding", num_tokens=10, output_mode="multi_hot"),
    [(4,)],
    "int32",
)
spec("Flatten", kw("Flatten"), [(2, 3)])
spec("Permute", kw("Permute", dims=(2, 1)), [(2, 3)])
spec("RepeatVector", kw("RepeatVector", n=2), [(4,)])
spec("Reshape", kw("Reshape", target_shape=(2, 2)), [(4,)])
for n in words("GRU LSTM SimpleRNN"):
    spec(n, kw(n, units=3), [SEQ])
spec("GRUCell", _rnn(lambda: L.GRUCell(3)), [SEQ])
spec("LSTMCell", _rnn(lambda: L.LSTMCell(3)), [SEQ])
spec("SimpleRNNCell", _rnn(lambda: L.SimpleRNNCell(3)), [SEQ])
spec("RNN", _rnn(lambda: L.SimpleRNNCell(2)), [SEQ])
spec("StackedRNNCells", lambda: L.RNN(L.StackedRNNCells([L.LSTMCell(3), L.GRUCell(2)])), [SEQ])
spec("Bidirectional", lambda: L.Bidirectional(L.LSTM(3)), [SEQ])
spec("TimeDistributed", lambda: L.TimeDistributed(L.Dense(3)), [SEQ])
spec("SpectralNormalization", lambda: L.SpectralNormalization(L.Dense(3)), [(4,)])
spec("Pipeline", lambda: L.Pipeline([L.Rescaling(2.0), L.Dense(2)]), [(4,)])
spec(
    "MelSpectrogram",
    kw("MelSpectrogram", fft_length=16, sequence_stride=8, sequence_length=16, num_mel_bins=4),
    [(64,)],
)
spec("STFTSpectrogram", kw("STFTSpectrogram", frame_length=16, frame_step=8), [(64, 1)])
# Image preprocessing and augmentation (inference: deterministic or the identity).
spec("Rescaling", kw("Rescaling", scale=1 / 255), [IMG])
spec("Resizing", kw("Resizing", height=4, width=4), [IMG])
spec("CenterCrop", kw("CenterCrop", height=4, width=4), [IMG])
spec("RandomCrop", kw("RandomCrop", height=4, width=4), [IMG])
for n in words(
    "AugMix AutoContrast CutMix MixUp RandAugment RandomColorJitter "
    "RandomElasticTransform RandomErasing RandomFlip RandomGaussianBlur RandomGrayscale "
    "RandomInvert RandomPerspective Solarization"
):
    spec(n, kw(n), [IMG])
for n in words("RandomBrightness RandomContrast RandomRotation RandomZoom"):
    spec(n, kw(n, factor=0.1) if n != "RandomZoom" else kw(n, height_factor=0.1), [IMG])
for n in words("RandomColorDegeneration RandomSaturation RandomSharpness RandomHue"):
    spec(n, kw(n, factor=0.5), [IMG])
spec("RandomPosterization", kw("RandomPosterization", factor=(1, 4)), [IMG])
spec("RandomTranslation", kw("RandomTranslation", height_factor=0.1, width_factor=0.1), [IMG])
spec(
    "ContrastLimitedAdaptiveHistogramEqualization",
    kw("ContrastLimitedAdaptiveHistogramEqualization", value_range=(0, 255)),
    [IMG],
)

# Allowed layers not built here, and why.
LEFT_OUT = {
    "InputLayer": "in every model of this test (keras.Input)",
    "HashedCrossing": "crosses scalar features given as a tuple; a model input of that shape "
    "is not expressible with keras.Input on the torch backend",
    "MaxNumBoundingBoxes": "operates on bounding-box dictionaries, not tensors",
    "Hashing": "needs TensorFlow, which is not installed here",
    "Equalization": "Keras 3.15 cannot build it into a functional model on the torch backend "
    "(its output 'is part of a cycle')",
    "RandomShear": "Keras 3.15 cannot rebuild it from its own get_config() (x_factor is "
    "written as [-f, f], which from_config refuses); keras.saving.load_model fails the same",
}


def layer_classes() -> list[str]:
    return sorted(n for n, obj in vars(L).items() if inspect.isclass(obj) and n[0].isupper())


def test_every_layer_is_accounted_for() -> None:
    """Each class of keras.layers is tested, refused (with why) or left out (with why)."""
    missing = [
        n
        for n in layer_classes()
        if n not in SPECS and n not in DENIED_LAYERS and n not in LEFT_OUT
    ]
    assert not missing, f"layers neither tested nor listed: {missing}"
    allowed = CLASSES["keras.layers"]
    assert not set(DENIED_LAYERS) & allowed
    assert set(SPECS) <= allowed and set(LEFT_OUT) <= allowed


def _inputs(shapes: list[tuple[int, ...]], dtype: str) -> tuple[list[Any], list[Any]]:
    rng = np.random.default_rng(0)
    tensors = [keras.Input(shape, dtype=dtype) for shape in shapes]
    if dtype.startswith("int"):
        values = [rng.integers(0, 10, (2, *s)).astype(dtype) for s in shapes]
    else:
        values = [rng.uniform(0, 1, (2, *s)).astype(dtype) for s in shapes]
    return tensors, values


@pytest.mark.parametrize("name", sorted(SPECS))
def test_layer_round_trips_bit_for_bit(name: str, tmp_path: Path) -> None:
    factory, shapes, dtype = SPECS[name]
    keras.utils.set_random_seed(0)
    tensors, values = _inputs(shapes, dtype)
    layer = factory()
    if name in ("MultiHeadAttention", "GroupQueryAttention"):
        out = layer(tensors[0], tensors[1])
    else:
        out = layer(tensors if len(tensors) > 1 else tensors[0])
    model = keras.Model(tensors, out)
    amber.save(model, tmp_path / "m.amber")
    loaded = amber.load(tmp_path / "m.amber")
    feed = values if len(values) > 1 else values[0]
    expected = keras.ops.convert_to_numpy(model(feed, training=False))
    got = keras.ops.convert_to_numpy(loaded(feed, training=False))
    assert got.dtype == expected.dtype and np.array_equal(got, expected, equal_nan=True)
    assert [v.shape for v in loaded.weights] == [v.shape for v in model.weights]


@pytest.mark.parametrize("name", sorted(set(DENIED_LAYERS) & set(layer_classes())))
def test_denied_layer_is_refused_or_not_a_layer(name: str, tmp_path: Path) -> None:
    """Denied layers that can be built here are refused at save, naming themselves."""
    builders = {
        "Lambda": lambda: L.Lambda(lambda t: t * 2),
        "StringLookup": lambda: L.StringLookup(vocabulary=["a", "b"]),
        "IntegerLookup": lambda: L.IntegerLookup(vocabulary=[1, 2]),
    }
    if name not in builders:
        pytest.skip(f"{name} is not built here: {DENIED_LAYERS[name]}")
    if name in ("StringLookup", "IntegerLookup"):
        pytest.importorskip("tensorflow", reason=f"{name} needs TensorFlow, not installed here")
    dtype = {"StringLookup": "string", "IntegerLookup": "int64"}.get(name, "float32")
    tensor = keras.Input((2,), dtype=dtype)
    model = keras.Model(tensor, builders[name]()(tensor))
    with pytest.raises(SerializationError, match=name):
        amber.save(model, tmp_path / "m.amber")
