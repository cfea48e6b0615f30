"""The int8 targets, side by side with tf.lite.TFLiteConverter on the same models and data.

For every model of the foundation issue and an MNIST CNN trained here: integer tensors only
(model IO aside), output SQNR ≥ TF's − 0.5 dB, size ≤ 1.01 × TF's, op count ≤ TF's; on MNIST
(uint8 model IO), accuracy ≥ TF's − 0.3 points.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from benchmarks.zoo import mnist
import quantkit
from quantkit.litert import run_float
from quantkit.metrics import sqnr_db
from tests import models
from tests.side_by_side import (SQNR_MARGIN_DB, assert_as_good_as_tf, assert_mode_as_good_as_tf,
                                convert, measure, side_by_side)

# Absolute floors (dB) of quantkit's int8 SQNR per model, a few dB under what it scores: a
# model fed the wrong input scores under 10 dB on each (see tests/mutation.py).
FLOOR = {"sequential_cnn": 31, "two_in_two_out": 35, "subclassed": 38, "saved_model": 33,
         "concrete_function": 33, "mnist": 35, "signature classify": 35, "signature encode": 32}


def _batches(xs: np.ndarray) -> list[list[np.ndarray]]:
    return [[x[None]] for x in xs]


def _keras(model):
    return lambda module: module.TFLiteConverter.from_keras_model(model)


# Calibration on training digits, test on 200 test digits: fewer test rows make a 0.5 dB
# margin a coin toss (on 16 digits quantkit's and TF's SQNR differences flip sign).
CALIBRATION, TEST = mnist.digits(32, "train"), mnist.digits(200)


def test_sequential_cnn():
    model = models.sequential_cnn()
    ours, theirs = side_by_side(_keras(model), _batches(CALIBRATION), [TEST], [model(TEST)])
    assert_as_good_as_tf(ours, theirs, floor_db=FLOOR["sequential_cnn"])


def test_two_inputs_two_outputs():
    rng = np.random.default_rng(3)
    model = models.two_in_two_out()
    image = rng.normal(size=(264, 16, 16, 3)).astype(np.float32)
    meta = rng.normal(size=(264, 5)).astype(np.float32)
    # by name: TF's calibrator takes a list in its own model's input order, not Keras's; 200
    # samples, as the meta branch's range has long tails (with 32, test rows saturate)
    calibration = [{"image": i[None], "meta": m[None]} for i, m in zip(image[:200], meta[:200])]
    test = [image[200:], meta[200:]]
    out = model(test)
    reference = [out[0], out[1]]  # cls, reg: sorted by output name, as run_all orders them
    ours, theirs = side_by_side(_keras(model), calibration, test, reference, io=tf.float32)
    assert_as_good_as_tf(ours, theirs, floor_db=FLOOR["two_in_two_out"])


def test_subclassed():
    rng = np.random.default_rng(3)
    model = models.subclassed()
    x = rng.normal(size=(128, 12, 12, 3)).astype(np.float32)
    ours, theirs = side_by_side(_keras(model), _batches(x[:64]), [x[64:]], [model(x[64:])])
    assert_as_good_as_tf(ours, theirs, floor_db=FLOOR["subclassed"])


def test_saved_model_signature(tmp_path):
    rng = np.random.default_rng(3)
    module = models.save_two_signatures(str(tmp_path))
    x = rng.normal(size=(96, 8, 8, 2)).astype(np.float32)
    out = module.encode(x[32:])
    ours, theirs = side_by_side(
        lambda m: m.TFLiteConverter.from_saved_model(str(tmp_path), signature_keys=["encode"]),
        _batches(x[:32]), [x[32:]], [out["code"], out["mean"]], io=tf.float32)
    assert_as_good_as_tf(ours, theirs, floor_db=FLOOR["saved_model"])


def test_concrete_function():
    model = models.sequential_cnn(seed=1)
    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec([None, 28, 28, 1], tf.float32))
    # Without trackable_obj: given one, TF keeps the weights as resource variables
    # (READ_VARIABLE), which its own int8 model then fails to run. quantkit freezes either way.
    ours, theirs = side_by_side(
        lambda module: module.TFLiteConverter.from_concrete_functions([concrete]),
        _batches(CALIBRATION), [TEST], [model(TEST)])
    assert_as_good_as_tf(ours, theirs, floor_db=FLOOR["concrete_function"])


@pytest.mark.slow
def test_mnist_accuracy_with_uint8_io():
    model = mnist.trained_mnist_cnn()
    x_train, _, x_test, y_test = mnist.load_mnist()
    calibration = _batches(x_train[:200])
    reference = model.predict(x_test, verbose=0)
    ours, theirs = side_by_side(_keras(model), calibration, [x_test], [reference], io=tf.uint8)
    assert_as_good_as_tf(ours, theirs, floor_db=FLOOR["mnist"])
    float_acc = mnist.accuracy(reference, y_test)
    our_acc = mnist.accuracy(run_float(ours.model, x_test), y_test)
    tf_acc = mnist.accuracy(run_float(theirs.model, x_test), y_test)
    assert our_acc >= tf_acc - 0.003, (our_acc, tf_acc, float_acc)
    assert float_acc > 0.95


def test_two_signature_saved_model_side_by_side(tmp_path):
    """One subgraph per signature, each calibrated on its own `(signature_key, dict)` samples,
    each run through `get_signature_runner(key)`."""
    rng = np.random.default_rng(3)
    module = models.save_two_signatures(str(tmp_path))
    features = rng.normal(size=(128, 1, 6)).astype(np.float32)
    pixels = rng.normal(size=(128, 1, 8, 8, 2)).astype(np.float32)
    calibration = [sample for f, p in zip(features[:64], pixels[:64]) for sample in
                   (("classify", {"features": f}), ("encode", {"pixels": p}))]
    test = {"classify": ("features", features[64:, 0]), "encode": ("pixels", pixels[64:, 0])}
    expected = {key: getattr(module, key)(x) for key, (_, x) in test.items()}
    measured = {}
    for converter_module in (quantkit, tf.lite):
        model = convert(converter_module, lambda m: m.TFLiteConverter.from_saved_model(
            str(tmp_path), signature_keys=["classify", "encode"]), "int8", calibration,
            io=tf.float32)
        interpreter = Interpreter(model_content=model)
        assert set(interpreter.get_signature_list()) == {"classify", "encode"}
        for key, (name, x) in test.items():
            runner = interpreter.get_signature_runner(key)

            def run(xs, runner=runner, name=name):
                outputs = runner(**{name: xs[0]})
                return [outputs[k] for k in sorted(outputs)]
            reference = [expected[key][k] for k in sorted(expected[key])]
            measured[converter_module, key] = measure(model, [x], reference, run)
    for key in test:
        assert_mode_as_good_as_tf(measured[quantkit, key], None, FLOOR[f"signature {key}"])
        assert measured[quantkit, key].sqnr >= measured[tf.lite, key].sqnr - SQNR_MARGIN_DB
