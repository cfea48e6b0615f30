"""The loop passes (``quantkit.passes.loops``): a WHILE loses the loop variables a Keras RNN
carries twice, and keeps those that only look alike. Each case runs the converted model in
LiteRT against TF (or Keras) on inputs that make a wrong rewrite show."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

import quantkit
import quantkit.passes as passes
from benchmarks.zoo import rnns
from quantkit.converter import ALL_CELLS
from quantkit.ir.graph import subgraphs, while_ops
from quantkit.passes import run_passes
from quantkit.passes.loops import LOOP_PASSES
from quantkit.tflite_io import write_model
from quantkit.tflite_io.reader import read_model
from quantkit.types import OpType
from tests.side_by_side import FLOAT32_REL

RNG = np.random.default_rng(0)


def _gru_graph(monkeypatch, loop_passes: bool, **layer):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((rnns.STEPS, rnns.FEATURES)),
                              keras.layers.GRU(rnns.UNITS, **layer), keras.layers.Dense(3)])
    if not loop_passes:
        monkeypatch.setattr(passes, "PIPELINE", tuple(p for p in passes.PIPELINE
                                                      if p not in LOOP_PASSES))
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    graph = run_passes(converter._frontend(False, ALL_CELLS)[0])
    monkeypatch.undo()
    return model, graph


def _run(tflite: bytes, x: np.ndarray) -> np.ndarray:
    runner = Interpreter(model_content=tflite).get_signature_runner()
    return next(iter(runner(**{runner.get_input_details().popitem()[0]: x}).values()))


def test_keras_gru_loop_keeps_one_counter_one_state_and_the_sequence(monkeypatch):
    """A Keras GRU's loop: the two counters become one, the last-output list goes (the Dense
    reads the state), the sequence is read on axis 1 without the TRANSPOSE, the condition is
    one LESS; the model computes what Keras's does, as the graph without the rewrites does."""
    model, plain = _gru_graph(monkeypatch, loop_passes=False)
    _, graph = _gru_graph(monkeypatch, loop_passes=True)
    (before,), (after,) = while_ops(plain), while_ops(graph)
    assert (len(before.inputs), len(after.inputs)) == (5, 3)
    assert [op.type for op in graph.ops] == [OpType.WHILE, OpType.FULLY_CONNECTED]
    cond, body = after.options.cond_subgraph, after.options.body_subgraph
    assert [op.type for op in cond.ops] == [OpType.LESS]
    assert OpType.RESHAPE not in [op.type for op in body.ops]
    (gather,) = [op for op in body.ops if op.type is OpType.GATHER]
    assert gather.options.axis == 1 and gather.inputs[0] is body.inputs[2]
    x = RNG.uniform(0, 1, (4, rnns.STEPS, rnns.FEATURES)).astype(np.float32)
    reference = np.asarray(model(x))
    for g in (plain, graph):
        out = _run(write_model([g]), x)
        assert np.max(np.abs(out - reference)) <= FLOAT32_REL * np.max(np.abs(reference))
    # the sequence matters: the last step alone changes the output
    y = x.copy()
    y[:, -1] += 1.0
    assert np.max(np.abs(_run(write_model([graph]), y) - reference)) > 1e-3


def test_gru_with_an_initial_state_keeps_its_last_output_list():
    """A state that enters non-zero: after no step the list (zeros) and the state would
    differ, so the list stays; the model matches Keras for any initial state."""
    keras.utils.set_random_seed(0)
    x_in = keras.Input((rnns.STEPS, rnns.FEATURES))
    h_in = keras.Input((rnns.UNITS,))
    out = keras.layers.Dense(3)(keras.layers.GRU(rnns.UNITS)(x_in, initial_state=h_in))
    model = keras.Model([x_in, h_in], out)
    graph = run_passes(quantkit.TFLiteConverter.from_keras_model(model)._frontend(
        False, ALL_CELLS)[0])
    (loop,) = while_ops(graph)
    assert len(loop.inputs) == 4  # one counter, the list, the state, the sequence
    x = RNG.uniform(0, 1, (3, rnns.STEPS, rnns.FEATURES)).astype(np.float32)
    h = RNG.normal(0, 1, (3, rnns.UNITS)).astype(np.float32)
    interpreter = Interpreter(model_content=write_model([graph]))
    runner = interpreter.get_signature_runner()
    names = {d["shape"][-1]: name for name, d in runner.get_input_details().items()}
    (got,) = runner(**{names[rnns.FEATURES]: x, names[rnns.UNITS]: h}).values()
    reference = np.asarray(model([x, h]))
    assert np.max(np.abs(got - reference)) <= FLOAT32_REL * np.max(np.abs(reference))


