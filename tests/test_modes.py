"""The other conversion modes, side by side with tf.lite.TFLiteConverter: dynamic range,
float16, int16x8, and quantkit's legacy uint8 (which TF no longer offers).

Each mode converts, runs in LiteRT, and has output SQNR ≥ TF's − 0.5 dB for the same mode,
model and data, size ≤ 1.01 × TF's and no more ops; legacy uint8 reaches ≥ 25 dB.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any, Callable

import numpy as np
import pytest
import tensorflow as tf

import quantkit
from quantkit.litert import run_float
from quantkit.metrics import sqnr_db
from quantkit.tflite_io.reader import op_types, read_model
from tests import mnist, models
from tests.side_by_side import SIZE_RATIO, SQNR_MARGIN_DB, run_all

RNG = np.random.default_rng(5)
INT16X8 = "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"


def _configure(mode: str, calibration: np.ndarray | None, fallback: bool = False
               ) -> Callable[[Any, Any], None]:
    """Sets a converter of either module (quantkit or tf.lite) to ``mode``; ``fallback`` keeps
    TFLITE_BUILTINS in the op set (ops the mode's kernels lack stay float)."""
    def configure(module, converter):
        converter.optimizations = [module.Optimize.DEFAULT]
        if mode == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if mode in ("int16x8", "uint8"):
            samples = calibration if isinstance(calibration, list) else [
                [x[None]] for x in calibration]  # an array: one single-input sample per row
            converter.representative_dataset = lambda: iter(samples)
        if mode == "int16x8":
            converter.target_spec.supported_ops = [getattr(module.OpsSet, INT16X8)] + (
                [module.OpsSet.TFLITE_BUILTINS] if fallback else [])
        if mode == "uint8":
            converter.legacy_uint8 = True
            converter.inference_input_type = converter.inference_output_type = tf.uint8
        if module is quantkit:
            converter.calibration = quantkit.CalibrationOptions(progress=False)
    return configure


def convert(module, model, mode: str, calibration=None, fallback: bool = False) -> bytes:
    """``model``: a Keras model, or a function module → converter (other frontends)."""
    converter = (model(module) if callable(model) and not hasattr(model, "layers")
                 else module.TFLiteConverter.from_keras_model(model))
    _configure(mode, calibration, fallback)(module, converter)
    with contextlib.redirect_stdout(io.StringIO()):  # TF's converter prints its export
        return converter.convert()


def side_by_side(model, mode: str, calibration, test, fallback: bool = False
                 ) -> tuple[float, float]:
    """Both converters in ``mode`` on the same model and data: SQNR ≥ TF's − SQNR_MARGIN_DB,
    size ≤ SIZE_RATIO × TF's, op count ≤ TF's."""
    reference = model(test, training=False).numpy()
    ours = convert(quantkit, model, mode, calibration, fallback)
    theirs = convert(tf.lite, model, mode, calibration, fallback)
    our_sqnr = sqnr_db(reference, run_float(ours, test))
    try:
        tf_sqnr = sqnr_db(reference, run_float(theirs, test))
    except RuntimeError:  # TF's model does not run in LiteRT (int16x8 SQUARED_DIFFERENCE)
        assert our_sqnr >= 30, f"{mode}: quantkit {our_sqnr:.2f} dB; TF's model cannot run"
        return our_sqnr, float("nan")
    our_ops, tf_ops = len(op_types(ours)), len(op_types(theirs))
    report = (f"{mode}: quantkit {our_sqnr:.2f} dB {len(ours)} B {our_ops} ops; "
              f"TF {tf_sqnr:.2f} dB {len(theirs)} B {tf_ops} ops")
    assert our_sqnr >= tf_sqnr - SQNR_MARGIN_DB, report
    assert len(ours) <= SIZE_RATIO * len(theirs), report
    assert our_ops <= tf_ops, report
    return our_sqnr, tf_sqnr


@pytest.fixture(scope="module")
def cnn():
    return models.sequential_cnn()


CNN_DATA = RNG.uniform(0, 255, (40, 28, 28, 1)).astype(np.float32)


@pytest.mark.parametrize("mode", ["dynamic_range", "float16", "int16x8"])
def test_side_by_side_with_tf(cnn, mode):
    side_by_side(cnn, mode, CNN_DATA[:32], CNN_DATA[32:])


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["dynamic_range", "float16", "int16x8"])
def test_mnist_side_by_side_with_tf(mode):
    model = mnist.trained_mnist_cnn()
    x_train, _, x_test, _ = mnist.load_mnist()
    side_by_side(model, mode, x_train[:100], x_test[:200])


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
    _configure("int16x8", CNN_DATA[:16])(quantkit, converter)
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
    _configure("int16x8", CNN_DATA[:16])(quantkit, converter)
    converter._experimental_full_integer_quantization_bias_type = tf.int32
    model = converter.convert()
    sub, tensors = _tensors(model)
    convs = [op for op in sub.ops if op.type.name == "CONV_2D"]
    assert convs and all(tensors[op.inputs[2]].dtype == np.int32 for op in convs)
    assert sqnr_db(cnn(CNN_DATA[32:]).numpy(), run_float(model, CNN_DATA[32:])) > 40


