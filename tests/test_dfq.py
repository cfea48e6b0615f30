"""Data-free-quantization extras beside cross-layer equalization (issue #15): high-bias
absorption (``passes.absorb``) and equalization through ReLU6 (``passes.equalize``).

A small CNN with BatchNorm statistics from MNIST digits, some of whose BatchNorm shifts are
raised so their channels never reach zero (what absorption moves), converted to float: the
graph's output must not move, on the calibration data, against the graph without the pass.
"""

from __future__ import annotations

import contextlib
import io

import keras
import numpy as np
import pytest

import quantkit
from benchmarks.zoo.applications import batchnorm_from_data
from benchmarks.zoo.mnist import digits
from quantkit.accuracy import channel_minima
from quantkit.litert import run_float
from quantkit.passes import absorb
from quantkit.types import OpType

CALIBRATION = 48


def _model(activation: str = "relu") -> keras.Model:
    keras.utils.set_random_seed(5)
    layers = keras.layers
    act = layers.ReLU if activation == "relu" else (lambda: layers.ReLU(6.0))
    inputs = keras.Input((28, 28, 1))
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = act()(layers.BatchNormalization()(layers.Conv2D(8, 3, strides=2)(x)))
    x = act()(layers.BatchNormalization(name="dw_bn")(
        layers.DepthwiseConv2D(3, padding="same")(x)))
    x = act()(layers.BatchNormalization(name="pw_bn")(layers.Conv2D(16, 1)(x)))
    x = layers.GlobalAveragePooling2D()(x)
    model = batchnorm_from_data(keras.Model(inputs, layers.Dense(10)(x)),
                                digits(256, "train", start=1000))
    # high biases: half the channels shifted up by 8 standard deviations (most never reach zero)
    for name, channels in (("dw_bn", 8), ("pw_bn", 16)):
        bn = model.get_layer(name)
        raised = np.where(np.arange(channels) % 2 == 0, 8.0, 0.0).astype(np.float32)
        bn.beta.assign(bn.beta.numpy() + raised * bn.gamma.numpy())
    return model


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def calibration():
    return digits(CALIBRATION, "train")


def _converter(model, calibration, **attributes):
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    converter.representative_dataset = lambda: ([x[None]] for x in calibration)
    converter.calibration = quantkit.CalibrationOptions(progress=False)
    for name, value in attributes.items():
        setattr(converter, name, value)
    return converter


def _float_outputs(model, calibration, **attributes) -> np.ndarray:
    with contextlib.redirect_stdout(io.StringIO()):
        tflite = _converter(model, calibration, **attributes).convert()
    return run_float(tflite, calibration)


def test_absorption_pairs(model, calibration):
    """Only pairs a shift passes exactly: depthwise → 1×1 pointwise, pointwise → dense
    through the mean; not conv → depthwise 3×3 SAME (its padding reads zeros)."""
    graph = _converter(model, calibration, cross_layer_equalization=True)._float_graphs()[0]
    kinds = [(a.type, b.type) for a, b in absorb.absorbable(graph)]
    assert kinds == [(OpType.DEPTHWISE_CONV_2D, OpType.CONV_2D),
                     (OpType.CONV_2D, OpType.FULLY_CONNECTED)]


def test_absorption_is_exact_in_float_and_narrows_ranges(model, calibration):
    """The float outputs on the calibration data stay those of the equalized graph (1e-5 of
    their peak), and the absorbed tensors' ranges shrink: their channel minima become 0,
    the raised channels' minima move to 0 (by what was absorbed)."""
    plain = _float_outputs(model, calibration, cross_layer_equalization=True)
    absorbed = _float_outputs(model, calibration, cross_layer_equalization=True,
                              high_bias_absorption=True)
    assert np.ptp(plain) > 1.0  # the outputs follow the input
    np.testing.assert_allclose(absorbed, plain, rtol=0, atol=1e-5 * np.abs(plain).max())

    before = _converter(model, calibration, cross_layer_equalization=True)._float_graphs()[0]
    after = _converter(model, calibration, cross_layer_equalization=True,
                       high_bias_absorption=True)._float_graphs()[0]
    tensors = [a.outputs[0] for a, _ in absorb.absorbable(before)]
    low_before = channel_minima(before, tensors, lambda: ([x[None]] for x in calibration))
    names = [t.name for t in tensors]
    low_after = channel_minima(after, [t for t in after.tensors() if t.name in names],
                               lambda: ([x[None]] for x in calibration))
    for name in names:
        assert (low_before[name] > 0.1).sum() >= 2, (name, low_before[name])
        np.testing.assert_allclose(low_after[name], 0.0, atol=1e-4)


