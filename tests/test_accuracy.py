"""Cross-layer equalization, range methods and ``Optimize.ACCURACY`` end to end (issue #15).

One small depthwise-separable CNN with BatchNorm statistics from MNIST digits (no training:
the statistics make its outputs follow the input, ``benchmarks.zoo.applications``), converted
a few times; the references are the Keras model's outputs on held-out digits.
"""

from __future__ import annotations

import contextlib
import io

import keras
import numpy as np
import pytest
import tensorflow as tf

import quantkit
from benchmarks.zoo.applications import batchnorm_from_data
from benchmarks.zoo.mnist import digits
from quantkit.passes import equalize as eq
from quantkit.types import ConversionError, OpType
from tests.side_by_side import assert_input_matters, measure

CALIBRATION = 64
FLOOR_DB = 25.0  # int8 on this model: ≈ 30–40 dB


def _model() -> keras.Model:
    keras.utils.set_random_seed(3)
    layers = keras.layers
    inputs = keras.Input((28, 28, 1))
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, strides=2)(x)))
    x = layers.ReLU()(layers.BatchNormalization(name="dw_bn")(
        layers.DepthwiseConv2D(3, padding="same")(x)))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(16, 1, name="pw")(x)))
    x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(16, activation="relu")(x)
    model = batchnorm_from_data(keras.Model(inputs, layers.Dense(10)(x)),
                                digits(256, "train", start=1000))
    # Channels of very different scales between the depthwise and pointwise layers, as
    # training leaves them: depthwise channel c (after its BatchNorm) times k_c, the pointwise
    # layer's input c divided by k_c. ReLU(k·x) = k·ReLU(x): the float model is unchanged.
    k = np.exp(np.random.default_rng(0).normal(0.0, 1.5, 8)).astype(np.float32)
    bn, pw = model.get_layer("dw_bn"), model.get_layer("pw")
    bn.gamma.assign(bn.gamma.numpy() * k)
    bn.beta.assign(bn.beta.numpy() * k)
    pw.kernel.assign(pw.kernel.numpy() / k[None, None, :, None])
    return model


@pytest.fixture(scope="module")
def model():
    return _model()


@pytest.fixture(scope="module")
def data(model):
    x_test = digits(200, "test")
    return digits(CALIBRATION, "train"), x_test, model.predict(x_test, verbose=0)


def _convert(model, calibration=None, optimize=quantkit.Optimize.DEFAULT, per_tensor=False,
             **attributes) -> bytes:
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    if calibration is not None:
        converter.optimizations = [optimize]
        converter.representative_dataset = lambda: ([x[None]] for x in calibration)
        converter.target_spec.supported_ops = [quantkit.OpsSet.TFLITE_BUILTINS_INT8]
        converter.calibration = quantkit.CalibrationOptions(progress=False)
    converter._experimental_disable_per_channel = per_tensor
    for name, value in attributes.items():
        setattr(converter, name, value)
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


@pytest.fixture(scope="module")
def sqnr(model, data):
    """SQNR (dB) of each conversion by name, measured once."""
    calibration, x_test, reference = data
    runs = {
        "default": dict(),
        "default_per_tensor": dict(per_tensor=True),
        "cle_per_tensor": dict(per_tensor=True, cross_layer_equalization=True),
        "accuracy": dict(optimize=quantkit.Optimize.ACCURACY),
        "accuracy_per_tensor": dict(optimize=quantkit.Optimize.ACCURACY, per_tensor=True),
    }
    results = {}
    for name, kwargs in runs.items():
        converted = measure(_convert(model, calibration, **kwargs), [x_test], [reference])
        assert_input_matters(converted, name)
        results[name] = converted.sqnr
    return results


