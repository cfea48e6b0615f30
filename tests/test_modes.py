"""The other conversion modes, side by side with tf.lite.TFLiteConverter: dynamic range,
float16, int16x8, and quantkit's legacy uint8 (which TF no longer offers).

Each mode converts, runs in LiteRT, and (``tests.side_by_side``) follows its input, scores
above a floor per mode and model (float16: ≥ 60 dB) and ≥ TF's − 0.5 dB for the same mode, model
and data, with size ≤ 1.01 × TF's and no more ops; int16x8 beats int8 on the same model and
data; legacy uint8 reaches ≥ 25 dB and 97 % accuracy on MNIST.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from benchmarks.zoo import mnist
import quantkit
from quantkit.litert import run_float
from quantkit.tflite_io.reader import op_types, read_model
from tests import models
from tests.side_by_side import (FLOAT16_FLOOR_DB, INT16X8_OVER_INT8_DB, Converted,
                                assert_input_matters, assert_mode_as_good_as_tf, configure,
                                keras_converter, measure)
from tests.side_by_side import convert as shared_convert
from tests.side_by_side import side_by_side as shared_side_by_side



def convert(module, model, mode: str, calibration=None, fallback: bool = False) -> bytes:
    """``model``: a Keras model, or a function module → converter (other frontends)."""
    make = model if callable(model) and not hasattr(model, "layers") else keras_converter(model)
    return shared_convert(module, make, mode, calibration, fallback)


def side_by_side(model, mode: str, calibration, test, floor_db: float,
                 fallback: bool = False) -> Converted:
    """Both converters in ``mode`` on the same Keras model and data: guarded, SQNR ≥ the
    floor and ≥ TF's − SQNR_MARGIN_DB, size ≤ SIZE_RATIO × TF's, op count ≤ TF's; float16
    also ≥ FLOAT16_FLOOR_DB. quantkit's measurement is returned."""
    reference = [model(test, training=False).numpy()]
    ours, theirs = shared_side_by_side(keras_converter(model), calibration, [test], reference,
                                       mode, fallback=fallback)
    assert_mode_as_good_as_tf(ours, theirs, floor_db, mode)
    return ours


@pytest.fixture(scope="module")
def cnn():
    return models.sequential_cnn()


CALIBRATION, TEST = mnist.digits(100, "train"), mnist.digits(200)
# Floors (dB) per mode on the small CNN (digits) and the trained MNIST CNN: a few dB under what
# quantkit scores; float16's is FLOAT16_FLOOR_DB on both.
FLOORS = {"cnn": {"dynamic_range": 37.0, "float16": FLOAT16_FLOOR_DB, "int16x8": 39.0},
          "mnist": {"dynamic_range": 44.0, "float16": FLOAT16_FLOOR_DB, "int16x8": 40.0}}


@pytest.mark.parametrize("mode", ["dynamic_range", "float16", "int16x8"])
def test_side_by_side_with_tf(cnn, mode):
    side_by_side(cnn, mode, CALIBRATION, TEST, FLOORS["cnn"][mode])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dynamic_range", "float16", "int16x8"])
def test_mnist_side_by_side_with_tf(mode):
    model = mnist.trained_mnist_cnn()
    x_train, _, x_test, _ = mnist.load_mnist()
    side_by_side(model, mode, CALIBRATION, TEST, FLOORS["mnist"][mode])


@pytest.mark.parametrize("name", ["cnn", "mnist"])
def test_int16x8_beats_int8(cnn, name):
    """int16 activations keep more than int8 ones: on the same model and data, int16x8's SQNR
    is at least INT16X8_OVER_INT8_DB above int8's."""
    model = cnn if name == "cnn" else mnist.trained_mnist_cnn()
    reference = [model(TEST, training=False).numpy()]
    int8, int16 = (measure(convert(quantkit, model, mode, CALIBRATION), [TEST], reference)
                   for mode in ("int8", "int16x8"))
    assert int16.sqnr >= int8.sqnr + INT16X8_OVER_INT8_DB, f"int8 {int8}; int16x8 {int16}"


def _tensors(model: bytes):
    sub = read_model(model).subgraphs[0]
    return sub, sub.tensors


