"""RNNs (issue #12): Keras LSTM, GRU, SimpleRNN, Bidirectional(LSTM) and LSTM with
return_sequences, trained for a second on MNIST rows (``benchmarks.zoo.rnns``), converted in
float32, dynamic range, int8 and int16x8 and run in LiteRT against the Keras model on other
test rows.

In float32, float16 and dynamic range, LSTM and SimpleRNN loops become TFLite's fused
sequence ops (``frontend.tf_rnn``), with fewer ops than TF's converter writes for the same
Keras 3 layers (a WHILE loop), and other loops (GRU) a WHILE with condition and body subgraphs
(``frontend.tf_while``), with no more ops than TF's; in int8 the LSTM becomes LiteRT's integer
LSTM, GRU and SimpleRNN an integer WHILE whose body computes in int16 (``quantize.loops``);
every RNN in int16x8 (``converter.FUSED_RNNS``) is unrolled (``frontend.tf_loops``). TF's own int8 converter crashes on these models, so int8 is
held to absolute floors and to quantkit's own int16x8 result instead of to TF.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import keras
from ai_edge_litert.interpreter import Interpreter

import quantkit
from benchmarks.zoo import rnns
from quantkit.ir.graph import Graph, Op, Tensor, const
from quantkit.ir import options as o
from quantkit.calibrate import CalibrationOptions, calibrate_graphs, observed_tensors, ranges
from quantkit.converter import ALL_CELLS
from quantkit.litert import Runner, run_float
from quantkit.loop_runtime import LoopStepper, while_ops
from quantkit.passes import run_passes
from quantkit.quantize import quantize_integer
from quantkit.quantize.loops import loop_variables, tied_loop_ranges
from quantkit.quantize.params import constant_range
from quantkit.recipe import Precision, Settings
from quantkit.tflite_io import write_model
from quantkit.runtime import LiteRTExecutor
from quantkit.tflite_io.reader import read_model
from quantkit.passes.zeros import constant_into_summand, zero_products
from quantkit.types import ConversionError, ConversionMode, OpType, QuantMode
from tests.side_by_side import (FLOAT16_FLOOR_DB, FLOAT32_REL, assert_input_matters, convert,
                                keras_converter, measure, run_all)

N_TEST, N_CALIBRATION = 40, 40
# Measured on these lightly trained models (40 rows): int8 37.6 (lstm), 38.4 (gru), 36.5
# (simple_rnn), 33.5 (bidirectional), 28.8 dB (lstm_sequences); int16x8 50.8 dB (lstm).
INT8_FLOOR_DB = 24.0
INT16X8_FLOOR_DB = 44.0
# Dynamic range, int8 weights of a fused LSTM(80) and SimpleRNN(32): measured 38.3 dB
DYNAMIC_FLOOR_DB = 35.0


@pytest.fixture(scope="module")
def data():
    x_train, _, x_test, _ = rnns.sequences()
    return x_train[-N_CALIBRATION:], x_test[:N_TEST]


@pytest.fixture(scope="module")
def models():
    return {family: rnns.rnn_model(family, train_samples=100, epochs=1, eager=True)
            for family in rnns.FAMILIES}


def _reference(model, x):
    return [np.asarray(model(x, training=False))]


LSTM, RNN = "UNIDIRECTIONAL_SEQUENCE_LSTM", "UNIDIRECTIONAL_SEQUENCE_RNN"
# The fused ops each family converts to in float32, and the op count of TF 2.21's float32
# conversion of the same Keras 3 model with batch 1 (all subgraphs: a WHILE, its condition and
# body), measured once with benchmarks.rnn_conversion.tf_float_ops.
FUSED = {"lstm": [LSTM], "gru": [], "simple_rnn": [RNN], "bidirectional_lstm": [LSTM, LSTM],
         "lstm_sequences": [LSTM]}
TF_OPS = {"lstm": 26, "gru": 28, "simple_rnn": 15, "bidirectional_lstm": 52,
          "lstm_sequences": 33}


def _ops(tflite: bytes) -> list[str]:
    return [op.type.name for s in read_model(tflite).subgraphs for op in s.ops]


@pytest.mark.parametrize("family", list(rnns.FAMILIES))
def test_float32_matches_keras(models, data, family):
    calibration, x = data
    model = models[family]
    reference = _reference(model, x)
    tflite = convert(quantkit, keras_converter(model), "float32")
    (out,) = run_all(tflite, [x])
    error = np.max(np.abs(out - reference[0])) / np.max(np.abs(reference[0]))
    assert error <= FLOAT32_REL, f"{family}: relative error {error:.2e}"
    assert_input_matters(measure(tflite, [x], reference))
    ops = _ops(tflite)
    assert [t for t in ops if t in (LSTM, RNN)] == FUSED[family], ops
    assert ops.count("WHILE") == (0 if FUSED[family] else 1), ops  # GRU: a WHILE loop
    assert len(ops) <= TF_OPS[family], ops


@pytest.mark.parametrize("family", ["lstm", "simple_rnn", "lstm_sequences", "gru"])
def test_fused_state_is_reset_on_each_run(models, data, family):
    """LiteRT carries a fused op's state from one invoke to the next; quantkit's runners
    start each from zeros, at any batch: the same rows give the same outputs every time, one
    by one or all at once (the state's dynamic batch resized with the input). A GRU's WHILE
    has no state across invokes; its batch-1 zero state grows to the input's batch in the
    first step (frontend.tf_while)."""
    _, x = data
    tflite = convert(quantkit, keras_converter(models[family]), "float32")
    runner = Runner(tflite)
    first = runner([x[:5]])[0]
    assert np.array_equal(runner([x[:5]])[0], first)  # the same interpreter again
    single = np.concatenate([runner([x[i:i + 1]])[0] for i in range(5)])
    np.testing.assert_allclose(single, first, rtol=0, atol=1e-5 * np.max(np.abs(first)))
    np.testing.assert_array_equal(run_float(tflite, x[:5]), first)
    np.testing.assert_array_equal(runner.run_all([x[:5]], batch=2)[0], first)


def test_dynamic_range_fused_ops_run_on_int8_weights(data):
    """Dynamic range: the fused ops' weight matrices become int8 together (their hybrid
    kernels read them all as int8; each holds ≥ 1024 elements here, as TF requires of every
    one), version 3 (asymmetric inputs), close to Keras."""
    _, x = data
    keras.utils.set_random_seed(1)
    inputs = keras.Input((rnns.STEPS, rnns.FEATURES))
    lstm = keras.layers.LSTM(80, return_sequences=True)(inputs)  # gate matrices 80×14
    rnn = keras.layers.SimpleRNN(32)(lstm)
    model = keras.Model(inputs, keras.layers.Dense(10)(rnn))
    reference = _reference(model, x)
    tflite = convert(quantkit, keras_converter(model), "dynamic_range")
    result = measure(tflite, [x], reference)
    assert_input_matters(result)
    assert result.sqnr >= DYNAMIC_FLOOR_DB, result
    subgraph = read_model(tflite).subgraphs[0]
    fused = {op.type.name: op for op in subgraph.ops if op.type.name in (LSTM, RNN)}
    assert set(fused) == {LSTM, RNN}
    for name, weights in ((LSTM, range(1, 9)), (RNN, (1, 2))):
        op = fused[name]
        assert [subgraph.tensors[op.inputs[i]].dtype for i in weights] == \
            [np.dtype(np.int8)] * len(weights), name
        assert subgraph.tensors[op.inputs[0]].dtype == np.float32
    assert (fused[LSTM].version, fused[RNN].version) == (3, 3)


@pytest.mark.parametrize("family", ["lstm", "simple_rnn"])
def test_float16_keeps_the_fused_op(models, data, family):
    """float16 weights reach the fused op through DEQUANTIZE (measured 71.5 and 64.9 dB)."""
    _, x = data
    model = models[family]
    tflite = convert(quantkit, keras_converter(model), "float16")
    result = measure(tflite, [x], _reference(model, x))
    assert_input_matters(result)
    assert result.sqnr >= FLOAT16_FLOOR_DB, result
    assert [t for t in _ops(tflite) if t in (LSTM, RNN)] == FUSED[family]


@pytest.mark.parametrize("layers, fused", [
    ([keras.layers.LSTM(8, return_sequences=True), keras.layers.LSTM(8)], [LSTM, LSTM]),
    ([keras.layers.LSTM(8, go_backwards=True)], [LSTM]),
    ([keras.layers.SimpleRNN(8, go_backwards=True, return_sequences=True),
      keras.layers.Flatten()], [RNN]),
    ([keras.layers.Bidirectional(keras.layers.LSTM(4, return_sequences=True)),
      keras.layers.Flatten()], [LSTM, LSTM]),
    ([keras.layers.LSTM(8, activation="relu")], []),  # not LiteRT's cell: a WHILE loop
    ([keras.layers.LSTM(8, recurrent_activation="tanh")], []),
    ([keras.layers.SimpleRNN(8, activation="relu")], []),
], ids=["stacked", "go_backwards", "rnn_backwards_sequence", "bidirectional_sequences",
        "relu_loop", "tanh_gates_loop", "rnn_relu_loop"])
def test_layer_variants_fuse_or_loop_and_match_keras(data, layers, fused):
    """Stacked and reversed layers fuse (their reversals are slices); activations LiteRT's
    fused kernels do not compute fall back to a WHILE loop. All match Keras."""
    _, x = data
    keras.utils.set_random_seed(2)
    model = keras.Sequential([keras.Input((rnns.STEPS, rnns.FEATURES)), *layers,
                              keras.layers.Dense(10)])
    reference = _reference(model, x)
    tflite = convert(quantkit, keras_converter(model), "float32")
    (out,) = run_all(tflite, [x])
    assert np.max(np.abs(out - reference[0])) <= FLOAT32_REL * np.max(np.abs(reference[0]))
    assert_input_matters(measure(tflite, [x], reference))
    ops = _ops(tflite)
    assert [t for t in ops if t in (LSTM, RNN)] == fused
    assert ("WHILE" in ops) == (not fused), ops


# A GRU variant, the batch it is converted with, and the loop ops its model holds: returning
# sequences, its items are written by DYNAMIC_UPDATE_SLICE, into zeros that are a FILL at the
# run-time batch where the batch is dynamic (frontend.tf_while).
SEQUENCE_OPS = {"WHILE", "GATHER", "DYNAMIC_UPDATE_SLICE"}


@pytest.mark.parametrize("layer, batch, loop_ops", [
    (lambda: keras.layers.GRU(8, go_backwards=True), None, {"WHILE", "GATHER"}),
    (lambda: keras.layers.GRU(8, reset_after=False), None, {"WHILE", "GATHER"}),
    (lambda: keras.layers.GRU(8, return_sequences=True), N_TEST, SEQUENCE_OPS),
    (lambda: keras.layers.GRU(8, return_sequences=True), None, SEQUENCE_OPS | {"FILL"}),
], ids=["go_backwards", "reset_before", "sequences_static_batch", "sequences_dynamic_batch"])
def test_gru_variants_loop_or_unroll_and_match_keras(data, layer, batch, loop_ops):
    _, x = data
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((rnns.STEPS, rnns.FEATURES), batch_size=batch),
                              layer(), keras.layers.Flatten(), keras.layers.Dense(10)])
    reference = _reference(model, x)
    tflite = convert(quantkit, keras_converter(model), "float32")
    (out,) = run_all(tflite, [x])
    assert np.max(np.abs(out - reference[0])) <= FLOAT32_REL * np.max(np.abs(reference[0]))
    assert_input_matters(measure(tflite, [x], reference))
    ops = set(_ops(tflite))
    assert ops & {"WHILE", "GATHER", "DYNAMIC_UPDATE_SLICE", "FILL", "PACK"} == loop_ops, ops
    if batch is None:  # any batch, one by one or all at once
        runner = Runner(tflite)
        np.testing.assert_allclose(np.concatenate([runner([x[i:i + 1]])[0] for i in range(3)]),
                                   out[:3], rtol=0, atol=1e-5 * np.max(np.abs(out)))


def test_gru_loop_in_weight_only_modes(models, data):
    """float16 and dynamic range keep the WHILE loop; dynamic range makes the body's
    FULLY_CONNECTED weights int8 as in a flat graph (a GRU(40): each matrix ≥ 1024 elements),
    float16 reads them through DEQUANTIZE there."""
    _, x = data
    gru = models["gru"]
    half = convert(quantkit, keras_converter(gru), "float16")
    result = measure(half, [x], _reference(gru, x))
    assert_input_matters(result)
    assert result.sqnr >= FLOAT16_FLOOR_DB, result
    assert "WHILE" in result.ops and "DEQUANTIZE" in _ops(half)
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((rnns.STEPS, rnns.FEATURES)), keras.layers.GRU(40),
                              keras.layers.Dense(10)])
    tflite = convert(quantkit, keras_converter(model), "dynamic_range")
    result = measure(tflite, [x], _reference(model, x))
    assert_input_matters(result)
    assert result.sqnr >= DYNAMIC_FLOOR_DB, result
    body = read_model(tflite).subgraphs[2]
    weights = [body.tensors[op.inputs[1]].dtype for op in body.ops
               if op.type is OpType.FULLY_CONNECTED]
    assert weights == [np.dtype(np.int8)] * 2, weights


def test_saved_model_lstm_matches_keras(models, data, tmp_path):
    """A SavedModel's signature is a function call: its variables are read as constants too,
    so TF knows the cell's shapes there as well."""
    _, x = data
    model = models["lstm"]
    model.export(str(tmp_path / "lstm"), verbose=False)
    tflite = quantkit.TFLiteConverter.from_saved_model(str(tmp_path / "lstm")).convert()
    reference = _reference(model, x)
    (out,) = run_all(tflite, [x])
    assert np.max(np.abs(out - reference[0])) <= FLOAT32_REL * np.max(np.abs(reference[0]))
    assert_input_matters(measure(tflite, [x], reference))
    assert _ops(tflite) == [LSTM, "STRIDED_SLICE", "FULLY_CONNECTED"]




