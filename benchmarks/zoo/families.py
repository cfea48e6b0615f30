"""One small Keras model per layer family, for the family benchmark and tests.

Each family is a builder ``() -> keras.Model`` (seeded, random weights, BatchNorm statistics
drawn to look trained) and an input kind; ``data(family, n, seed)`` draws its inputs (float
samples from a normal distribution, token ids uniform over the vocabulary). The models are tiny
(tens of thousands of weights at most) so that converting one with both converters, in float32
and int8, takes about a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

from benchmarks.zoo.applications import randomize_batchnorm

L = keras.layers
VOCAB, SEQ, DIM = 50, 12, 16


@dataclass(frozen=True)
class Family:
    """A model family: its builder, input shape (no batch dim) and input kind."""

    name: str
    build: Callable[[], keras.Model]
    shape: tuple[int, ...]
    tokens: bool = False  # int32 token ids in [0, VOCAB) instead of float samples


def _seq(shape: tuple[int, ...], *layers: L.Layer, dtype: str = "float32") -> keras.Model:
    inputs = keras.Input(shape, dtype=dtype)
    x = inputs
    for layer in layers:
        x = layer(x)
    return keras.Model(inputs, x)


def _lambda(fn: Callable[[tf.Tensor], tf.Tensor]) -> L.Layer:
    return L.Lambda(fn)


# --- attention and transformers -------------------------------------------------------------
def _encoder_block(x: tf.Tensor, heads: int = 2, dim: int = DIM, ff: int = 32,
                   causal: bool = False) -> tf.Tensor:
    """Post-norm Transformer encoder block: MHA + residual + LayerNorm, FFN (GELU) + LayerNorm."""
    a = L.MultiHeadAttention(heads, dim // heads)(x, x, use_causal_mask=causal)
    x = L.LayerNormalization()(x + a)
    f = L.Dense(dim)(L.Dense(ff, activation="gelu")(x))
    return L.LayerNormalization()(x + f)


def mha() -> keras.Model:
    x = keras.Input((SEQ, DIM))
    return keras.Model(x, L.MultiHeadAttention(2, 8)(x, x))


def mha_causal() -> keras.Model:
    x = keras.Input((SEQ, DIM))
    return keras.Model(x, L.MultiHeadAttention(2, 8)(x, x, use_causal_mask=True))


def mha_padding_mask() -> keras.Model:
    """Self-attention with a padding mask input (int32 1 = attend, [batch, SEQ]); two inputs,
    so not in ``FAMILIES`` (whose benchmark feeds one): ``tests/test_families.py`` runs it."""
    x, keep = keras.Input((SEQ, DIM)), keras.Input((SEQ,), dtype="int32")
    mask = L.Lambda(lambda t: tf.cast(t[:, None, :], tf.bool))(keep)
    return keras.Model([x, keep], L.MultiHeadAttention(2, 8)(x, x, attention_mask=mask))


def padding_mask_data(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    keep = (rng.uniform(size=(n, SEQ)) > 0.3).astype(np.int32)
    keep[:, 0] = 1  # at least one position to attend to
    return [rng.normal(0, 1, (n, SEQ, DIM)).astype(np.float32), keep]


def transformer() -> keras.Model:
    x = keras.Input((SEQ, DIM))
    return keras.Model(x, _encoder_block(x))


def transformer_classifier() -> keras.Model:
    """Token + position embedding, two encoder blocks, mean pooling, a softmax head."""
    tokens = keras.Input((SEQ,), dtype="int32")
    x = PositionEmbedding()(L.Embedding(VOCAB, DIM)(tokens))
    x = _encoder_block(_encoder_block(x), causal=True)
    return keras.Model(tokens, L.Dense(5, activation="softmax")(L.GlobalAveragePooling1D()(x)))


def mobilevit() -> keras.Model:
    """MobileViT block: local convs, unfold 2×2 patches (attention across the 16 patches, per
    pixel position within a patch), a Transformer block, fold back, fuse with the input."""
    inputs = keras.Input((8, 8, 8))
    local = L.Conv2D(DIM, 1)(L.Conv2D(8, 3, padding="same", activation="swish")(inputs))
    p = L.Permute((2, 4, 1, 3, 5))(L.Reshape((4, 2, 4, 2, DIM))(local))
    p = L.Reshape((4, 16, DIM))(p)
    a = L.MultiHeadAttention(2, DIM // 2, attention_axes=(2,))(p, p)
    p = L.LayerNormalization()(p + a)
    p = L.LayerNormalization()(p + L.Dense(DIM)(L.Dense(32, activation="swish")(p)))
    folded = L.Reshape((8, 8, DIM))(L.Permute((3, 1, 4, 2, 5))(L.Reshape((2, 2, 4, 4, DIM))(p)))
    fused = L.Conv2D(8, 1, activation="swish")(folded)
    return keras.Model(inputs, L.Conv2D(8, 3, padding="same")(L.Concatenate()([inputs, fused])))


class PositionEmbedding(L.Layer):
    """A learned embedding per position, added to the input."""

    def build(self, input_shape):
        self.table = self.add_weight(shape=tuple(input_shape[1:]), initializer="random_normal")

    def call(self, x):
        return x + self.table


# --- embeddings -------------------------------------------------------------------------------
def embedding() -> keras.Model:
    return _seq((SEQ,), L.Embedding(VOCAB, DIM), L.GlobalAveragePooling1D(), L.Dense(4),
                dtype="int32")


def position_embedding() -> keras.Model:
    return _seq((SEQ,), L.Embedding(VOCAB, DIM), PositionEmbedding(), L.Dense(8),
                dtype="int32")


# --- convolutions -----------------------------------------------------------------------------
def conv1d() -> keras.Model:
    return _seq((16, 4), L.Conv1D(8, 3, padding="same", activation="relu"), L.Conv1D(4, 3))


def conv1d_transpose() -> keras.Model:
    return _seq((8, 4), L.Conv1DTranspose(6, 3, strides=2, padding="same"))


def conv2d_transpose() -> keras.Model:
    return _seq((6, 6, 3), L.Conv2DTranspose(5, 3, strides=2, padding="same", activation="relu"))


def separable_conv2d() -> keras.Model:
    return _seq((8, 8, 3), L.SeparableConv2D(8, 3, padding="same", activation="relu"))


def separable_conv1d() -> keras.Model:
    return _seq((16, 4), L.SeparableConv1D(8, 3, padding="same"))


def conv3d() -> keras.Model:
    return _seq((4, 6, 6, 2), L.Conv3D(4, 3, padding="same", activation="relu"),
                L.Conv3D(3, 2))


# --- activations and math ops ------------------------------------------------------------------
def _act(name: str) -> Callable[[], keras.Model]:
    return lambda: _seq((8, 8, 3), L.Conv2D(4, 3), L.Activation(name))


def gelu_tanh() -> keras.Model:
    return _seq((8, 8, 3), L.Conv2D(4, 3), _lambda(lambda x: tf.nn.gelu(x, approximate=True)))


def softmax_axis1() -> keras.Model:
    return _seq((6, 5), L.Dense(7), L.Softmax(axis=1))


def split() -> keras.Model:
    def fn(x):
        a, b, c = tf.split(x, [2, 4, 2], axis=-1)
        return tf.concat([b * 2.0, a + c], -1)
    return _seq((6, 8), L.Dense(8), _lambda(fn))


def argmax() -> keras.Model:
    def fn(x):
        return tf.cast(tf.argmax(x, axis=-1), tf.float32)
    return _seq((6, 5), L.Dense(7), _lambda(fn))


def where() -> keras.Model:
    return _seq((6, 5), L.Dense(7), _lambda(lambda x: tf.where(x > 0.2, x, 0.5 * x)))


def abs_() -> keras.Model:
    return _seq((6, 5), L.Dense(7), _lambda(tf.abs))


def pow_() -> keras.Model:
    return _seq((6, 5), L.Dense(7), _lambda(lambda x: tf.pow(tf.abs(x) + 0.5, 1.5)))


def log() -> keras.Model:
    return _seq((6, 5), L.Dense(7), _lambda(lambda x: tf.math.log(tf.abs(x) + 0.5)))


def reduce_min() -> keras.Model:
    return _seq((6, 5), L.Dense(7), _lambda(lambda x: tf.reduce_min(x, axis=1)))


# --- normalizations, pooling, reshapes, reductions --------------------------------------------
def unit_normalization() -> keras.Model:
    return _seq((6, 5), L.Dense(7), L.UnitNormalization())


def batch_normalization() -> keras.Model:
    return _seq((8, 8, 3), L.Conv2D(6, 3), L.BatchNormalization(), L.ReLU())


def layer_normalization() -> keras.Model:
    return _seq((6, 5), L.Dense(8), L.LayerNormalization())


def group_normalization() -> keras.Model:
    return _seq((8, 8, 3), L.Conv2D(8, 3), L.GroupNormalization(groups=2))


def pooling() -> keras.Model:
    return _seq((8, 8, 3), L.Conv2D(6, 3, padding="same"), L.MaxPooling2D(),
                L.AveragePooling2D(2), L.GlobalAveragePooling2D())


def pooling1d() -> keras.Model:
    return _seq((16, 4), L.Conv1D(6, 3), L.MaxPooling1D(), L.AveragePooling1D(2),
                L.GlobalMaxPooling1D())


def reshapes() -> keras.Model:
    return _seq((6, 4, 3), L.Permute((2, 1, 3)), L.Reshape((4, 18)), L.Dense(5), L.Flatten(),
                L.RepeatVector(2), L.Cropping1D((0, 1)))


def reductions() -> keras.Model:
    def fn(x):
        return tf.concat([tf.reduce_mean(x, 1), tf.reduce_max(x, 1), tf.reduce_sum(x, 1)], -1)
    return _seq((6, 5), L.Dense(7), _lambda(fn))


def unet() -> keras.Model:
    """Two levels down, one up with skip connections."""
    inputs = keras.Input((16, 16, 3))
    c1 = L.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    c2 = L.Conv2D(16, 3, padding="same", activation="relu")(L.MaxPooling2D()(c1))
    b = L.Conv2D(16, 3, padding="same", activation="relu")(L.MaxPooling2D()(c2))
    u2 = L.Concatenate()([L.Conv2DTranspose(16, 2, strides=2)(b), c2])
    u2 = L.Conv2D(16, 3, padding="same", activation="relu")(u2)
    u1 = L.Concatenate()([L.UpSampling2D()(u2), c1])
    u1 = L.Conv2D(8, 3, padding="same", activation="relu")(u1)
    return keras.Model(inputs, L.Conv2D(2, 1)(u1))


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("mha", mha, (SEQ, DIM)),
    Family("mha_causal_mask", mha_causal, (SEQ, DIM)),
    Family("transformer_block", transformer, (SEQ, DIM)),
    Family("mobilevit_block", mobilevit, (8, 8, 8)),
    Family("transformer_classifier", transformer_classifier, (SEQ,), tokens=True),
    Family("embedding", embedding, (SEQ,), tokens=True),
    Family("position_embedding", position_embedding, (SEQ,), tokens=True),
    Family("conv1d", conv1d, (16, 4)),
    Family("conv1d_transpose", conv1d_transpose, (8, 4)),
    Family("conv2d_transpose", conv2d_transpose, (6, 6, 3)),
    Family("separable_conv2d", separable_conv2d, (8, 8, 3)),
    Family("separable_conv1d", separable_conv1d, (16, 4)),
    Family("conv3d", conv3d, (4, 6, 6, 2)),
    Family("elu", _act("elu"), (8, 8, 3)),
    Family("selu", _act("selu"), (8, 8, 3)),
    Family("mish", _act("mish"), (8, 8, 3)),
    Family("gelu_tanh", gelu_tanh, (8, 8, 3)),
    Family("softmax_axis1", softmax_axis1, (6, 5)),
    Family("split", split, (6, 8)),
    Family("argmax", argmax, (6, 5)),
    Family("where", where, (6, 5)),
    Family("abs", abs_, (6, 5)),
    Family("pow", pow_, (6, 5)),
    Family("log", log, (6, 5)),
    Family("reduce_min", reduce_min, (6, 5)),
    Family("unit_normalization", unit_normalization, (6, 5)),
    Family("batch_normalization", batch_normalization, (8, 8, 3)),
    Family("layer_normalization", layer_normalization, (6, 5)),
    Family("group_normalization", group_normalization, (8, 8, 3)),
    Family("pooling2d", pooling, (8, 8, 3)),
    Family("pooling1d", pooling1d, (16, 4)),
    Family("reshapes", reshapes, (6, 4, 3)),
    Family("reductions", reductions, (6, 5)),
    Family("unet", unet, (16, 16, 3)),
)}


def build(name: str, seed: int = 0) -> keras.Model:
    """The family's model, seeded, with trained-looking BatchNorm statistics."""
    keras.utils.set_random_seed(seed)
    return randomize_batchnorm(FAMILIES[name].build(), seed)


def data(name: str, n: int, seed: int) -> np.ndarray:
    """``n`` inputs for the family (a batch): N(0, 1) floats or token ids."""
    family, rng = FAMILIES[name], np.random.default_rng(seed)
    if family.tokens:
        return rng.integers(0, VOCAB, (n, *family.shape)).astype(np.int32)
    return rng.normal(0, 1, (n, *family.shape)).astype(np.float32)