def _model_without_imbalance() -> keras.Model:
    """A plain Conv-BN-ReLU CNN with BatchNorm statistics from digits (seed 4), on which
    per-channel CLE costs ≈ 1 dB at the outputs, per-tensor CLE gains ≈ 1 dB."""
    keras.utils.set_random_seed(4)
    layers = keras.layers
    inputs = keras.Input((28, 28, 1))
    x = layers.Rescaling(1 / 255.0)(inputs)
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, strides=2)(x)))
    x = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(16, 3)(x)))
    x = layers.Flatten()(layers.MaxPooling2D()(x))
    x = layers.Dense(16, activation="relu")(x)
    return batchnorm_from_data(keras.Model(inputs, layers.Dense(10)(x)),
                               digits(256, "train", start=1000))


def test_one_pass_measures_the_graph_before_equalization(model, data):
    """The statistics derived in the equalized graph's calibration (``t · S``) are those a
    calibration of the graph before CLE gives: every tensor's min/max and channel means."""
    from quantkit.accuracy import derive_before, split_before
    from quantkit.calibrate import calibrate_graphs, executors

    calibration, _, _ = data
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [quantkit.Optimize.ACCURACY]
    options = quantkit.CalibrationOptions(progress=False)
    plain = []
    graph, = converter._float_graphs(plain=plain)
    (before, factors), = plain
    assert before is not graph and len(factors) >= 4, factors
    dataset = lambda: ([x[None]] for x in calibration)  # noqa: E731
    key = graph.signature_key
    runners = executors([graph], options, {key: derive_before(factors)})
    equalized, derived = split_before(calibrate_graphs([graph], dataset, options, runners),
                                      {key: factors})
    real = calibrate_graphs([before], dataset, options).for_signature(key)
    derived = derived.for_signature(key)
    assert derived.tensors.keys() == real.tensors.keys() == \
        equalized.for_signature(key).tensors.keys()
    for name, stats in real.tensors.items():
        np.testing.assert_allclose([derived.tensors[name].min, derived.tensors[name].max],
                                   [stats.min, stats.max], rtol=1e-4, atol=1e-6, err_msg=name)
    moved = [n for n in factors if equalized.for_signature(key).tensors[n].max
             > 1.01 * real.tensors[n].max or equalized.for_signature(key).tensors[n].max
             < 0.99 * real.tensors[n].max]
    assert moved, "equalization moved no activation range"
    for name, stats in real.channel_means.items():
        np.testing.assert_allclose(derived.channel_means[name].mean, stats.mean, rtol=1e-4,
                                   atol=1e-7, err_msg=name)


def test_choose_start_keeps_the_lower_error(monkeypatch):
    """The start with the lower probe error wins, whichever it is; a tie keeps the first
    (Optimize.DEFAULT's); the choice names it."""
    from types import SimpleNamespace

    from quantkit import accuracy

    def candidate(equalized: bool, error: float) -> accuracy.Candidate:
        graph = SimpleNamespace(signature_key="serving_default", error=error)
        return accuracy.Candidate(graph, {}, None, None, SimpleNamespace(accuracy=equalized),
                                  equalized)

    monkeypatch.setattr(accuracy, "trial_error", lambda graph, *_: graph.error)
    for plain_error, cle_error, equalized in ((2e-4, 1e-4, True), (1e-4, 2e-4, False),
                                              (1e-4, 1e-4, False)):
        best, choice = accuracy.choose_start(candidate(False, plain_error),
                                             candidate(True, cle_error), probe=None)
        assert (best.equalized, choice.equalized) == (equalized, equalized)
        assert (choice.default_error, choice.equalized_error) == (plain_error, cle_error)