@pytest.mark.parametrize("family", list(rnns.FAMILIES))
def test_int8_runs_and_int16x8_is_better(models, data, family):
    """int8: LSTMs become LiteRT's integer LSTM (one op, quantize.lstm), GRU and SimpleRNN
    an integer WHILE whose body computes in int16 (quantize.loops, plan.recurrent_int16); op
    count ≤ TF's float32 count (TF's int8 converter crashes on these models), the loops'
    with the float model's QUANTIZE/DEQUANTIZE and their int16 output requantized for the int8
    Dense (``passes.loops`` drops the loop variables Keras carries twice)."""
    calibration, x = data
    model = models[family]
    reference = _reference(model, x)
    int8 = measure(convert(quantkit, keras_converter(model), "int8", calibration), [x],
                   reference)
    assert_input_matters(int8)
    assert int8.sqnr >= INT8_FLOOR_DB, f"{family} int8: {int8}"
    assert set(int8.ops) <= {"QUANTIZE", "DEQUANTIZE", "FULLY_CONNECTED", "ADD", "MUL",
                             "LOGISTIC", "TANH", "STRIDED_SLICE", "PACK", "TRANSPOSE",
                             "CONCATENATION", "RESHAPE", "SUB", "SPLIT", LSTM, "WHILE",
                             "LESS", "LOGICAL_AND", "GATHER"}, int8.ops
    if "lstm" in family:
        assert LSTM in int8.ops and len(int8.ops) <= TF_OPS[family], int8.ops
    else:
        ops = _ops(int8.model)
        assert "WHILE" in ops and len(ops) <= TF_OPS[family], ops
    if family == "lstm":
        int16 = measure(convert(quantkit, keras_converter(model), "int16x8", calibration), [x],
                        reference)
        assert int16.sqnr >= max(INT16X8_FLOOR_DB, int8.sqnr), f"int16x8: {int16}"


