"""A test per row of ``quantkit.PRESETS``: each preset, applied to quantkit's converter, gives
the IO, weight and activation types and the weight scale counts it promises; applied to
tf.lite's converter, it gives the same IO and weight types."""

from __future__ import annotations

import contextlib
import io

import keras
import numpy as np
import pytest
import tensorflow as tf

import quantkit
from quantkit.presets import PRESETS, Preset
from quantkit.tflite_io.reader import read_model
from tests.conftest import assert_matches
from tests.side_by_side import (FLOAT16_FLOOR_DB, FLOAT32_REL, assert_input_matters, measure,
                                run_all)

RNG = np.random.default_rng(3)
CALIBRATION = RNG.uniform(-1, 1, (16, 12, 12, 3)).astype(np.float32)
TEST = RNG.uniform(-1, 1, (64, 12, 12, 3)).astype(np.float32)


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(32, 3, activation="relu"),  # 864 weights: stays float in DR
        keras.layers.Flatten(),
        keras.layers.Dense(10),                         # 10,000 weights: int8 in DR
    ])


def _convert(module, model: keras.Model, preset: Preset) -> bytes:
    converter = module.TFLiteConverter.from_keras_model(model)
    preset.configure(converter, lambda: ([x[None]] for x in CALIBRATION))
    with contextlib.redirect_stdout(io.StringIO()):  # TF prints its SavedModel export
        return converter.convert()


def _summary(blob: bytes) -> dict[str, object]:
    """IO dtypes, the dtypes of activations and of weights, per-channel weight scales."""
    graph = read_model(blob).subgraphs[0]
    consts = [t for t in graph.tensors if t.is_const]
    weights = [t for t in consts if t.shape is not None and len(t.shape) >= 2]
    return {
        "io": {graph.tensors[i].dtype for i in graph.inputs + graph.outputs},
        "weights": {t.dtype for t in weights},
        "activations": {t.dtype for t in graph.tensors if not t.is_const},
        "weight_scales": {len(t.quant.scales) for t in weights if t.quant is not None},
    }


# What each preset promises: model IO dtype, weight dtypes, activation dtypes inside, the
# numbers of scales per quantized weight tensor.
F32, F16, I8, I16, U8 = (np.dtype(n) for n in ("float32", "float16", "int8", "int16", "uint8"))
EXPECTED = {
    Preset.FLOAT32: (F32, {F32}, {F32}, set()),
    Preset.DYNAMIC_RANGE: (F32, {F32, I8}, {F32}, {10}),  # the conv (864 < 1024 weights): float
    Preset.FLOAT16: (F32, {F16}, {F32}, set()),
    Preset.INT8: (F32, {I8}, {F32, I8}, {32, 10}),            # float IO around int8 inside
    Preset.INT8_PER_TENSOR: (F32, {I8}, {F32, I8}, {1}),
    Preset.INT16X8: (F32, {I8}, {F32, I16}, {32, 10}),
    Preset.UINT8_IO: (U8, {I8}, {U8, I8}, {32, 10}),
}


# What each preset's model scores at least on the test data (dB): float32 100 dB (and within
# FLOAT32_REL of the output's magnitude), float16 FLOAT16_FLOOR_DB, the others a few dB under
# what they score (int16 activations well above int8 ones).
FLOORS = {Preset.FLOAT32: 100.0, Preset.FLOAT16: FLOAT16_FLOOR_DB, Preset.DYNAMIC_RANGE: 42.0,
          Preset.INT8: 27.0, Preset.INT8_PER_TENSOR: 27.0, Preset.INT16X8: 35.0,
          Preset.UINT8_IO: 27.0}


def test_every_preset_has_a_row_and_a_summary():
    assert set(PRESETS) == set(Preset) == set(EXPECTED)
    assert all(p.spec.summary for p in Preset)
    assert [p.value for p in Preset] == ["float32", "dynamic_range", "float16", "int8",
                                         "int8_per_tensor", "int16x8", "uint8_io"]


@pytest.mark.parametrize("preset", list(Preset), ids=lambda p: p.value)
def test_preset_row(model, preset):
    io_type, weights, activations, scales = EXPECTED[preset]
    ours = _convert(quantkit, model, preset)
    theirs = _convert(tf.lite, model, preset)
    got = _summary(ours)
    assert got["io"] == {io_type}
    assert got["activations"] == activations
    assert got["weights"] == weights
    assert got["weight_scales"] == scales
    # TF's converter, configured by the same preset, writes the same IO and weight types.
    tf_got = _summary(theirs)
    assert tf_got["io"] == {io_type}
    assert tf_got["weights"] == weights
    reference = model(TEST).numpy()
    measured = measure(ours, [TEST], [reference])
    assert_input_matters(measured)
    assert measured.sqnr >= FLOORS[preset], measured
    if preset is Preset.FLOAT32:
        assert_matches(run_all(ours, [TEST])[0], reference, FLOAT32_REL)


@pytest.mark.parametrize("preset", [p for p in Preset if p.spec.calibrated],
                         ids=lambda p: p.value)
def test_calibrated_preset_without_data_is_an_error(model, preset):
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    with pytest.raises(ValueError, match=f"mode {preset.value} needs calibration data"):
        preset.configure(converter, None)