def _loop_fn(start_j: float, step_j: float, max_iterations: int | None):
    """A loop over ``i < 5`` (TF adds its own int32 counter, bounded by ``max_iterations``)
    with floats ``k`` (0, +1 a step) and ``j`` (``start_j``, +``step_j`` a step)."""
    @tf.function(input_signature=[tf.TensorSpec([4], tf.float32)], autograph=False)
    def fn(x):
        def more(i, j, k, acc):
            return i < 5

        def step(i, j, k, acc):
            return i + 1, j + step_j, k + 1.0, acc * 0.5 + x * j - k

        start = [tf.constant(0), tf.constant(start_j), tf.constant(0.0), tf.zeros([4])]
        return tf.while_loop(more, step, start, maximum_iterations=max_iterations)[3]
    return fn


def _loop_variables(tflite: bytes) -> int:
    (loop,) = [op for op in read_model(tflite).subgraphs[0].ops if op.type is OpType.WHILE]
    return len(loop.inputs)


# TF's counter and i are twins in every case; j and k only where j enters and steps as k. The
# loop's variables: the counter, j, k, acc and x (read by the body), less the twins.
@pytest.mark.parametrize("start_j, step_j, max_iterations, variables", [
    (0.0, 1.0, None, 4),   # j is k at every step
    (1.0, 1.0, None, 5),   # enters differently
    (0.0, 2.0, None, 5),   # steps differently
    (0.0, 1.0, 3, 4),      # counter < 3 and i < 5: one LESS, 3 steps
])
def test_twin_variables_only_when_they_enter_and_step_alike(start_j, step_j, max_iterations,
                                                            variables):
    fn = _loop_fn(start_j, step_j, max_iterations)
    tflite = quantkit.TFLiteConverter.from_concrete_functions(
        [fn.get_concrete_function()]).convert()
    assert _loop_variables(tflite) == variables
    x = np.array([1.0, -2.0, 0.5, 3.0], np.float32)
    np.testing.assert_allclose(_run(tflite, x), fn(x).numpy(), rtol=1e-6)
    cond = read_model(tflite).subgraphs[1]
    assert [op.type for op in cond.ops] == [OpType.LESS]


def test_loop_passes_leave_graphs_without_loops_alone():
    graph = run_passes(quantkit.TFLiteConverter.from_keras_model(keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(2)]))._frontend(False, ALL_CELLS)[0])
    assert not any(p(g) for p in LOOP_PASSES for g in subgraphs([graph]))