def test_loop_without_static_trip_count_runs_as_while_in_float_and_int8():
    """A WHILE runs any trip count (here the input's length), in float and in int8 (whose
    calibration replays the loop's body: ``loop_runtime``)."""
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)], autograph=False)
    def cumulative(x):
        n = tf.shape(x)[0]

        def more(i, total):
            return i < n

        def step(i, total):
            return i + 1, total + x[i]

        return tf.while_loop(more, step, [tf.constant(0), tf.constant(0.0)])[1]

    def converter():
        return quantkit.TFLiteConverter.from_concrete_functions(
            [cumulative.get_concrete_function()])

    samples = [np.linspace(-1.0, 2.0, n, dtype=np.float32) for n in (3, 5, 7)]
    int8 = converter()
    int8.optimizations = [quantkit.Optimize.DEFAULT]
    int8.representative_dataset = lambda: ([x] for x in samples)
    for model, tolerance in ((converter().convert(), 1e-6), (int8.convert(), 0.03)):
        assert "WHILE" in _ops(model)
        runner = Interpreter(model_content=model).get_signature_runner()
        for x in samples:
            np.testing.assert_allclose(runner(x=x)["output_0"], x.sum(), rtol=0,
                                       atol=tolerance * np.abs(x).sum())


def test_product_with_zero_becomes_a_constant_the_add_then_drops():
    x = Tensor("x", np.dtype(np.float32), (None, 4))
    gate = Tensor("gate", np.dtype(np.float32), (None, 4))
    product = Tensor("product", np.dtype(np.float32), (None, 4))
    total = Tensor("total", np.dtype(np.float32), (None, 4))
    zeros = const("zeros", np.zeros((1, 4), np.float32))
    graph = Graph(ops=[Op(OpType.MUL, [gate, zeros], [product], o.MulOptions()),
                       Op(OpType.ADD, [x, product], [total], o.AddOptions())],
                  inputs=[x, gate], outputs=[total])
    assert zero_products(graph)
    assert graph.ops[1].inputs[1].is_const and not graph.ops[1].inputs[1].data.any()
    # a product the graph returns stays
    graph = Graph(ops=[Op(OpType.MUL, [gate, zeros], [product], o.MulOptions())],
                  inputs=[gate], outputs=[product])
    assert not zero_products(graph)


