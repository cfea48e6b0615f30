"""A test per layer family of the zoo (``benchmarks/zoo/families.py``): quantkit converts each
family's model in float32 (LiteRT within 1e-4 of the Keras output's largest magnitude), and a
subset (``INT8``: the attention, embedding and math-op families this issue added, and
UnitNormalization) in int8 too, where each must follow its input and clear an absolute SQNR
floor set 1 dB under TF's converter on the same model and data (``benchmarks.families`` prints
both; TF is not run here, for time). The other families' int8 rows are in that benchmark.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest

from benchmarks import families as bench
from benchmarks.zoo import families as zoo
import quantkit
from quantkit.litert import run_float, run_signature
from tests.conftest import assert_matches
from tests.side_by_side import assert_input_matters, measure

# family → int8 SQNR floor (dB): TF's int8 SQNR on the same model and data, less 1 dB
INT8 = {
    "mha": 20.4,               # TF 21.4
    "mha_causal_mask": 20.0,   # TF 4.8: its −1e9 mask widens the scores' int8 range; 27.2
    "transformer_block": 28.5,  # TF 29.5
    "embedding": 38.4,         # TF 39.4
    "position_embedding": 34.9,  # TF 35.9
    "where": 22.3,             # TF 23.3
    "log": 28.4,               # TF 29.4
    "unit_normalization": 33.4,  # TF 34.4 (quantkit was 2.8 dB before issue #12)
    "gelu_tanh": 35.5,         # TF 36.5
}
TEST_SAMPLES = 8


@functools.cache
def family(name: str):
    model = zoo.build(name)
    calibration, x = zoo.data(name, 16, 1), zoo.data(name, TEST_SAMPLES, 2)
    return model, calibration, x, keras.ops.convert_to_numpy(model(x, training=False))


@pytest.mark.parametrize("name", list(zoo.FAMILIES))
def test_float32(name):
    model, calibration, x, reference = family(name)
    data = bench.convert(quantkit, model, False, calibration)
    assert_matches(run_float(data, x), reference)


@pytest.mark.parametrize("name", list(INT8))
def test_int8(name):
    model, calibration, x, reference = family(name)
    data = bench.convert(quantkit, model, True, calibration)
    converted = measure(data, [x], [reference], run=lambda xs: [run_float(data, xs[0])])
    assert_input_matters(converted)
    assert converted.sqnr >= INT8[name], str(converted)


def test_every_family_has_int8_floor_from_the_benchmark():
    assert set(INT8) <= set(zoo.FAMILIES)
    assert np.all(np.array(list(INT8.values())) > 15.0)


def test_attention_with_a_padding_mask_input():
    """MultiHeadAttention fed a padding mask (a second, int32 input): float32 within 1e-4,
    int8 ≥ 20 dB (24.4 measured; TF's int8 model of it failed to prepare in LiteRT when
    fed as here, so there is no TF figure) and following both its inputs."""
    keras.utils.set_random_seed(0)
    model = zoo.mha_padding_mask()
    x, keep = zoo.padding_mask_data(TEST_SAMPLES, 2)
    reference = keras.ops.convert_to_numpy(model([x, keep], training=False))
    names = [t.name for t in model.inputs]
    calibration = [[a[i:i + 1] for a in zoo.padding_mask_data(16, 1)] for i in range(16)]

    def run(data: bytes, xs) -> list[np.ndarray]:
        outputs = run_signature(data, dict(zip(names, xs)))
        return [next(iter(outputs.values()))]

    float_model = quantkit.TFLiteConverter.from_keras_model(model).convert()
    assert_matches(run(float_model, [x, keep])[0], reference)
    conv = quantkit.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [quantkit.Optimize.DEFAULT]
    conv.representative_dataset = lambda: iter(calibration)
    conv.calibration = quantkit.CalibrationOptions(progress=False)
    int8 = conv.convert()
    converted = measure(int8, [x, keep], [reference], run=lambda xs: run(int8, xs))
    assert_input_matters(converted)
    assert converted.sqnr >= 20.0, str(converted)
    other_mask = np.roll(keep, 1, axis=0)  # the same queries under other masks score worse
    assert measure(int8, [x, other_mask], [reference],
                   run=lambda xs: run(int8, xs)).sqnr < converted.sqnr - 3.0