def test_accuracy_drops_cle_where_it_hurts():
    """On a CNN where CLE costs about 1 dB per-channel (and gains per-tensor), ACCURACY keeps
    Optimize.DEFAULT's model per-channel and the equalized one per-tensor: never below
    DEFAULT on held-out digits."""
    model = _model_without_imbalance()
    calibration, x_test = digits(CALIBRATION, "train"), digits(200, "test")
    reference = model.predict(x_test, verbose=0)
    results, choices = {}, {}
    for per_tensor in (False, True):
        for name, kwargs in (("default", {}), ("cle", dict(cross_layer_equalization=True)),
                             ("accuracy", dict(optimize=quantkit.Optimize.ACCURACY))):
            converter = quantkit.TFLiteConverter.from_keras_model(model)
            converter.optimizations = [kwargs.pop("optimize", quantkit.Optimize.DEFAULT)]
            converter.representative_dataset = lambda: ([x[None]] for x in calibration)
            converter.calibration = quantkit.CalibrationOptions(progress=False)
            converter._experimental_disable_per_channel = per_tensor
            for attribute, value in kwargs.items():
                setattr(converter, attribute, value)
            converted = measure(converter.convert(), [x_test], [reference])
            assert_input_matters(converted, name)
            results[name, per_tensor] = converted.sqnr
            choices[name, per_tensor] = converter.start_choices
    assert results["cle", False] < results["default", False] - 0.5, results  # CLE hurts here
    assert [c.equalized for c in choices["accuracy", False]] == [False], choices
    assert [c.equalized for c in choices["accuracy", True]] == [True], choices
    assert choices["default", False] == () and choices["cle", False] == ()
    for per_tensor in (False, True):
        assert results["accuracy", per_tensor] >= max(
            results["default", per_tensor] - 0.05, FLOOR_DB), results


def test_pairs_found(model):
    graph = quantkit.TFLiteConverter.from_keras_model(model)._float_graphs()[0]
    kinds = [(a.type, b.type) for a, b in eq.pairs(graph)]
    assert kinds == [(OpType.CONV_2D, OpType.DEPTHWISE_CONV_2D),
                     (OpType.DEPTHWISE_CONV_2D, OpType.CONV_2D),
                     (OpType.CONV_2D, OpType.FULLY_CONNECTED),  # through max-pool, flatten
                     (OpType.FULLY_CONNECTED, OpType.FULLY_CONNECTED)]


def test_equalization_is_exact_in_float(model, data):
    """The equalized float model's outputs are Keras's (float32 conversion), and each pair's
    weight ranges are equal per channel afterwards."""
    _, x_test, reference = data
    converted = measure(_convert(model, cross_layer_equalization=True), [x_test], [reference])
    assert_input_matters(converted)
    assert converted.sqnr > 100.0, converted
    graph = quantkit.TFLiteConverter.from_keras_model(model)._float_graphs()[0]
    before = [np.abs(a.inputs[1].data).max() for a, _ in eq.pairs(graph)]
    assert eq.equalize(graph)
    for first, second in eq.pairs(graph):
        r1, r2 = eq._ranges(first, second)
        np.testing.assert_allclose(r1, r2, rtol=1e-3)
    assert before != [np.abs(a.inputs[1].data).max() for a, _ in eq.pairs(graph)]


def test_cle_rescues_per_tensor_weights(sqnr):
    """Per-tensor weights lose on this model's uneven channels; after CLE they come within
    1 dB of per-channel weights (the issue's criterion) and well above per-tensor without."""
    assert sqnr["default_per_tensor"] < sqnr["default"] - 1.0, sqnr
    assert sqnr["cle_per_tensor"] >= max(sqnr["default"] - 1.0,
                                         sqnr["default_per_tensor"] + 3.0, FLOOR_DB), sqnr


def test_accuracy_beats_default(sqnr):
    """Optimize.ACCURACY equalizes the planted imbalance away (activations too), and chooses
    ranges by the output error: clearly above DEFAULT, per-channel and per-tensor."""
    assert sqnr["accuracy"] >= max(sqnr["default"] + 2.0, FLOOR_DB), sqnr
    assert sqnr["accuracy_per_tensor"] >= max(sqnr["default_per_tensor"] + 2.0, FLOOR_DB), sqnr