def test_bias_after_a_sum_of_matmuls_moves_onto_one_of_them():
    """(x·W + h·U) + b → (x·W + b) + h·U, the same values, and b next to a matmul."""
    f32 = np.dtype(np.float32)
    x, h = Tensor("x", f32, (None, 3)), Tensor("h", f32, (None, 2))
    xw, hu = Tensor("xw", f32, (None, 4)), Tensor("hu", f32, (None, 4))
    total, out = Tensor("sum", f32, (None, 4)), Tensor("out", f32, (None, 4))
    bias = const("b", np.arange(4, dtype=np.float32))
    fc = [Op(OpType.FULLY_CONNECTED, [x, const("w", np.ones((4, 3), np.float32)), None], [xw],
             o.FullyConnectedOptions()),
          Op(OpType.FULLY_CONNECTED, [h, const("u", np.ones((4, 2), np.float32)), None], [hu],
             o.FullyConnectedOptions())]
    graph = Graph(ops=[*fc, Op(OpType.ADD, [xw, hu], [total], o.AddOptions()),
                       Op(OpType.ADD, [total, bias], [out], o.AddOptions())],
                  inputs=[x, h], outputs=[out])
    assert constant_into_summand(graph)
    assert graph.ops[2].inputs == [xw, bias] and graph.ops[3].inputs == [total, hu]
    assert not constant_into_summand(graph)


