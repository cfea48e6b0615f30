"""The float runtime (``quantkit.runtime.LiteRTExecutor``): what it promises calibration.

The observed tensors it returns are the float model's own intermediate values (Keras's layer
outputs on real digits, each varying with the digit); a batch of 5 gives what 5 batches of 1
give, on one interpreter re-allocated only when the batch size changes; fixed-batch graphs are
fed as given; two signatures calibrate separately; the graph it is given is left as it was;
bad inputs, custom ops and kernels LiteRT refuses are calibration errors naming the input or op.

The calibration models it writes are exempt from ``tests/mutation.py`` (their description is
``CALIBRATION_DESCRIPTION``); ``-p tests.mutation --mutate-calibration`` feeds them noise too,
and the tests here that compare values must then fail.
"""

from __future__ import annotations

import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

import calibration
import quantkit
from quantkit.calibrate import calibrate_graphs, CalibrationOptions, observed_tensors
from quantkit.frontend import capture
from quantkit.frontend.lower import lower
from quantkit.ir import options as o
from quantkit.ir.graph import Graph, Op, Tensor, const
from quantkit.passes import run_passes
from quantkit.runtime import CALIBRATION_DESCRIPTION, ExecutorError, LiteRTExecutor
from quantkit.types import ConversionError, OpType
from tests.conftest import assert_matches
from benchmarks.zoo.mnist import digits
from tests.models import sequential_cnn

# The sequential CNN's ops after the passes, and the Keras layer whose output each one's is
# (BatchNorm and the activations fold into the convolutions; dense's TANH stays its own op).
# (op, index in model.layers of the Keras layer whose output it writes); by index, not by
# name: Keras numbers auto-named layers per process, so names depend on the tests run before.
CNN_LAYERS = (("CONV_2D", 3), ("MAX_POOL_2D", 4), ("CONV_2D", 7), ("AVERAGE_POOL_2D", 8),
              ("RESHAPE", 9), ("FULLY_CONNECTED", None), ("TANH", 11),
              ("FULLY_CONNECTED", 12))


@functools.cache
def cnn() -> tuple[keras.Model, Graph]:
    model = sequential_cnn()
    graph = run_passes(lower(capture.capture_keras(model)))
    graph.uniquify_names()
    return model, graph


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return digits(5, "test")  # real digits: every layer's output differs between them


def _tiny(shape: tuple, op_type: OpType, extra: list, options=None, out_shape=None) -> Graph:
    """One op on input ``x``: ``op_type(x, *extra)``."""
    x = Tensor("x", np.dtype(np.float32), shape)
    y = Tensor("y", np.dtype(np.float32), out_shape or shape)
    return Graph([Op(op_type, [x, *extra], [y], options, name="the_op")], [x], [y], ["x"], ["y"])


# --- values ------------------------------------------------------------------------------------
def test_observed_tensors_are_the_float_models_layer_outputs(x):
    model, graph = cnn()
    assert [op.type.name for op in graph.ops] == [t for t, _ in CNN_LAYERS]
    names = [model.layers[i].name for _, i in CNN_LAYERS if i is not None]
    reference = keras.Model(model.inputs, [model.get_layer(n).output for n in names])([x])
    ours = LiteRTExecutor(graph)({graph.input_names[0]: x})
    assert list(ours) == [t.name for t in graph.tensors() if not t.is_const]
    np.testing.assert_array_equal(ours[graph.inputs[0].name], x)
    ops = [op for op, (_, layer) in zip(graph.ops, CNN_LAYERS) if layer is not None]
    for op, name, expected in zip(ops, names, reference):
        expected = np.asarray(expected)
        assert np.ptp(expected.reshape(len(x), -1).sum(axis=1)) > 1e-3, name  # varies with x
        try:
            assert_matches(ours[op.outputs[0].name], expected, rel=1e-5)
        except AssertionError as e:
            raise AssertionError(f"layer {name!r}: {e}") from None


def test_returns_only_the_observed_tensors_in_their_order(x):
    _, graph = cnn()
    wanted = [graph.outputs[0], graph.ops[2].outputs[0], graph.inputs[0]]
    ours = LiteRTExecutor(graph, observe=wanted)({graph.input_names[0]: x})
    assert list(ours) == [t.name for t in wanted]
    everything = LiteRTExecutor(graph)({graph.input_names[0]: x})
    for name, value in ours.items():
        np.testing.assert_array_equal(value, everything[name])


def test_batch_of_5_equals_5_batches_of_1_on_one_interpreter(x):
    _, graph = cnn()
    executor = LiteRTExecutor(graph)
    assert executor.batch_size is None
    allocations = []
    interpreter = executor._interpreter
    original = interpreter.allocate_tensors
    interpreter.allocate_tensors = lambda: allocations.append(1) or original()
    name = graph.input_names[0]
    together = executor({name: x})
    again = executor({name: x})
    alone = [executor({name: x[i:i + 1]}) for i in range(5)]
    assert len(allocations) == 2  # batch 5, then batch 1: the interpreter is kept
    for tensor, value in together.items():
        np.testing.assert_array_equal(again[tensor], value)  # results are copies
        for i in range(5):
            assert alone[i][tensor].shape[0] == 1, tensor
            assert_matches(alone[i][tensor], value[i:i + 1], rel=1e-5)