@pytest.mark.parametrize("method", ["MSE", "ENTROPY", "PERCENTILE"])
def test_range_methods_convert(model, data, method):
    calibration, x_test, reference = data
    converted = measure(_convert_with_method(model, calibration, method), [x_test],
                        [reference])
    assert_input_matters(converted, method)
    assert converted.sqnr >= 15.0, converted


def _convert_with_method(model, calibration, method: str) -> bytes:
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in calibration)
    converter.calibration = quantkit.CalibrationOptions(
        progress=False, range_method=quantkit.RangeMethod[method])
    return converter.convert()


def test_histogram_method_on_min_max_statistics_is_an_error(model, data):
    calibration, _, _ = data
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in calibration[:4])
    converter.calibration = quantkit.CalibrationOptions(progress=False)
    stats = converter.calibrate()
    converter.calibration_statistics = stats
    converter.calibration = quantkit.CalibrationOptions(
        progress=False, range_method=quantkit.RangeMethod.MSE)
    with pytest.raises(ConversionError, match=r"\[calibration\] tensor .*MSE needs histogram"):
        converter.convert()


def test_tf_optimize_members_still_resolve():
    """quantkit.Optimize has TF's members and ACCURACY, which TF's converter lacks."""
    assert {m.name for m in tf.lite.Optimize} <= set(quantkit.Optimize.__members__)
    assert "ACCURACY" in quantkit.Optimize.__members__


def test_cli_range_method_and_accuracy(model):
    """``--range-method`` and ``--accuracy`` reach the converter (the conversions above check
    what they do); an unknown method is refused by the parser."""
    from quantkit.cli import build_parser
    from quantkit.cli.convert import configure
    from quantkit.presets import Preset

    args = build_parser().parse_args(["convert", "m.keras", "--range-method", "mse",
                                      "--accuracy", "--no-progress"])
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    configure(converter, Preset.INT8, args, lambda: iter([]))
    assert converter.calibration.range_method is quantkit.RangeMethod.MSE
    assert converter.optimizations == [quantkit.Optimize.ACCURACY]
    with pytest.raises(SystemExit):
        build_parser().parse_args(["convert", "m.keras", "--range-method", "median"])


def test_accuracy_with_two_signatures(tmp_path):
    """The range search probes each signature on its own samples of a dataset that mixes
    both (``(signature_key, inputs)`` samples); each signature's outputs follow TF's."""
    from ai_edge_litert.interpreter import Interpreter

    from tests.models import save_two_signatures

    module = save_two_signatures(str(tmp_path / "sm"))
    rng = np.random.default_rng(0)
    features = rng.normal(size=(40, 6)).astype(np.float32)
    pixels = rng.normal(size=(40, 8, 8, 2)).astype(np.float32)

    def dataset():
        for f, p in zip(features[:24], pixels[:24]):
            yield "classify", {"features": f[None]}
            yield "encode", {"pixels": p[None]}

    converter = quantkit.TFLiteConverter.from_saved_model(str(tmp_path / "sm"),
                                                          signature_keys=["classify", "encode"])
    converter.optimizations = [quantkit.Optimize.ACCURACY]
    converter.representative_dataset = dataset
    converter.calibration = quantkit.CalibrationOptions(progress=False)
    tflite = converter.convert()
    interpreter = Interpreter(model_content=tflite)
    tests = {"classify": ("features", features[24:], module.classify),
             "encode": ("pixels", pixels[24:], module.encode)}
    for key, (name, x, function) in tests.items():
        runner = interpreter.get_signature_runner(key)
        expected = {k: v.numpy() for k, v in function(tf.constant(x)).items()}
        got = {k: np.concatenate([runner(**{name: row[None]})[k] for row in x])
               for k in expected}
        converted = measure(tflite, [x], list(expected.values()),
                            run=lambda _: [got[k] for k in expected])
        assert_input_matters(converted, key)
        assert converted.sqnr >= 20.0, (key, converted)