@pytest.mark.parametrize("family", ["gru", "simple_rnn"])
def test_int8_loop_body_computes_in_int16(models, data, family):
    """Full int8: the WHILE's body computes in int16x8 (``plan.recurrent_int16``: the loop
    op's precision, which ``quantize.loops`` quantizes its subgraphs in), the sequence
    converted to int16 once; a recipe that asks for int8 there gets an int8 body."""
    from quantkit.recipe import Precision, Recipe, Rule, Select, Settings
    from quantkit.tflite_io.reader import read_model

    calibration, x = data
    model = models[family]
    reference = _reference(model, x)

    def int8(recipe: Recipe) -> bytes:
        converter = keras_converter(model)(quantkit)
        converter.recipe = recipe
        return convert(quantkit, lambda _: converter, "int8", calibration)

    default = int8(Recipe())
    forced = int8(Recipe((Rule(Select(op_type="WHILE"), Settings(precision=Precision.INT8)),)))
    cells, plain = measure(default, [x], reference), measure(forced, [x], reference)
    assert_input_matters(cells)
    for model_bytes, dtype in ((default, np.dtype(np.int16)), (forced, np.dtype(np.int8))):
        subgraphs = read_model(model_bytes).subgraphs
        body = {t.dtype for t in subgraphs[2].tensors} - {np.dtype(np.int32)}
        assert dtype in body and np.dtype(np.float32) not in body, body
        main = {t.name: t.dtype for t in subgraphs[0].tensors}
        assert main[next(n for n in main if "dense" in n and "MatMul" in n)] == np.int8
    assert len(cells.ops) <= len(plain.ops) + 2, (cells.ops, plain.ops)
    # measured (40 rows): gru 25.7 -> 37.9 dB, simple_rnn -> 37.1 dB
    assert cells.sqnr >= plain.sqnr + 3.0 and cells.sqnr >= 35.0, (cells, plain)