def test_dynamic_range_structure(cnn):
    sub, tensors = _tensors(convert(quantkit, cnn, "dynamic_range"))
    for op in sub.ops:
        if op.type.name in ("CONV_2D", "FULLY_CONNECTED"):
            w = tensors[op.inputs[1]]
            large = w.data.size >= 1024
            assert w.dtype == (np.int8 if large else np.float32), (op.type, w.shape)
            if large:
                assert len(w.quant.scales) == w.shape[0]  # per output channel
            if large and op.type.name == "FULLY_CONNECTED":
                assert op.options.asymmetric_quantize_inputs
        inputs = [tensors[i] for i in op.inputs if i >= 0 and tensors[i].data is None]
        assert all(t.dtype == np.float32 for t in inputs)  # activations stay float


def test_float16_structure(cnn):
    sub, tensors = _tensors(convert(quantkit, cnn, "float16"))
    constants = [t for t in tensors if t.data is not None and t.dtype != np.int32]
    assert constants and all(t.dtype == np.float16 for t in constants)
    dequantize = [op for op in sub.ops if op.type.name == "DEQUANTIZE"]
    assert len(dequantize) == len({t.data.tobytes() for t in constants})


def test_int16x8_structure_and_int16_io(cnn):
    converter = quantkit.TFLiteConverter.from_keras_model(cnn)
    configure(quantkit, converter, "int16x8", CALIBRATION[:16])
    converter.inference_input_type = converter.inference_output_type = tf.int16
    sub, tensors = _tensors(converter.convert())
    assert tensors[sub.inputs[0]].dtype == np.int16 and tensors[sub.outputs[0]].dtype == np.int16
    activations = [t for t in tensors if t.data is None]
    assert all(t.dtype == np.int16 and t.quant.zero_points == (0,) for t in activations)
    for op in sub.ops:
        if op.type.name == "CONV_2D":
            assert tensors[op.inputs[1]].dtype == np.int8
            assert tensors[op.inputs[2]].dtype == np.int64


def test_int16x8_int32_bias_when_asked(cnn):
    converter = quantkit.TFLiteConverter.from_keras_model(cnn)
    configure(quantkit, converter, "int16x8", CALIBRATION)
    converter._experimental_full_integer_quantization_bias_type = tf.int32
    model = converter.convert()
    sub, tensors = _tensors(model)
    convs = [op for op in sub.ops if op.type.name == "CONV_2D"]
    assert convs and all(tensors[op.inputs[2]].dtype == np.int32 for op in convs)
    measured = measure(model, [TEST], [cnn(TEST).numpy()])
    assert_input_matters(measured)
    assert measured.sqnr >= FLOORS["cnn"]["int16x8"], measured


@pytest.mark.slow
def test_legacy_uint8_on_mnist():
    model = mnist.trained_mnist_cnn()
    x_train, _, x_test, y_test = mnist.load_mnist()
    converted = convert(quantkit, model, "uint8", x_train[:100])
    sub, tensors = _tensors(converted)
    for t in tensors:
        if t.data is None or t.dtype == np.uint8:
            assert t.dtype == np.uint8 and len(t.quant.scales) == 1, t.name
    measured = measure(converted, [x_test], [model.predict(x_test, verbose=0)])
    assert_input_matters(measured)
    assert measured.sqnr >= 25, measured
    assert mnist.accuracy(run_float(converted, x_test), y_test) > 0.97


def test_legacy_uint8_needs_a_dataset(cnn):
    converter = quantkit.TFLiteConverter.from_keras_model(cnn)
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    converter.legacy_uint8 = True
    with pytest.raises(ValueError, match="a `representative_dataset` must be specified"):
        converter.convert()


@pytest.mark.parametrize("configure, message", [
    (lambda c: setattr(c, "inference_input_type", tf.int16),
     "must be in ['tf.float32', 'tf.int8', 'tf.uint8']"),
    (lambda c: setattr(c.target_spec, "supported_types", [tf.float16]),
     "TFLITE_BUILTINS_INT8 requires smallest supported type to be INT8."),
    (lambda c: setattr(c.target_spec, "supported_ops", [quantkit.OpsSet.SELECT_TF_OPS]),
     "SELECT_TF_OPS"),
    (lambda c: setattr(c, "_experimental_full_integer_quantization_bias_type", tf.int64),
     "Expected bias type to be `dtypes.int32` for Int8Quant"),
    (lambda c: setattr(c, "representative_dataset", None) or setattr(
        c.target_spec, "supported_ops", [quantkit.OpsSet.TFLITE_BUILTINS]) or setattr(
        c, "_experimental_full_integer_quantization_bias_type", tf.int32),
     "only supported for full integer quantization"),
])
def test_invalid_combinations(cnn, configure, message):
    converter = quantkit.TFLiteConverter.from_keras_model(cnn)
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in CALIBRATION[:4])
    converter.target_spec.supported_ops = [quantkit.OpsSet.TFLITE_BUILTINS_INT8]
    configure(converter)
    with pytest.raises(ValueError) as info:
        converter.convert()
    assert str(info.value).startswith("[options]") and message in str(info.value)