@pytest.mark.slow
def test_legacy_uint8_on_mnist():
    model = mnist.trained_mnist_cnn()
    x_train, _, x_test, y_test = mnist.load_mnist()
    converted = convert(quantkit, model, "uint8", x_train[:100])
    sub, tensors = _tensors(converted)
    for t in tensors:
        if t.data is None or t.dtype == np.uint8:
            assert t.dtype == np.uint8 and len(t.quant.scales) == 1, t.name
    y = run_float(converted, x_test)
    assert sqnr_db(model.predict(x_test, verbose=0), y) >= 25
    assert mnist.accuracy(y, y_test) > 0.97


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
    converter.representative_dataset = lambda: ([x[None]] for x in CNN_DATA[:4])
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
        _configure(mode, CNN_DATA[:4])(quantkit, converter)
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
    if name == "two_in_two_out":
        model = models.two_in_two_out()
        image = RNG.normal(size=(24, 1, 16, 16, 3)).astype(np.float32)
        meta = RNG.normal(size=(24, 1, 5)).astype(np.float32)
        samples = [{"image": i, "meta": m} for i, m in zip(image[:16], meta[:16])]
        test = [image[16:, 0], meta[16:, 0]]
        return model, samples, test, list(model(test))
    if name == "subclassed":
        model = models.subclassed()
        x = RNG.normal(size=(24, 12, 12, 3)).astype(np.float32)
        return model, x[:16], [x[16:]], [model(x[16:])]
    module = models.save_two_signatures(str(tmp_path))
    x = RNG.normal(size=(24, 8, 8, 2)).astype(np.float32)
    out = module.encode(x[16:])
    if name == "saved_model":
        def make(m):
            return m.TFLiteConverter.from_saved_model(str(tmp_path), signature_keys=["encode"])
        return make, x[:16], [x[16:]], [out["code"], out["mean"]]
    concrete = module.encode.get_concrete_function()

    def make(m):  # with trackable_obj, as TF asks: its model then has a SignatureDef too
        return m.TFLiteConverter.from_concrete_functions([concrete], module)
    return make, x[:16], [x[16:]], [out["code"], out["mean"]]


@pytest.mark.parametrize("mode", ["dynamic_range", "float16", "int16x8"])
@pytest.mark.parametrize("name", ["two_in_two_out", "subclassed", "saved_model",
                                  "concrete_function"])
def test_foundation_frontends_side_by_side_with_tf(tmp_path, name, mode):
    model, calibration, test, reference = _foundation_case(name, tmp_path)
    flat = lambda arrays: np.concatenate([np.ravel(a) for a in arrays])  # noqa: E731
    results = {}
    for module in (quantkit, tf.lite):
        converted = convert(module, model, mode, calibration)
        results[module] = (sqnr_db(flat(reference), flat(run_all(converted, test))),
                           len(converted), len(op_types(converted)))
    (our_sqnr, our_size, our_ops), (tf_sqnr, tf_size, tf_ops) = results[quantkit], \
        results[tf.lite]
    report = f"quantkit {results[quantkit]}, TF {results[tf.lite]}"
    assert our_sqnr >= tf_sqnr - 0.5, report
    assert our_size <= 1.01 * tf_size and our_ops <= tf_ops, report