def test_tf_fused_lstm_reads_back_with_variable_states(data):
    """TF's converter fuses a tf_keras (Keras 2) LSTM; quantkit's .tflite frontend keeps its
    states variable tensors, so the model it writes runs (float32 and dynamic range)."""
    import tf_keras

    _, x = data
    tf_keras.utils.set_random_seed(3)
    model = tf_keras.Sequential([tf_keras.Input((rnns.STEPS, rnns.FEATURES), batch_size=1),
                                 tf_keras.layers.LSTM(24), tf_keras.layers.Dense(10)])
    reference = [np.asarray(model(x))]
    theirs = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    for mode, floor in (("float32", 120.0), ("dynamic_range", 35.0)):  # 137.3, 47.0 dB
        tflite = convert(quantkit, lambda m: m.TFLiteConverter.from_tflite(theirs), mode)
        subgraph = read_model(tflite).subgraphs[0]
        assert sum(t.is_variable for t in subgraph.tensors) == 2
        result = measure(tflite, [x], reference, run=lambda xs: Runner(tflite).run_all(xs))
        assert_input_matters(result)
        assert result.sqnr >= floor, (mode, result)


def _gru_loop_graph(model) -> Graph:
    """The float graph with a WHILE that calibration runs, as quantkit lowers a loop where
    ``converter.FUSED_RNNS`` allows it (the float modes)."""
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    return run_passes(converter._frontend(False, ALL_CELLS)[0])


