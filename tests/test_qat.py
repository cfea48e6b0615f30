"""Quantization-aware trained models (``tfmot.quantization.keras.quantize_model``).

The FakeQuant ops' trained ranges become the quantization parameters: int8 needs no
representative dataset, as in TF; float32 keeps each activation FakeQuant as QUANTIZE →
DEQUANTIZE, as TF does, so it computes what the trained model computes. The model is a small
CNN trained a few seconds on MNIST (seeded); TF's converter on the same model is the yardstick.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

import quantkit
from benchmarks.zoo import mnist
from quantkit.quantize.fake_quant import fake_quant
from quantkit.tflite_io.reader import op_types, read_model
from quantkit.types import ConversionError
from tests.side_by_side import SQNR_MARGIN_DB, assert_input_matters, measure


def _import_tfmot():
    """tfmot sets TF_USE_LEGACY_KERAS=1 when imported, which turns ``tf.keras`` into Keras 2 if
    nothing resolved it yet: resolve it first (Keras 3 for the rest of the suite), and undo the
    variable."""
    tf.keras.version()
    before = os.environ.get("TF_USE_LEGACY_KERAS")
    import tensorflow_model_optimization as tfmot
    import tf_keras
    if before is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)
    else:
        os.environ["TF_USE_LEGACY_KERAS"] = before
    return tfmot, tf_keras


@pytest.fixture(scope="module")
def qat():
    """A QAT CNN (conv + BatchNorm + ReLU, a residual conv and Add, pool, two dense) trained
    one epoch on 600 MNIST digits; test rows and the QAT model's outputs on them."""
    tfmot, tf_keras = _import_tfmot()
    x_train, y_train, x_test, _ = mnist.load_mnist()  # loaded once per process, shuffled
    x, test = x_train[:600] / np.float32(255), x_test[:100] / np.float32(255)
    tf_keras.utils.set_random_seed(0)
    layers = tf_keras.layers
    image = layers.Input((28, 28, 1))
    h = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same")(image)))
    h = layers.Add()([h, layers.Conv2D(8, 3, padding="same", activation="relu")(h)])
    h = layers.Dense(16, activation="relu")(layers.Flatten()(layers.MaxPooling2D()(h)))
    model = tfmot.quantization.keras.quantize_model(
        tf_keras.Model(image, layers.Dense(10)(h)))
    model.compile("adam", tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y_train[:600], epochs=1, batch_size=32, verbose=0)
    return model, test, [model(test, training=False).numpy()]


def _converted(module, model, int8: bool, io: tf.DType = tf.float32) -> bytes:
    converter = module.TFLiteConverter.from_keras_model(model)
    if int8:
        converter.optimizations = [module.Optimize.DEFAULT]  # no representative_dataset
        converter.inference_input_type = converter.inference_output_type = io
    return converter.convert()


def test_fake_quant_rounds_as_tf():
    """Nudging and rounding match TF's kernel, per tensor (narrow or not, a range off zero)
    and per channel."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 2, (200,)).astype(np.float32)
    for lo, hi, narrow in [(-1.3, 2.7, False), (0.2, 3.0, False), (-2.0, -0.5, True)]:
        ours = fake_quant(x, lo, hi, 8, narrow)
        theirs = tf.quantization.fake_quant_with_min_max_vars(x, lo, hi, 8, narrow).numpy()
        assert np.abs(ours - theirs).max() <= 1e-6 * np.abs(theirs).max()
        assert len(np.unique(ours)) > 50  # the check sees the rounding, not a clamp
    w = rng.normal(size=(3, 3, 2, 5)).astype(np.float32)
    peak = np.abs(w).reshape(-1, 5).max(0)
    theirs = tf.quantization.fake_quant_with_min_max_vars_per_channel(w, -peak, peak, 8, True)
    assert np.abs(fake_quant(w, -peak, peak, 8, True) - theirs.numpy()).max() <= 1e-6


def test_qat_int8_uses_the_trained_ranges(qat):
    model, test, reference = qat
    ours = measure(_converted(quantkit, model, True), [test], reference)
    theirs = measure(_converted(tf.lite, model, True), [test], reference)
    assert_input_matters(ours)
    assert ours.sqnr >= 30.0, (ours, theirs)
    assert ours.sqnr >= theirs.sqnr - SQNR_MARGIN_DB, (ours, theirs)
    print(f"QAT int8: quantkit {ours}; TF {theirs}")
    assert len(ours.ops) <= len(theirs.ops), (ours.ops, theirs.ops)
    sub = read_model(ours.model).subgraphs[0]
    dense = next(op for op in sub.ops if op.type.name == "FULLY_CONNECTED")
    weights = sub.tensors[dense.inputs[1]]
    assert weights.dtype == np.int8 and len(weights.quant.scales) == 1  # as trained


def test_qat_int8_model_io_without_data(qat):
    """int8 model inputs and outputs need no representative dataset either (TF's the same)."""
    model, test, reference = qat
    ours = measure(_converted(quantkit, model, True, tf.int8), [test], reference)
    assert_input_matters(ours)
    assert ours.sqnr >= 30.0, ours
    assert "QUANTIZE" not in ours.ops and "DEQUANTIZE" not in ours.ops, ours.ops


def test_qat_float32_keeps_the_fake_quant_as_tf(qat):
    model, test, reference = qat
    ours = measure(_converted(quantkit, model, False), [test], reference)
    assert_input_matters(ours)
    print(f"QAT float32: quantkit {ours}")
    assert ours.sqnr >= 60.0, ours  # the trained model's clamps and rounding included
    assert "CUSTOM" not in ours.ops and ours.ops.count("QUANTIZE") == ours.ops.count("DEQUANTIZE")
    assert ours.ops.count("QUANTIZE") == 6  # input, 2 convs, add, 2 dense; pooling shares


def test_missing_ranges_are_named():
    """int8 without a representative dataset needs a trained range on every activation."""
    w = tf.constant(np.random.default_rng(0).normal(size=(3, 3, 1, 4)).astype(np.float32))

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="x")])
    def f(x):
        x = tf.quantization.fake_quant_with_min_max_vars(x, 0.0, 1.0)
        return tf.nn.relu(tf.nn.conv2d(x, w, 1, "VALID"))

    converter = quantkit.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    with pytest.raises(ConversionError, match=r"no range: 'Relu'.*representative_dataset"):
        converter.convert()
