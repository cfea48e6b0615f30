"""AdaRound (``quantize.adaround``, ``WeightRounding.ADAROUND``): a hand-checked layer, the
layers' input rows against TF's convolutions, and int8 models end to end (issue #15)."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import tensorflow as tf

import quantkit
from benchmarks.zoo.mnist import digits
from quantkit.ir.graph import Op, Tensor, const
from quantkit.ir.options import Conv2DOptions, DepthwiseConv2DOptions
from quantkit.litert import run_float
from quantkit.metrics import sqnr_db
from quantkit.quantize import adaround as ar
from quantkit.quantize import math as qm
from quantkit.types import OpType, Padding
from tests.test_dfq import _model


def test_golden_two_correlated_inputs():
    """``w = [0.4, 0.45]``, ``s = 1``, two equal inputs (``G = [[1, 1], [1, 1]]``): nearest
    rounds both down, output error ``(0.4 + 0.45)² = 0.7225``; one up and one down errs
    ``(1 − 0.85)² = 0.0225``, which AdaRound finds."""
    w, g = np.array([[0.4, 0.45]]), np.ones((2, 2))
    q = ar.adaround_rows(w, np.array([1.0]), g, 127)
    assert sorted(q[0].tolist()) == [0.0, 1.0]
    assert ar.layer_error(q - w, g)[0] == pytest.approx(0.0225)
    assert ar.layer_error(np.round(w) - w, g)[0] == pytest.approx(0.7225)
    # uncorrelated inputs (G = I): each weight alone, nearest is best and is kept
    np.testing.assert_array_equal(ar.adaround_rows(w, np.array([1.0]), np.eye(2), 127),
                                  [[0.0, 0.0]])


def _conv(depthwise: bool, padding: Padding, stride: int) -> tuple[Op, np.ndarray]:
    rng = np.random.default_rng(1)
    x = np.maximum(rng.normal(size=(3, 8, 8, 4)), 0).astype(np.float32)
    if depthwise:
        w = rng.normal(size=(1, 3, 3, 4)).astype(np.float32)
        options = DepthwiseConv2DOptions(padding, stride, stride)
        kind = OpType.DEPTHWISE_CONV_2D
    else:
        w = rng.normal(size=(5, 3, 3, 4)).astype(np.float32)
        options = Conv2DOptions(padding, stride, stride)
        kind = OpType.CONV_2D
    source = Tensor("x", np.dtype(np.float32), (None, 8, 8, 4))
    op = Op(kind, [source, const("w", w)], [Tensor("y", np.dtype(np.float32), None)], options)
    return op, x


@pytest.mark.parametrize("depthwise", [False, True])
@pytest.mark.parametrize("padding,stride", [(Padding.SAME, 2), (Padding.VALID, 1)])
def test_patches_reproduce_the_convolution(depthwise, padding, stride):
    """The rows AdaRound's Gram matrix is built from, times the weights, are TF's
    convolution (SAME padding, 8 pixels, stride 2: a pad of one, after, as TFLite splits it)."""
    op, x = _conv(depthwise, padding, stride)
    w = op.inputs[1].data
    rows = ar.patches(op, x)
    pad = "SAME" if padding == Padding.SAME else "VALID"
    if depthwise:
        expected = tf.nn.depthwise_conv2d(x, np.transpose(w, (1, 2, 3, 0)),
                                          [1, stride, stride, 1], pad).numpy()
        got = np.einsum("rck,ck->rc", rows, ar._rows(op, w))
    else:
        expected = tf.nn.conv2d(x, np.transpose(w, (1, 2, 3, 0)), stride, pad).numpy()
        got = rows @ ar._rows(op, w).T
    np.testing.assert_allclose(got, expected.reshape(len(got), -1), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("depthwise", [False, True])
def test_layer_error_never_above_nearest(depthwise):
    """On a layer with real inputs: each integer is ⌊w/s⌋ or ⌈w/s⌉, and the layer's output
    error ``‖W·x − W̃·x‖²`` is at most nearest rounding's, and lower in total."""
    op, x = _conv(depthwise, Padding.SAME, 1)
    w = op.inputs[1].data * 0.05
    op.inputs[1] = const("w", w)
    axis = 3 if depthwise else 0
    params = qm.weight_params(w, axis)
    g = ar.gram(op, x)
    q = ar.adaround_weights(op, params, g)
    near = qm.quantize_weights(w, params)
    s = np.asarray(params.scales).reshape([-1 if d == axis else 1 for d in range(4)])
    assert np.all((q == np.floor(w / s)) | (q == np.ceil(w / s)))
    rows = ar._rows(op, w)
    scale = np.asarray(params.scales)[:, None]
    learned = ar.layer_error(ar._rows(op, q.astype(np.float64)) * scale - rows, g)
    nearest = ar.layer_error(ar._rows(op, near.astype(np.float64)) * scale - rows, g)
    assert np.all(learned <= nearest * (1 + 1e-9))
    assert learned.sum() < 0.9 * nearest.sum(), (learned.sum(), nearest.sum())
    assert np.any(q != near)