def test_graph_is_left_as_it_was():
    _, graph = cnn()
    before = (list(graph.ops), list(graph.inputs), list(graph.outputs), list(graph.output_names),
              [[t.name for t in op.outputs] for op in graph.ops])
    LiteRTExecutor(graph, observed_tensors(graph))
    after = (graph.ops, graph.inputs, graph.outputs, graph.output_names,
             [[t.name for t in op.outputs] for op in graph.ops])
    assert before == after


# --- batches and signatures ------------------------------------------------------------------
def test_fixed_batch_graph_is_fed_as_given():
    graph = _tiny((2, 1, 4, 1), OpType.SQUEEZE, [], o.SqueezeOptions(), (2, 4))
    executor = LiteRTExecutor(graph)
    assert executor.batch_size == 2
    value = np.arange(8, dtype=np.float32).reshape(2, 1, 4, 1)
    np.testing.assert_array_equal(executor({"x": value})["y"], value.reshape(2, 4))
    with pytest.raises(ExecutorError,
                       match=r"input 'x' has shape \[3, 1, 4, 1\]; .*\[2, 1, 4, 1\]"):
        executor({"x": np.zeros((3, 1, 4, 1), np.float32)})


def test_two_signatures_calibrate_separately():
    double = _tiny((None, 3), OpType.MUL, [const("two", np.float32(2))])
    double.signature_key = "double"
    negate = _tiny((None, 3), OpType.NEG, [])
    negate.signature_key = "negate"
    rows = np.linspace(-1, 3, 12, dtype=np.float32).reshape(4, 3)
    samples = [(key, {"x": row[None]}) for row in rows for key in ("double", "negate")]
    stats = calibrate_graphs([double, negate], lambda: samples, CalibrationOptions(batch_size=3))
    for key, low, high in (("double", -2, 6), ("negate", -3, 1)):
        y = stats.for_signature(key).tensors["y"]
        assert (y.min, y.max) == (low, high), key
        assert stats.for_signature(key).num_samples == 4


# --- errors ------------------------------------------------------------------------------------
def test_input_names_are_checked():
    graph = _tiny((None, 3), OpType.NEG, [])
    executor = LiteRTExecutor(graph)
    with pytest.raises(ExecutorError, match=r"input 'x' is missing"):
        executor({})
    with pytest.raises(ExecutorError, match=r"unknown inputs \['z'\]"):
        executor({"x": np.zeros((1, 3), np.float32), "z": np.zeros(1)})


def test_repeated_tensor_names_and_unknown_observed_tensors():
    graph = _tiny((None, 3), OpType.NEG, [])
    graph.outputs[0].name = "x"
    with pytest.raises(ExecutorError, match=r"unique.*\['x'\]"):
        LiteRTExecutor(graph)
    graph = _tiny((None, 3), OpType.NEG, [])
    with pytest.raises(ExecutorError, match=r"does not use the observed tensors \['elsewhere'\]"):
        LiteRTExecutor(graph, [Tensor("elsewhere", np.dtype(np.float32), (1,))])


def test_a_kernel_litert_refuses_names_the_op():
    graph = _tiny((2, 2, 3), OpType.RESHAPE, [const("shape", [5, -1], np.int32)],
                  out_shape=(5, None))
    with pytest.raises(ExecutorError, match=r"\[calibration\] .*RESHAPE op 'the_op'"):
        LiteRTExecutor(graph)


def test_nan_names_the_tensor_and_the_sample():
    graph = _tiny((None, 3), OpType.RSQRT, [])
    data = np.ones((6, 3), np.float32)
    data[4, 1] = -1.0  # rsqrt(-1) = NaN
    with pytest.raises(calibration.CalibrationError, match=r"sample 4, tensor 'y'.*NaN"):
        calibrate_graphs([graph], lambda: ([row[None]] for row in data),
                         CalibrationOptions(batch_size=4))


def test_custom_op_in_a_calibrated_model_is_a_calibration_error_naming_it():
    @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
    def f(x):
        return tf.math.cumsum(tf.nn.relu(x), axis=1, name="running_total")

    converter = quantkit.TFLiteConverter.from_concrete_functions([f.get_concrete_function()], f)
    converter.allow_custom_ops = True
    converter.optimizations = [quantkit.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([np.ones((1, 4), np.float32)] for _ in range(2))
    with pytest.raises(ConversionError) as error:
        converter.convert()
    message = str(error.value)
    assert message.startswith("[calibration]"), message
    assert "CUSTOM (Cumsum) op 'running_total'" in message and "\n" not in message


def test_calibration_models_carry_the_marker_the_mutation_check_skips():
    from tests import mutation

    assert CALIBRATION_DESCRIPTION.encode().startswith(mutation.CALIBRATION_MARKER)
    assert not CALIBRATION_DESCRIPTION.startswith("quantkit ")  # not a converted model's


def test_views_equal_copies_and_must_not_be_held_through_the_next_call(x):
    _, graph = cnn()
    name = graph.input_names[0]
    copies = LiteRTExecutor(graph)({name: x})
    executor = LiteRTExecutor(graph, copy=False)
    views = executor({name: x})
    for tensor, value in copies.items():
        np.testing.assert_array_equal(views[tensor], value)
    assert not views[graph.outputs[0].name].flags.writeable
    with pytest.raises(ExecutorError, match=r"previous call .* still held"):
        executor({name: x})
    del views
    np.testing.assert_array_equal(executor({name: x})[graph.outputs[0].name],
                                  copies[graph.outputs[0].name])