def test_while_body_is_replayed_and_calibrated_step_by_step(models, data):
    """Calibration observes a WHILE's body (issue #12): its condition and body graphs run as
    LiteRT models of their own from the WHILE's inputs until the condition is false
    (``loop_runtime``). The replayed last step gives the WHILE's outputs of the main graph's
    own LiteRT run; the body's GATHER reads every time step of the input sequence once, so its
    calibrated range is that sequence's, and the body's state range covers the final state."""
    calibration, _ = data
    graph = _gru_loop_graph(models["gru"])
    (loop,) = while_ops(graph)
    body = loop.options.body_subgraph
    values = LiteRTExecutor(graph, observed_tensors(graph))({graph.input_names[0]:
                                                               calibration[:8]})
    steps = LoopStepper(loop).steps(values)
    assert len(steps) == rnns.STEPS
    for out, result in zip(loop.outputs, body.outputs):
        if out.name in values:  # the float loop variables: the state
            scale = np.max(np.abs(values[out.name]))
            assert scale > 0.05, (out.name, scale)
            np.testing.assert_allclose(steps[-1][result.name], values[out.name], rtol=0,
                                       atol=1e-6 * scale, err_msg=out.name)
    options = CalibrationOptions(progress=False, batch_size=8)
    stats = calibrate_graphs([graph], lambda: ([row[None]] for row in calibration), options)
    found = ranges(stats, graph.signature_key, options)
    float_body = [t.name for t in observed_tensors(body)]
    assert float_body and set(float_body) <= set(found), set(float_body) - set(found)
    (gather,) = [op.outputs[0].name for op in body.ops if op.type is OpType.GATHER]
    (sequence,) = [t.name for t in loop.inputs if not t.is_const]
    np.testing.assert_allclose(found[gather], found[sequence], rtol=0, atol=1e-7)
    (k,) = [k for k, (arg, result) in enumerate(zip(body.inputs, body.outputs))
            if result is not arg and np.dtype(result.dtype) == np.float32]
    state = body.outputs[k].name  # the new state (the loop variables: see tf_while)
    final = values[loop.outputs[k].name]
    low, high = found[state]
    assert low <= final.min() and final.max() <= high and high - low > 0.1, (low, high)


def test_loop_variables_get_one_range(models, data):
    """An integer WHILE copies its loop variables' raw values (issue #12): each float loop
    variable (the sequence, the state) has one range over the WHILE's input
    and output, the condition's and body's inputs and the body's output: the union of their
    calibrated ranges (``loops.tied_loop_ranges``), here wider than the WHILE's final state's
    own range (the body's state over every step)."""
    calibration, _ = data
    graph = _gru_loop_graph(models["gru"])
    options = CalibrationOptions(progress=False, batch_size=8)
    stats = calibrate_graphs([graph], lambda: ([row[None]] for row in calibration), options)
    found = ranges(stats, graph.signature_key, options)
    tied = tied_loop_ranges(graph, found)
    variables = loop_variables(graph)
    (loop,) = while_ops(graph)
    # the sequence: the body returns its input as it is (one tensor less)
    assert sorted(map(len, variables)) == [4, 5], variables  # the state (passes.loops)
    for members in variables:
        own = [constant_range(t) if t.is_const else found[t.name] for t in members]
        union = (min(lo for lo, _ in own), max(hi for _, hi in own))
        assert {tied[t.name] for t in members if not t.is_const} == {union}, members
    (state,) = [t for t in loop.outputs if len(graph.consumers().get(t, []))]
    (lo, hi), (own_lo, own_hi) = tied[state.name], found[state.name]
    assert lo <= own_lo and own_hi <= hi and (hi - lo) - (own_hi - own_lo) > 0.05
    assert {k: v for k, v in tied.items() if k not in {t.name for m in variables for t in m}} \
        == {k: v for k, v in found.items() if k in tied and
            k not in {t.name for m in variables for t in m}}


# The GRU's loop quantized as an integer WHILE (quantize.loops), the loop and the Dense after it
# in int16 (measured on these 40 rows: 42.9 dB; body in int8 25.7 dB; the unrolled int8 loop
# the converter wrote before, its cells in int16, 38.2 dB in 251 ops).
INT_WHILE_FLOOR_DB = 40.0
INT_WHILE_OPS = TF_OPS["gru"]  # with QUANTIZE/DEQUANTIZE at the float model's input/output
# and the int8 sequence requantized to the loop's int16