@pytest.fixture(scope="module")
def model():
    return _model()


def _int8(model, calibration, rounding, per_tensor=False, recipe=None) -> bytes:
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in calibration)
    converter.target_spec.supported_ops = [quantkit.OpsSet.TFLITE_BUILTINS_INT8]
    converter.calibration = quantkit.CalibrationOptions(progress=False,
                                                        weight_rounding=rounding)
    converter._experimental_disable_per_channel = per_tensor
    if recipe is not None:
        converter.recipe = recipe
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


@pytest.mark.parametrize("per_tensor", [False, True])
def test_adaround_int8_model_end_to_end(model, per_tensor):
    """The AdaRound int8 model runs in LiteRT; its output SQNR on held-out digits is at
    least nearest rounding's, by a margin on this model (and a useful model's)."""
    calibration, x_test = digits(64, "train"), digits(200, "test")
    reference = model.predict(x_test, verbose=0)
    assert np.ptp(reference) > 1.0
    nearest, learned = (sqnr_db(reference, run_float(_int8(model, calibration, r, per_tensor),
                                                     x_test))
                        for r in quantkit.WeightRounding)
    assert learned >= max(nearest + 0.5, 25.0), (nearest, learned)  # measured: +1.9, +2.1


def test_recipe_selects_adaround_per_op(model):
    """A recipe rule rounds one layer by AdaRound: only its weights differ from nearest."""
    from ai_edge_litert.interpreter import Interpreter

    calibration = digits(32, "train")
    rule = quantkit.Rule(quantkit.Select(op_type="DEPTHWISE_CONV_2D"),
                         quantkit.Settings(weight_rounding=quantkit.WeightRounding.ADAROUND))
    models = [_int8(model, calibration, quantkit.WeightRounding.NEAREST, recipe=r)
              for r in (None, quantkit.Recipe((rule,)))]

    def weights(tflite: bytes) -> dict[str, np.ndarray]:
        interpreter = Interpreter(model_content=tflite)
        return {d["name"]: interpreter.get_tensor(d["index"])
                for d in interpreter.get_tensor_details()
                if d["dtype"] == np.int8 and len(d["shape"]) == 4 and "filter" in d["name"]}

    plain, chosen = (weights(m) for m in models)
    changed = sorted(name for name in plain if np.any(plain[name] != chosen[name]))
    assert changed and all("depthwise" in name for name in changed), changed
    assert quantkit.Recipe.from_json(quantkit.Recipe((rule,)).to_json()).rules == (rule,)


def test_cli_weight_rounding(model):
    from quantkit.cli import build_parser
    from quantkit.cli.convert import configure
    from quantkit.presets import Preset

    args = build_parser().parse_args(["convert", "m.keras", "--weight-rounding", "adaround",
                                      "--no-progress"])
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    configure(converter, Preset.INT8, args, lambda: iter([]))
    assert converter.calibration.weight_rounding is quantkit.WeightRounding.ADAROUND
    with pytest.raises(SystemExit):
        build_parser().parse_args(["convert", "m.keras", "--weight-rounding", "stochastic"])


def test_adaround_options_errors(model):
    """A misspelt rounding is named; AdaRound without calibration data (dynamic range) is an
    options error, not a silent nearest rounding."""
    from quantkit.types import ConversionError

    assert quantkit.CalibrationOptions(weight_rounding="adaround").weight_rounding \
        is quantkit.WeightRounding.ADAROUND
    with pytest.raises(ConversionError, match=r"\[options\].*weight_rounding='up'"):
        quantkit.CalibrationOptions(weight_rounding="up")
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    converter.calibration = quantkit.CalibrationOptions(
        progress=False, weight_rounding=quantkit.WeightRounding.ADAROUND)
    with pytest.raises(ConversionError, match=r"ADAROUND .*representative_dataset"):
        converter.convert()