@pytest.fixture(scope="module")
def relu6_model():
    return _model("relu6")


def test_relu6_equalization_is_exact_in_float(relu6_model, calibration):
    """Equalizing through RELU6 scales those layers and bounds each channel by its own
    MINIMUM: the float outputs stay the plain graph's (1e-5 of their peak)."""
    plain = _float_outputs(relu6_model, calibration)
    equalized = _float_outputs(relu6_model, calibration, cross_layer_equalization=True,
                               equalize_relu6=True)
    assert np.ptp(plain) > 1.0
    np.testing.assert_allclose(equalized, plain, rtol=0, atol=1e-5 * np.abs(plain).max())
    graph = _converter(relu6_model, calibration, cross_layer_equalization=True,
                       equalize_relu6=True)._float_graphs()[0]
    bounds = [op.inputs[1].data for op in graph.ops if op.type == OpType.MINIMUM]
    assert len(bounds) == 3  # conv, depthwise and pointwise: each the first of a pair
    assert all(b.shape in ((8,), (16,)) and np.ptp(b) > 0.1 for b in bounds)
    without = _converter(relu6_model, calibration, cross_layer_equalization=True)
    assert not any(op.type == OpType.MINIMUM for op in without._float_graphs()[0].ops)


def test_relu6_equalization_runs_in_int8(relu6_model, calibration):
    """LiteRT runs the int8 MINIMUM with its per-channel constant; the outputs follow the
    float model's (held-out digits)."""
    from quantkit.metrics import sqnr_db

    x_test = digits(100, "test")
    reference = relu6_model.predict(x_test, verbose=0)
    converter = _converter(relu6_model, calibration, cross_layer_equalization=True,
                           equalize_relu6=True)
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    converter.target_spec.supported_ops = [quantkit.OpsSet.TFLITE_BUILTINS_INT8]
    with contextlib.redirect_stdout(io.StringIO()):
        tflite = converter.convert()
    from ai_edge_litert.interpreter import Interpreter

    ops = [d["op_name"] for d in Interpreter(model_content=tflite)._get_ops_details()]
    assert ops.count("MINIMUM") == 3, ops
    out = run_float(tflite, x_test)
    assert sqnr_db(reference, out) >= 25.0, sqnr_db(reference, out)
    assert np.ptp(reference) > 1.0


def test_minimum_caps_its_input_range():
    """A tensor read only by ``MINIMUM(t, c)`` gets the range ``[lo, max c]`` (values above
    never pass); read by another op too, or as a model output, it keeps its own."""
    from quantkit.ir.graph import Graph, Op, Tensor, const
    from quantkit.quantize.params import capped_ranges

    f32 = np.dtype(np.float32)
    x, t, y, z = (Tensor(n, f32, (1, 4)) for n in "xtyz")
    bound = const("bound", np.array([1.0, 2.0, 3.0, 0.5], np.float32))
    relu = Op(OpType.RELU, [x], [t])
    clamp = Op(OpType.MINIMUM, [t, bound], [y])
    ranges = {"x": (-1.0, 9.0), "t": (0.0, 9.0), "y": (0.0, 3.0)}
    graph = Graph([relu, clamp], [x], [y])
    assert capped_ranges(graph, ranges) == {**ranges, "t": (0.0, 3.0)}
    also = Op(OpType.RELU, [t], [z])
    for other in (Graph([relu, clamp, also], [x], [y, z]), Graph([relu, clamp], [x], [y, t])):
        assert capped_ranges(other, ranges) == ranges