def test_gru_loop_quantizes_as_an_integer_while(models, data):
    """The float GRU loop in int8, the WHILE op and the ops after it in int16 (as
    ``plan.recurrent_int16`` sets unrolled cells, the Dense reading the state): its condition
    and body are quantized too (``quantize.loops``), every loop variable has one type and one
    set of parameters across the op, its condition and body, and the model runs in LiteRT
    close to Keras on held-out rows."""
    calibration, x = data
    model = models["gru"]
    graph = _gru_loop_graph(model)
    options = CalibrationOptions(progress=False, batch_size=8)
    stats = calibrate_graphs([graph], lambda: ([row[None]] for row in calibration), options)
    (loop,) = while_ops(graph)
    quantized, _ = quantize_integer(graph, ranges(stats, graph.signature_key, options),
                                    ConversionMode(QuantMode.FULL_INTEGER),
                                    settings={op: Settings(precision=Precision.INT16)
                                              for op in graph.ops[graph.ops.index(loop):]})
    tflite = write_model([quantized])
    result = measure(tflite, [x], _reference(model, x))
    assert_input_matters(result)
    assert result.sqnr >= INT_WHILE_FLOOR_DB, result
    ops = _ops(tflite)
    assert "WHILE" in ops and len(ops) <= INT_WHILE_OPS, ops
    model_read = read_model(tflite)
    (main_loop,) = [op for op in model_read.subgraphs[0].ops if op.type is OpType.WHILE]
    cond, body = model_read.subgraphs[1:3]
    for i in range(len(main_loop.inputs)):
        members = [model_read.subgraphs[0].tensors[main_loop.inputs[i]],
                   model_read.subgraphs[0].tensors[main_loop.outputs[i]],
                   cond.tensors[cond.inputs[i]], body.tensors[body.inputs[i]],
                   body.tensors[body.outputs[i]]]
        assert len({(t.dtype, t.quant) for t in members}) == 1, members
    assert all(t.dtype != np.float32 for s in model_read.subgraphs[1:] for t in s.tensors)


def test_unrolled_cell_ops_get_int16_in_int8_only():
    """``recurrent_int16`` on a loop quantkit unrolled (ops in ``…/step_k/`` scopes): those
    ops and the value-moving ops between them and the loop get int16 in int8; an op outside
    stays the mode's, and other modes or a recipe's precision are left as they are."""
    from quantkit.quantize.plan import recurrent_int16
    from quantkit.recipe import Precision, Settings
    from quantkit.types import ConversionMode, QuantMode

    f32 = np.dtype(np.float32)
    x, moved, h, y = (Tensor(n, f32, (1, 4)) for n in ("x", "moved", "h", "y"))
    w = const("w", np.eye(4, dtype=np.float32))
    b = const("b", np.zeros(4, np.float32))
    shape = const("shape", np.array([1, 4], np.int32))
    reshape = Op(OpType.RESHAPE, [x, shape], [moved], name="rnn/transpose")
    cell = Op(OpType.FULLY_CONNECTED, [moved, w, b], [h], o.FullyConnectedOptions(),
              name="rnn/while/step_0/MatMul")
    head = Op(OpType.FULLY_CONNECTED, [h, w, b], [y], o.FullyConnectedOptions(),
              name="dense/MatMul")
    graph = Graph([reshape, cell, head], [x], [y])
    settings = {op: Settings() for op in graph.ops}
    int8 = recurrent_int16([graph], settings, ConversionMode(QuantMode.FULL_INTEGER))
    assert [int8[op].precision for op in graph.ops] == [Precision.INT16, Precision.INT16, None]
    assert recurrent_int16([graph], settings, ConversionMode(QuantMode.INT16X8)) == settings
    kept = {**settings, cell: Settings(precision=Precision.INT8)}
    assert recurrent_int16([graph], kept, ConversionMode(QuantMode.FULL_INTEGER))[cell] \
        == Settings(precision=Precision.INT8)