def test_a_body_two_loops_run_is_left_as_it_is():
    """Two WHILE ops run one condition and one body (a .tflite may): its variables j and k are
    twins in the first loop (both enter as 0) but not in the second (0 and 5), so a rewrite of
    the shared body would break the second; the loop passes leave such loops alone."""
    from quantkit.ir import options as o
    from quantkit.ir.graph import Graph, Op, Tensor, const

    f32, i32 = np.dtype(np.float32), np.dtype(np.int32)

    def variables(prefix):
        return [Tensor(f"{prefix}/i", i32, ()), Tensor(f"{prefix}/j", f32, ()),
                Tensor(f"{prefix}/k", f32, ()), Tensor(f"{prefix}/acc", f32, (None, 3))]

    i, j, k, acc = variables("cond")
    more = Tensor("cond/more", np.dtype(bool), ())
    cond = Graph([Op(OpType.LESS, [i, const("cond/steps", np.int32(3))], [more])],
                 [i, j, k, acc], [more], name="cond")
    i, j, k, acc = variables("body")
    nxt = [Tensor(f"body/next_{n}", t.dtype, t.shape) for n, t in zip("ijk", (i, j, k))]
    scaled, summed = Tensor("body/scaled", f32, (None, 3)), Tensor("body/summed", f32, (None, 3))
    one = const("body/one", np.float32(1))
    body = Graph([Op(OpType.ADD, [i, const("body/int_one", np.int32(1))], [nxt[0]],
                     o.AddOptions()),
                  Op(OpType.ADD, [j, one], [nxt[1]], o.AddOptions()),
                  Op(OpType.ADD, [k, one], [nxt[2]], o.AddOptions()),
                  Op(OpType.MUL, [acc, k], [scaled], o.MulOptions()),
                  Op(OpType.ADD, [scaled, j], [summed], o.AddOptions())],
                 [i, j, k, acc], [*nxt, summed], name="body")
    x = Tensor("x", f32, (None, 3))
    first = [Tensor(f"first/{n}", t.dtype, t.shape) for n, t in enumerate(body.inputs)]
    second = [Tensor(f"second/{n}", t.dtype, t.shape) for n, t in enumerate(body.inputs)]
    zero, zero_f = const("zero", np.int32(0)), const("zero_f", np.float32(0))
    main = Graph([Op(OpType.WHILE, [zero, zero_f, zero_f, x], first, o.WhileOptions(cond, body)),
                  Op(OpType.WHILE, [zero, zero_f, const("five", np.float32(5)), first[3]],
                     second, o.WhileOptions(cond, body))],
                 [x], [second[3]], ["x"], ["y"])
    graph = run_passes(main)
    assert [len(op.inputs) for op in graph.ops] == [4, 4]
    xs = np.array([[1.0, -2.0, 0.5]], np.float32)

    def loop(acc, j, k):
        for _ in range(3):
            acc, j, k = acc * k + j, j + 1, k + 1
        return acc

    np.testing.assert_allclose(_run(write_model([graph]), xs), loop(loop(xs, 0, 0), 0, 5),
                               rtol=1e-6)


@pytest.mark.parametrize("begin, end, strides, begin_mask, end_mask, item", [
    ([-1], [0], [1], 0, 0, True),                      # quantkit's lowering: axis 0 only
    ([-1, 0, 0], [0, 1, 12], [1, 1, 1], 6, 6, True),   # TF's .tflite: the other axes by mask
    ([0, 0, 0], [1, 1, 12], [1, 1, 1], 0, 0, True),    # ... or by their bounds
    ([0, 0, 0], [1, 1, 6], [1, 1, 1], 0, 0, False),    # half the last axis
    ([0, 0, 0], [1, 1, 12], [1, 1, 2], 0, 0, False),   # every other element
    ([0, 0, 3], [1, 1, 12], [1, 1, 1], 2, 2, False),   # from element 3
])
def test_first_item_of_a_one_item_list(begin, end, strides, begin_mask, end_mask, item):
    """``last_output_variable`` replaces only reads of the whole item by the state."""
    from quantkit.ir import options as o
    from quantkit.ir.graph import Op, Tensor, const
    from quantkit.passes.loops import _first_item

    items = Tensor("items", np.dtype(np.float32), (1, 1, 12))
    op = Op(OpType.STRIDED_SLICE, [items, *(const(n, np.array(v, np.int32)) for n, v in
                                            (("b", begin), ("e", end), ("s", strides)))],
            [Tensor("item", np.dtype(np.float32), (1, 12))],
            o.StridedSliceOptions(begin_mask=begin_mask, end_mask=end_mask, shrink_axis_mask=1))
    assert _first_item(op, items) is item


@pytest.mark.parametrize("op_type, shape, target, swaps", [
    (OpType.TRANSPOSE, (None, 14, 8), [1, 0, 2], True),
    (OpType.TRANSPOSE, (None, 14, 8), [0, 2, 1], False),
    (OpType.RESHAPE, (1, 14, 8), [14, 1, 8], True),    # TF's time-major at batch 1
    (OpType.RESHAPE, (2, 7, 8), [7, 2, 8], False),     # a reshape, not a transpose
    (OpType.RESHAPE, (1, 14, 8), [14, 8, 1], False),
])
def test_what_swaps_the_first_two_axes(op_type, shape, target, swaps):
    from quantkit.ir.graph import Op, Tensor, const
    from quantkit.passes.loops import _swaps_first_axes

    out = [shape[i] for i in target] if op_type is OpType.TRANSPOSE else target
    op = Op(op_type, [Tensor("x", np.dtype(np.float32), shape),
                      const("target", np.array(target, np.int32))],
            [Tensor("y", np.dtype(np.float32), tuple(out))])
    assert _swaps_first_axes(op) is swaps
