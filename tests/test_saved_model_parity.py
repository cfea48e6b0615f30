"""A SavedModel from Keras 3's ``model.export()`` converts to the graph its Keras model does.

The exported signature reads every variable through a resource argument whose handle has no
shape; before lowering read those variables as constants (``frontend.tf_loops.function_graph``),
every op after a weight had an unknown shape, so Dense biases stayed separate ADDs, BatchNorm stayed MUL + ADD and the output shape
was ``(None, None)`` (12 ops instead of 9 on this model; int8 34.3 dB instead of 37.3).
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from sklearn.datasets import load_digits

import keras
import quantkit
from quantkit.tflite_io.reader import read_model
from tests.side_by_side import assert_input_matters, convert, keras_converter, measure


def _model() -> keras.Model:
    """Conv + BatchNorm + ReLU, pooling, Dense + BatchNorm + ReLU, Dense; BatchNorm statistics
    set away from the identity so that folding them matters."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Conv2D(8, 3, padding="same"), keras.layers.BatchNormalization(),
        keras.layers.ReLU(), keras.layers.MaxPooling2D(), keras.layers.Flatten(),
        keras.layers.Dense(16), keras.layers.BatchNormalization(), keras.layers.ReLU(),
        keras.layers.Dense(10)])
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 2, n), rng.normal(0, 0.1, n),
                               rng.normal(0, 0.2, n), rng.uniform(0.5, 4, n)])
    return model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model = _model()
    path = str(tmp_path_factory.mktemp("parity") / "exported")
    model.export(path, verbose=False)
    x = load_digits().images[:64, :, :, None].astype(np.float32) / 16.0
    return model, path, x


def _graph(model: bytes) -> list[tuple[str, tuple]]:
    """Each op's type and its output's shape signature."""
    sub = read_model(model).subgraphs[0]
    return [(op.type.name, tuple(sub.tensors[op.outputs[0]].shape_signature)) for op in sub.ops]


def _from_saved_model(path: str):
    return lambda module: module.TFLiteConverter.from_saved_model(path)


def test_export_converts_to_the_keras_graph(exported):
    model, path, x = exported
    keras_ops = _graph(quantkit.TFLiteConverter.from_keras_model(model).convert())
    saved_ops = _graph(quantkit.TFLiteConverter.from_saved_model(path).convert())
    assert saved_ops == keras_ops
    assert [t for t, _ in saved_ops].count("FULLY_CONNECTED") == 2
    assert not {"ADD", "MUL"} & {t for t, _ in saved_ops}  # biases and BatchNorm folded
    assert saved_ops[-1][1] == (-1, 10)  # the output keeps its shape


def test_export_int8_matches_the_keras_model(exported):
    model, path, x = exported
    reference = [model(x, training=False).numpy()]
    calibration = x[:32]
    via_keras = measure(convert(quantkit, keras_converter(model), "int8", calibration),
                        [x], reference)
    via_saved = measure(convert(quantkit, _from_saved_model(path), "int8", calibration),
                        [x], reference)
    assert_input_matters(via_saved)
    assert via_saved.sqnr >= 25.0, via_saved
    assert abs(via_saved.sqnr - via_keras.sqnr) <= 0.1, (via_saved, via_keras)
    assert _graph(via_saved.model) == _graph(via_keras.model)
