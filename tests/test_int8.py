"""Full-integer conversion through the public API: typed model IO, op sets, granularity,
reusing a calibration, determinism, and the errors of the calibration stage."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from benchmarks.zoo import mnist
import quantkit
from calibration import CalibrationStats
from quantkit.litert import run_float
from quantkit.tflite_io.reader import op_types, read_model
from quantkit.types import QuantMode
from tests import models
from tests.side_by_side import assert_input_matters, measure

IMAGES = mnist.digits(24, "train")  # calibration
TEST = mnist.digits(200)


def samples(xs):
    return lambda: ([x[None]] for x in xs)


INT8_ONLY = (quantkit.OpsSet.TFLITE_BUILTINS_INT8,)


def int8_converter(model, data=IMAGES[:24], io=tf.int8, ops=INT8_ONLY):
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    converter.representative_dataset = samples(data)
    converter.target_spec.supported_ops = list(ops)
    converter.inference_input_type = converter.inference_output_type = io
    converter.calibration = quantkit.CalibrationOptions(progress=False)
    return converter


@pytest.fixture(scope="module")
def cnn():
    return models.sequential_cnn()


def _io(model_bytes):
    interpreter = Interpreter(model_content=model_bytes)
    return interpreter.get_input_details()[0], interpreter.get_output_details()[0]


@pytest.mark.parametrize("io, boundary", [
    (tf.float32, ("QUANTIZE", "DEQUANTIZE")),
    (tf.int8, (None, None)),
    (tf.uint8, ("QUANTIZE", "QUANTIZE")),
])
def test_model_io_types(cnn, io, boundary):
    model = int8_converter(cnn, io=io).convert()
    ops = op_types(model)
    first, last = boundary
    assert (ops[0] == first) if first else ops[0] != "QUANTIZE"
    assert (ops[-1] == last) if last else ops[-1] not in ("QUANTIZE", "DEQUANTIZE")
    inp, out = _io(model)
    assert inp["dtype"] == io.as_numpy_dtype and out["dtype"] == io.as_numpy_dtype
    sub = read_model(model).subgraphs[0]
    io_tensors = {sub.inputs[0], sub.outputs[0]}
    inner = [t for i, t in enumerate(sub.tensors) if i not in io_tensors]
    assert all(t.dtype != np.float32 for t in inner), [t.name for t in inner
                                                       if t.dtype == np.float32]
    measured = measure(model, [TEST], [cnn(TEST).numpy()])
    assert_input_matters(measured)
    assert measured.sqnr > 31, measured


def test_uint8_io_is_int8_io_shifted_by_128(cnn):
    int8_in, int8_out = _io(int8_converter(cnn, io=tf.int8).convert())
    uint8_in, uint8_out = _io(int8_converter(cnn, io=tf.uint8).convert())
    for i8, u8 in [(int8_in, uint8_in), (int8_out, uint8_out)]:
        assert u8["quantization"][0] == i8["quantization"][0]
        assert u8["quantization"][1] == i8["quantization"][1] + 128


def test_same_model_and_data_give_identical_bytes(cnn):
    assert int8_converter(cnn).convert() == int8_converter(cnn).convert()


def test_weights_per_channel_by_default_per_tensor_when_asked(cnn):
    def conv_scales(model_bytes):
        sub = read_model(model_bytes).subgraphs[0]
        convs = [op for op in sub.ops if op.type.name == "CONV_2D"]
        return [len(sub.tensors[op.inputs[1]].quant.scales) for op in convs]

    assert conv_scales(int8_converter(cnn).convert()) == [8, 16]  # the filter counts
    converter = int8_converter(cnn)
    converter._experimental_disable_per_channel = True  # TF's private switch
    assert conv_scales(converter.convert()) == [1, 1]
    converter = int8_converter(cnn)
    converter.weight_granularity = quantkit.Granularity.PER_TENSOR
    assert conv_scales(converter.convert()) == [1, 1]


def _with_sqrt():
    keras = tf.keras
    inputs = keras.Input((6,))
    x = keras.layers.Dense(8, activation="relu")(inputs)
    x = keras.layers.Lambda(lambda t: tf.math.sqrt(t + 1.0), name="root")(x)
    return keras.Model(inputs, keras.layers.Dense(3)(x))


def test_op_without_int8_kernel_is_an_error_with_int8_only_ops():
    rng = np.random.default_rng(0)
    converter = int8_converter(_with_sqrt(), rng.normal(size=(8, 6)).astype(np.float32))
    with pytest.raises(ValueError, match=r"^\[quantization\] 1 op\(s\) have no int8 kernel: "
                                         r"SQRT \(.*root.*\).*TFLITE_BUILTINS"):
        converter.convert()


def test_op_without_int8_kernel_stays_float_with_builtins():
    rng = np.random.default_rng(0)
    model = _with_sqrt()
    data = rng.normal(size=(128, 6)).astype(np.float32)
    converter = int8_converter(model, data[:64], io=tf.float32,
                               ops=[quantkit.OpsSet.TFLITE_BUILTINS])
    # the int8 ADD (x + 1) runs before the float SQRT, which sits between DEQUANTIZE/QUANTIZE
    assert op_types(converter.convert()) == [
        "QUANTIZE", "FULLY_CONNECTED", "ADD", "DEQUANTIZE", "SQRT", "QUANTIZE",
        "FULLY_CONNECTED", "DEQUANTIZE"]
    measured = measure(converter.convert(), [data[64:]], [model(data[64:]).numpy()])
    assert_input_matters(measured)
    assert measured.sqnr > 25, measured


def test_concatenating_a_fixed_scale_with_a_free_one_requantizes():
    rng = np.random.default_rng(0)
    keras = tf.keras
    inputs = keras.Input((4,))
    a = keras.layers.Dense(5, activation="sigmoid")(inputs)  # fixed: 1/256, -128
    b = keras.layers.Dense(5)(inputs)  # its own, much wider range
    model = keras.Model(inputs, keras.layers.Concatenate()([a, b]))
    data = rng.normal(0, 3, (80, 4)).astype(np.float32)
    converted = int8_converter(model, data, io=tf.float32).convert()  # test inside the range
    assert op_types(converted).count("QUANTIZE") == 2  # the model input and the requantize
    measured = measure(converted, [data[16:]], [model(data[16:]).numpy()])
    assert_input_matters(measured)
    assert measured.sqnr > 30, measured


def test_calibration_can_be_saved_and_reused(cnn, tmp_path):
    converter = int8_converter(cnn)
    converter.calibrate().save(tmp_path / "stats.json")
    reused = int8_converter(cnn)
    reused.representative_dataset = samples(IMAGES[:1])  # not used: the stats are given
    reused.calibration_statistics = CalibrationStats.load(tmp_path / "stats.json")
    assert reused.convert() == converter.convert()


def test_default_batch_fits_the_activation_memory_budget(cnn):
    """batch_size=None: rows per forward pass from the observed activations' bytes per row;
    the ranges and channel means come out the same whatever the batch (up to float rounding)."""
    from quantkit.calibrate import MAX_AUTO_BATCH, batch_rows, row_bytes

    graphs = quantkit.TFLiteConverter.from_keras_model(cnn)._float_graphs()
    per_row = row_bytes(graphs[0])
    # Input 28·28·1 + conv 26·26·8 (+ BN, ReLU) + ... floats: at least the first conv's output.
    assert per_row >= 4 * 26 * 26 * 8
    options = quantkit.CalibrationOptions
    assert batch_rows(graphs, options(batch_memory_mb=5 * per_row / 2**20)) == 5
    assert batch_rows(graphs, options(batch_memory_mb=per_row / 2**21)) == 1
    assert batch_rows(graphs, options(batch_memory_mb=1e6)) == MAX_AUTO_BATCH
    assert batch_rows(graphs, options(batch_size=7, batch_memory_mb=1e-6)) == 7
    stats = []
    for budget in (1e6, 3 * per_row / 2**20):  # batches of 24 (all samples) and of 3
        converter = int8_converter(cnn)
        converter.calibration = options(progress=False, batch_memory_mb=budget)
        stats.append(converter.calibrate().for_signature("serving_default"))
    big, small = stats
    assert big.tensors.keys() == small.tensors.keys()
    for name, s in big.tensors.items():  # TF's matmul kernels block by batch: float rounding
        other = small.tensors[name]
        np.testing.assert_allclose([s.min, s.max], [other.min, other.max], rtol=1e-5, atol=1e-7)
    for name, m in big.channel_means.items():
        np.testing.assert_allclose(m.mean, small.channel_means[name].mean, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("form", ["list", "dict", "keyed", "tf.data", "RepresentativeDataset"])
def test_every_dataset_form(form):
    rng = np.random.default_rng(0)
    model = models.two_in_two_out()
    image = rng.normal(size=(8, 1, 16, 16, 3)).astype(np.float32)
    meta = rng.normal(size=(8, 1, 5)).astype(np.float32)
    forms = {
        "list": lambda: ([i, m] for i, m in zip(image, meta)),
        "dict": lambda: ({"image": i, "meta": m} for i, m in zip(image, meta)),
        "keyed": lambda: (("serving_default", {"image": i, "meta": m})
                          for i, m in zip(image, meta)),
        "tf.data": tf.data.Dataset.from_tensor_slices((image, meta)).map(lambda i, m: [i, m]),
        "RepresentativeDataset": quantkit.RepresentativeDataset(
            lambda: ([i, m] for i, m in zip(image, meta))),
    }
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    converter.representative_dataset = forms[form]
    converter.calibration = quantkit.CalibrationOptions(progress=False)
    reference = quantkit.TFLiteConverter.from_keras_model(model)
    reference.optimizations = [quantkit.Optimize.DEFAULT]
    reference.representative_dataset = forms["list"]
    reference.calibration = converter.calibration
    assert converter.convert() == reference.convert()


# What each observer's model scores at least (dB): the 99th-percentile histogram range clips
# outliers, the moving average narrows the ranges of this small calibration set.
OBSERVER_FLOORS = {quantkit.ObserverKind.MIN_MAX: 31, quantkit.ObserverKind.HISTOGRAM: 21,
                   quantkit.ObserverKind.MOVING_AVERAGE_MIN_MAX: 13}


def test_observers_change_the_ranges(cnn):
    kinds = [quantkit.ObserverKind.MIN_MAX, quantkit.ObserverKind.MOVING_AVERAGE_MIN_MAX,
             quantkit.ObserverKind.HISTOGRAM]
    converted = []
    for kind in kinds:
        converter = int8_converter(cnn)
        converter.calibration = quantkit.CalibrationOptions(observer=kind, progress=False,
                                                            percentile=99.0)
        converted.append(converter.convert())
        measured = measure(converted[-1], [TEST], [cnn(TEST).numpy()])
        assert_input_matters(measured)
        assert measured.sqnr > OBSERVER_FLOORS[kind], (kind, str(measured))
    assert len(set(converted)) == 3


# --- bad input: a ValueError naming the phase and the sample/input/tensor -------------------
def _error(converter) -> str:
    with pytest.raises(ValueError) as info:
        converter.convert()
    message = str(info.value)
    assert "Traceback" not in message and ".cc:" not in message
    return message


def test_integer_io_without_quantization(cnn):
    converter = quantkit.TFLiteConverter.from_keras_model(cnn)
    converter.inference_input_type = tf.uint8
    assert _error(converter).startswith(
        "[options] The inference_input_type and inference_output_type must be tf.float32")


def test_int8_ops_without_dataset(cnn):
    converter = int8_converter(cnn)
    converter.representative_dataset = None
    assert _error(converter) == ("[options] For full integer quantization, a "
                                 "`representative_dataset` must be specified.")


def test_integer_io_without_dataset(cnn):
    converter = quantkit.TFLiteConverter.from_keras_model(cnn)
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    converter.inference_output_type = tf.uint8
    message = _error(converter)
    assert message.startswith("[options] inference_input_type=tf.float32, "
                              "inference_output_type=tf.uint8")
    assert "`representative_dataset` must be specified" in message


def test_int16_io_is_not_offered_with_int8(cnn):
    converter = int8_converter(cnn, io=tf.int16)
    assert "must be in ['tf.float32', 'tf.int8', 'tf.uint8']" in _error(converter)


@pytest.mark.parametrize("dataset, expected", [
    (lambda: iter([]), "representative_dataset yielded no samples"),
    (lambda: iter([[IMAGES[:1]], [IMAGES[:1, :27]]]), "sample 1, input"),
    (lambda: iter([[IMAGES[:1]], [IMAGES[:1].astype(np.float64)]]), "sample 1, input"),
    (lambda: iter([[IMAGES[:1], IMAGES[:1]]]), "sample 0"),
    (lambda: iter([[np.full((1, 28, 28, 1), np.nan, np.float32)]]), "sample 0, input"),
])
def test_bad_samples(cnn, dataset, expected):
    converter = int8_converter(cnn)
    converter.representative_dataset = dataset
    message = _error(converter)
    assert message.startswith("[calibration]") and expected in message


def test_dataset_that_is_not_callable(cnn):
    converter = int8_converter(cnn)
    converter.representative_dataset = 42
    assert _error(converter).startswith("[calibration]")


def test_nan_reaching_a_tensor_names_the_tensor_and_sample():
    rng = np.random.default_rng(0)
    keras = tf.keras
    inputs = keras.Input((3,))
    x = keras.layers.Lambda(lambda t: tf.math.rsqrt(t), name="inverse_root")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(x))
    data = np.abs(rng.normal(size=(6, 3))).astype(np.float32) + 0.5
    data[4, 1] = -1.0  # rsqrt(-1) = NaN
    converter = int8_converter(model, data)
    message = _error(converter)
    assert message.startswith("[calibration]") and "sample 4" in message
    assert "inverse_root" in message


def test_bias_correction_removes_the_mean_error():
    rng = np.random.default_rng(0)
    # A normalization folded into the first convolution leaves it reading raw pixels (mean
    # ≈ 128): the weights' rounding error then adds a per-channel offset, which bias
    # correction cancels.
    keras = tf.keras
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Normalization(mean=[120.0, 110.0, 100.0], variance=[3600.0] * 3)(inputs)
    x = keras.layers.Conv2D(16, 3)(x)  # VALID: the normalization folds into it
    model = keras.Model(inputs, keras.layers.Conv2D(8, 1)(x))
    data = rng.uniform(0, 255, (32, 16, 16, 3)).astype(np.float32)
    reference = model(data).numpy()

    def mean_offset(bias_correction: bool) -> float:
        converter = int8_converter(model, data, io=tf.float32)
        converter.bias_correction = bias_correction
        error = run_float(converter.convert(), data) - reference
        return float(np.abs(error.mean(axis=(0, 1, 2))).mean())

    assert mean_offset(True) < 0.5 * mean_offset(False)


def test_dense_layers_per_tensor_when_asked(cnn):
    converter = int8_converter(cnn)
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    sub = read_model(converter.convert()).subgraphs[0]
    scales = {op.type.name: len(sub.tensors[op.inputs[1]].quant.scales) for op in sub.ops
              if op.type.name in ("CONV_2D", "FULLY_CONNECTED")}
    assert scales["FULLY_CONNECTED"] == 1 and scales["CONV_2D"] > 1


def test_tf_attributes_are_accepted_with_tfs_defaults(cnn):
    """Every TF converter attribute quantkit lists exists with TF's own default."""
    ours = quantkit.TFLiteConverter.from_keras_model(cnn)
    theirs = tf.lite.TFLiteConverter.from_keras_model(cnn)
    for name, default in quantkit.converter.TF_COMPAT_ATTRIBUTES.items():
        assert getattr(ours, name) == default
        assert getattr(theirs, name) == default, name


def test_int8_ops_with_float16_among_the_types_take_a_bias_type(cnn):
    """As TF: the INT8 op set makes it full integer even with float16 in supported_types, so
    the int32 bias type is accepted there as it is without float16."""
    converter = int8_converter(cnn)
    converter.target_spec.supported_types = [tf.int8, tf.float16]
    assert converter.resolve_mode().quant is QuantMode.FULL_INTEGER
    converter._experimental_full_integer_quantization_bias_type = tf.int32
    assert converter.resolve_mode().quant is QuantMode.FULL_INTEGER