@pytest.mark.parametrize("mode, optimization_modes", [
    ("float32", []), ("dynamic_range", [1002]), ("float16", [1001]), ("int16x8", [1004]),
    ("uint8", [])])
def test_conversion_metadata(cnn, mode, optimization_modes):
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as schema

    converter = quantkit.TFLiteConverter.from_keras_model(cnn)
    if mode != "float32":
        configure(quantkit, converter, mode, CALIBRATION[:4])
    converted = read_model(converter.convert())
    metadata = dict(converted.metadata)
    record = schema.ConversionMetadataT.InitFromPackedBuf(metadata["CONVERSION_METADATA"], 0)
    assert record.environment.modelType == schema.ModelType.KERAS_MODEL
    assert record.environment.tensorflowVersion == tf.__version__.encode()
    modes = record.options.modelOptimizationModes
    assert ([] if modes is None else list(modes)) == optimization_modes
    assert converted.description == f"quantkit {quantkit.__version__}"
    converter.exclude_conversion_metadata = True
    assert set(dict(read_model(converter.convert()).metadata)) == {"min_runtime_version"} | (
        {"reduced_precision_support"} if mode == "float16" else set())


def _foundation_case(name: str, tmp_path):
    """(converter factory, calibration samples, test inputs, float reference outputs) for the
    foundation issue's other frontends; outputs in sorted-name order, as run_all gives them."""
    rng = np.random.default_rng(5)
    if name == "two_in_two_out":
        model = models.two_in_two_out()
        image = rng.normal(size=(264, 1, 16, 16, 3)).astype(np.float32)
        meta = rng.normal(size=(264, 1, 5)).astype(np.float32)
        # 200 samples: the meta branch has long tails (with 16, test rows saturate)
        samples = [{"image": i, "meta": m} for i, m in zip(image[:200], meta[:200])]
        test = [image[200:, 0], meta[200:, 0]]
        return keras_converter(model), samples, test, list(model(test))
    if name == "subclassed":
        model = models.subclassed()
        x = rng.normal(size=(80, 12, 12, 3)).astype(np.float32)
        return keras_converter(model), x[:16], [x[16:]], [model(x[16:])]
    module = models.save_two_signatures(str(tmp_path))
    x = rng.normal(size=(80, 8, 8, 2)).astype(np.float32)
    out = module.encode(x[16:])
    if name == "saved_model":
        def make(m):
            return m.TFLiteConverter.from_saved_model(str(tmp_path), signature_keys=["encode"])
        return make, x[:16], [x[16:]], [out["code"], out["mean"]]
    concrete = module.encode.get_concrete_function()

    def make(m):  # with trackable_obj, as TF asks: its model then has a SignatureDef too
        return m.TFLiteConverter.from_concrete_functions([concrete], module)
    return make, x[:16], [x[16:]], [out["code"], out["mean"]]


# Floors (dB) per mode on these small models: float16's is FLOAT16_FLOOR_DB, int16x8's a few dB
# under the lowest of the four; their weights are under TF's 1,024-element threshold, so
# dynamic range leaves them float (float32's tolerance, 1e-4, is 80 dB).
FOUNDATION_FLOORS = {"dynamic_range": 80.0, "float16": FLOAT16_FLOOR_DB, "int16x8": 43.0}


@pytest.mark.parametrize("mode", ["dynamic_range", "float16", "int16x8"])
@pytest.mark.parametrize("name", ["two_in_two_out", "subclassed", "saved_model",
                                  "concrete_function"])
def test_foundation_frontends_side_by_side_with_tf(tmp_path, name, mode):
    make, calibration, test, reference = _foundation_case(name, tmp_path)
    ours, theirs = shared_side_by_side(make, calibration, test, reference, mode)
    assert_mode_as_good_as_tf(ours, theirs, FOUNDATION_FLOORS[mode], f"{name} {mode}")
