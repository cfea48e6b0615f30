"""One test per integer rule of the op table (``quantkit.ops``: each spec's ``quant``), per scheme.

Each row's op is built as a one-op IR graph, calibrated on random data through the real
calibration stage, quantized with int8 model IO and the INT8-only op set, and run in LiteRT:
- structure: the op is there and no float tensor is left;
- parameters: SHARED outputs carry their inputs' parameters, FIXED outputs the spec's,
  weights one scale per output channel and the bias ``s_input·s_weight``;
- numerics: on fresh test data (another seed, drawn 1.25 × wider than the calibration data, so
  some values fall outside the calibrated range), the dequantized output against what an
  ideal quantized op gives: the float graph in LiteRT on the inputs clamped to their quantized
  range, its output clamped to the output's (SQNR), and better than on shuffled test samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pytest

from quantkit.calibrate import CalibrationOptions, calibrate_graphs, ranges
from quantkit.ir import options as o
from quantkit.ir.graph import Graph, Op, Tensor, const
from quantkit.metrics import sqnr_db
from quantkit.quantize import quantize_integer
from quantkit.ops import OPS, OutputRule
from quantkit.quantize.schemes import scheme_for
from quantkit.tflite_io import write_model
from quantkit.tflite_io.reader import read_model
from quantkit.types import (ConversionMode, Granularity, OpType, Padding, QuantMode,
                            TensorType)
from tests.side_by_side import INPUT_MATTERS_DB, flat, run_all

F32 = np.dtype(np.float32)
W = np.random.default_rng(7)


def _w(*shape) -> np.ndarray:
    return W.normal(0, 0.5, shape).astype(np.float32)


def _i32(*values) -> Tensor:
    return const("operand", np.array(values, np.int32))


@dataclass
class Case:
    """A one-op graph: inputs (shapes, drawn from ``draw``), extra operands, options."""

    op: OpType
    inputs: list[tuple[int, ...]]
    operands: list[Tensor | None] = field(default_factory=list)  # appended after the inputs
    options: object = None
    outputs: int = 1
    draw: Callable[[np.random.Generator, tuple], np.ndarray] = (
        lambda rng, shape: rng.normal(0, 2, shape))
    order: list[int] | None = None  # positions of [inputs..., operands...] in the op's inputs
    min_sqnr: float = 30.0
    int_output: bool = False
    out_dtype: str = "int32"  # of an integer output (comparisons: bool)
    agreement: float = 1.0  # integer outputs: the share that must equal the ideal op's
    skip: tuple[str, ...] = ()  # schemes (``SCHEMES``) the case's graph has no kernels for

    def graph(self) -> Graph:
        xs = [Tensor(f"x{i}", F32, shape) for i, shape in enumerate(self.inputs)]
        args = [*xs, *self.operands]
        if self.order is not None:
            args = [args[i] for i in self.order]
        out_dtype = np.dtype(self.out_dtype) if self.int_output else F32
        outs = [Tensor(f"y{i}", out_dtype, None) for i in range(self.outputs)]
        op = Op(self.op, args, outs, self.options, name=self.op.name.lower())
        return Graph([op], xs, outs, [x.name for x in xs], [y.name for y in outs])


def _lstm_operands(units: int = 4, features: int = 3) -> list[Tensor | None]:
    """UNIDIRECTIONAL_SEQUENCE_LSTM's inputs 1–23 (``quantize.lstm.LstmInput``): gate
    weights and biases, no peepholes, projection or layer norm, zero variable states."""
    weights = [const(f"w_x{g}", _w(units, features)) for g in "ifco"]
    recurrent = [const(f"w_h{g}", _w(units, units)) for g in "ifco"]
    biases = [const(f"b_{g}", _w(units) + (1.0 if g == "f" else 0.0)) for g in "ifco"]
    states = [Tensor(name, F32, (1, units), is_variable=True) for name in ("h", "c")]
    return [*weights, *recurrent, None, None, None, *biases, None, None, *states,
            None, None, None, None]


_POOL = o.Pool2DOptions(Padding.SAME, 2, 2, 2, 2)
_POSITIVE = lambda rng, shape: rng.uniform(0.25, 4.0, shape)  # noqa: E731
_IMG = (1, 6, 6, 3)


def _loop() -> o.WhileOptions:
    """A loop of three steps over (s, c): s ← 0.9·s, c ← c + 1 while c < 2.5 (c from 0, a
    float counter: the one-op case's inputs and outputs are float)."""
    def args(scope: str) -> list[Tensor]:
        return [Tensor(f"{scope}/s", F32, (2, 3)), Tensor(f"{scope}/c", F32, ())]

    s, c = args("cond")
    more = Tensor("cond/more", np.dtype(np.bool_), ())
    cond = Graph([Op(OpType.LESS, [c, const("cond/n", np.float32(2.5))], [more])], [s, c],
                 [more], [s.name, c.name], [more.name], name="cond")
    s, c = args("body")
    s2, c2 = Tensor("body/s2", F32, (2, 3)), Tensor("body/c2", F32, ())
    body = Graph([Op(OpType.MUL, [s, const("body/k", np.float32(0.9))], [s2], o.MulOptions()),
                  Op(OpType.ADD, [c, const("body/one", np.float32(1.0))], [c2], o.AddOptions())],
                 [s, c], [s2, c2], [s.name, c.name], [s2.name, c2.name], name="body")
    return o.WhileOptions(cond, body)


CASES: dict[OpType, Case] = {
    OpType.CONV_2D: Case(OpType.CONV_2D, [_IMG], [const("w", _w(4, 3, 3, 3)),
                                                  const("b", _w(4))],
                         o.Conv2DOptions(Padding.SAME)),
    OpType.DEPTHWISE_CONV_2D: Case(
        OpType.DEPTHWISE_CONV_2D, [_IMG], [const("w", _w(1, 3, 3, 6)), const("b", _w(6))],
        o.DepthwiseConv2DOptions(Padding.VALID, depth_multiplier=2)),
    OpType.FULLY_CONNECTED: Case(OpType.FULLY_CONNECTED, [(8, 5)],
                                 [const("w", _w(4, 5)), const("b", _w(4))],
                                 o.FullyConnectedOptions()),
    OpType.TRANSPOSE_CONV: Case(
        OpType.TRANSPOSE_CONV, [(1, 3, 3, 3)],
        [_i32(1, 6, 6, 4), const("w", _w(4, 3, 3, 3)), const("b", _w(4))],
        o.TransposeConvOptions(Padding.SAME, 2, 2), order=[1, 2, 0, 3]),
    OpType.ADD: Case(OpType.ADD, [_IMG, _IMG], options=o.AddOptions()),
    OpType.SUB: Case(OpType.SUB, [_IMG, _IMG], options=o.SubOptions()),
    OpType.MUL: Case(OpType.MUL, [_IMG, _IMG], options=o.MulOptions()),
    OpType.SQUARED_DIFFERENCE: Case(OpType.SQUARED_DIFFERENCE, [_IMG, _IMG]),
    OpType.BATCH_MATMUL: Case(OpType.BATCH_MATMUL, [(2, 3, 4), (2, 4, 5)],
                              options=o.BatchMatMulOptions()),
    OpType.PRELU: Case(OpType.PRELU, [_IMG], [const("alpha", np.array([0.1, -0.3, 0.5],
                                                                     np.float32))]),
    OpType.MEAN: Case(OpType.MEAN, [_IMG], [_i32(1, 2)], o.ReducerOptions(keep_dims=True)),
    OpType.SUM: Case(OpType.SUM, [_IMG], [_i32(1, 2)], o.ReducerOptions(keep_dims=True)),
    OpType.RELU: Case(OpType.RELU, [_IMG]),
    OpType.RELU6: Case(OpType.RELU6, [_IMG], draw=lambda rng, s: rng.normal(2, 4, s)),
    OpType.RELU_N1_TO_1: Case(OpType.RELU_N1_TO_1, [_IMG]),
    OpType.LEAKY_RELU: Case(OpType.LEAKY_RELU, [_IMG], options=o.LeakyReluOptions(0.2)),
    OpType.HARD_SWISH: Case(OpType.HARD_SWISH, [_IMG]),
    OpType.GELU: Case(OpType.GELU, [_IMG], options=o.GeluOptions()),
    OpType.RSQRT: Case(OpType.RSQRT, [_IMG], draw=_POSITIVE),
    OpType.EXP: Case(OpType.EXP, [_IMG], draw=lambda rng, s: rng.uniform(-3, 1, s)),
    OpType.SOFTMAX: Case(OpType.SOFTMAX, [(2, 10)], options=o.SoftmaxOptions(1.0)),
    OpType.LOGISTIC: Case(OpType.LOGISTIC, [_IMG]),
    OpType.TANH: Case(OpType.TANH, [_IMG]),
    OpType.MAX_POOL_2D: Case(OpType.MAX_POOL_2D, [_IMG], options=_POOL),
    OpType.AVERAGE_POOL_2D: Case(OpType.AVERAGE_POOL_2D, [_IMG], options=_POOL),
    OpType.RESHAPE: Case(OpType.RESHAPE, [_IMG], [_i32(1, 108)]),
    OpType.SQUEEZE: Case(OpType.SQUEEZE, [(1, 6, 1, 3)], options=o.SqueezeOptions((2,))),
    OpType.EXPAND_DIMS: Case(OpType.EXPAND_DIMS, [_IMG], [_i32(1)]),
    OpType.TRANSPOSE: Case(OpType.TRANSPOSE, [_IMG], [_i32(0, 3, 1, 2)]),
    OpType.PAD: Case(OpType.PAD, [_IMG], [const("pads", np.array(
        [[0, 0], [1, 1], [2, 0], [0, 0]], np.int32))]),
    OpType.PADV2: Case(OpType.PADV2, [_IMG], [
        const("pads", np.array([[0, 0], [1, 1], [1, 1], [0, 0]], np.int32)),
        const("value", np.array(0.5, np.float32))]),
    OpType.STRIDED_SLICE: Case(OpType.STRIDED_SLICE, [_IMG],
                               [_i32(0, 1, 0, 0), _i32(1, 5, 6, 2), _i32(1, 2, 1, 1)],
                               o.StridedSliceOptions()),
    OpType.GATHER: Case(OpType.GATHER, [(5, 3)], [_i32(4, 0, 2)], o.GatherOptions()),
    OpType.TILE: Case(OpType.TILE, [(1, 2, 3)], [_i32(2, 1, 2)]),
    OpType.DEPTH_TO_SPACE: Case(OpType.DEPTH_TO_SPACE, [(1, 3, 3, 8)],
                                options=o.DepthToSpaceOptions(2)),
    OpType.RESIZE_NEAREST_NEIGHBOR: Case(OpType.RESIZE_NEAREST_NEIGHBOR, [_IMG], [_i32(9, 12)],
                                         o.ResizeNearestNeighborOptions()),
    OpType.RESIZE_BILINEAR: Case(OpType.RESIZE_BILINEAR, [_IMG], [_i32(9, 12)],
                                 o.ResizeBilinearOptions(half_pixel_centers=True)),
    OpType.REDUCE_MAX: Case(OpType.REDUCE_MAX, [_IMG], [_i32(1, 2)], o.ReducerOptions()),
    OpType.CONCATENATION: Case(
        OpType.CONCATENATION, [_IMG, _IMG], options=o.ConcatenationOptions(axis=3)),
    OpType.PACK: Case(OpType.PACK, [(2, 3), (2, 3)], options=o.PackOptions(2)),
    OpType.MAXIMUM: Case(OpType.MAXIMUM, [_IMG, _IMG]),
    OpType.MINIMUM: Case(OpType.MINIMUM, [_IMG, _IMG]),
    OpType.SHAPE: Case(OpType.SHAPE, [_IMG], options=o.ShapeOptions(), int_output=True),
    # --- issue #12 ---
    OpType.ABS: Case(OpType.ABS, [_IMG]),
    OpType.LOG: Case(OpType.LOG, [_IMG], draw=_POSITIVE),
    OpType.REDUCE_MIN: Case(OpType.REDUCE_MIN, [_IMG], [_i32(1, 2)], o.ReducerOptions()),
    OpType.ARG_MAX: Case(OpType.ARG_MAX, [(4, 10)], [_i32(1)], o.ArgMaxOptions(TensorType.INT32),
                         int_output=True, agreement=0.85),
    OpType.ARG_MIN: Case(OpType.ARG_MIN, [(4, 10)], [_i32(1)], o.ArgMinOptions(TensorType.INT32),
                         int_output=True, agreement=0.85),
    OpType.SPLIT: Case(OpType.SPLIT, [_IMG], [_i32(3)], o.SplitOptions(3), outputs=3,
                       order=[1, 0]),
    OpType.UNPACK: Case(OpType.UNPACK, [_IMG], [], o.UnpackOptions(6, 1), outputs=6),
    OpType.SPLIT_V: Case(OpType.SPLIT_V, [_IMG], [_i32(1, 2), _i32(3)], o.SplitVOptions(2),
                         outputs=2),
    # against a threshold whose scale differs from x's, as in tf.where(x > 0.3, ...)
    **{t: Case(t, [_IMG], [const("threshold", np.array(0.3, np.float32))], int_output=True,
               out_dtype="bool", agreement=0.97, min_sqnr=10.0)
       for t in (OpType.LESS, OpType.LESS_EQUAL, OpType.GREATER, OpType.GREATER_EQUAL)},
    OpType.SELECT_V2: Case(OpType.SELECT_V2, [_IMG, _IMG], [const(
        "condition", np.random.default_rng(3).uniform(size=_IMG) > 0.5)], order=[2, 0, 1]),
    # LiteRT's integer LSTM (quantize.lstm): int8 hidden state fed back at every step
    OpType.UNIDIRECTIONAL_SEQUENCE_LSTM: Case(
        OpType.UNIDIRECTIONAL_SEQUENCE_LSTM, [(1, 6, 3)], _lstm_operands(),
        o.UnidirectionalSequenceLSTMOptions(), min_sqnr=25.0),
    # issue #12: each loop variable one set of parameters (quantize.loops)
    # (its condition compares a float counter: LESS has no int16 kernel; a Keras loop's
    # compares int32 counters, tests/test_rnn.py)
    OpType.WHILE: Case(OpType.WHILE, [(2, 3)], [const("c0", np.float32(0.0))], _loop(),
                       outputs=2, skip=("int16x8",)),
}

INT8_IO = ConversionMode(QuantMode.FULL_INTEGER, integer_only=True,
                         input_type=TensorType.INT8, output_type=TensorType.INT8)
INT16_IO = ConversionMode(QuantMode.INT16X8, integer_only=True,
                          input_type=TensorType.INT16, output_type=TensorType.INT16)
UINT8_IO = ConversionMode(QuantMode.LEGACY_UINT8, integer_only=True,
                          input_type=TensorType.UINT8, output_type=TensorType.UINT8)


def test_every_rule_has_a_case():
    assert set(CASES) == {t for t, spec in OPS.items() if spec.quant is not None}


def _calibration_data(case: Case, n: int = 24) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(1)
    return [[case.draw(rng, shape).astype(np.float32) for shape in case.inputs]
            for _ in range(n)]


def quantized(case: Case, mode: ConversionMode = INT8_IO) -> tuple[bytes, bytes]:
    """(float model, quantized model) of the case's graph, calibrated on its data and
    quantized in ``mode`` (int8, int16x8 or legacy uint8)."""
    data = _calibration_data(case)
    graph = case.graph()
    graph.uniquify_names()  # as run_passes does right after lowering
    options = CalibrationOptions(progress=False)
    stats = calibrate_graphs([graph], lambda: iter(data), options)
    quantized_graph, _ = quantize_integer(graph, ranges(stats, graph.signature_key, options),
                                          mode)
    return write_model([graph]), write_model([quantized_graph])  # the float graph unchanged


SCHEMES = {"int8": (INT8_IO, 0.0), "int16x8": (INT16_IO, 10.0), "uint8": (UINT8_IO, -2.0)}
ROWS = [(name, op_type) for name, (mode, _) in SCHEMES.items() for op_type in CASES
        if OPS[op_type].rule_for(mode.quant) is not None and name not in CASES[op_type].skip]


@pytest.mark.parametrize("scheme, op_type", ROWS, ids=[f"{s}-{t.name}" for s, t in ROWS])
def test_rule(scheme, op_type):
    """``SCHEMES``: each scheme's model IO, and its SQNR bar relative to the case's int8 one.

    The SHAPE rows' integer output is the input's shape, whatever its values: fed other values
    of the same shape (``tests/mutation.py``) they still pass, as they should.
    """
    mode, sqnr_offset = SCHEMES[scheme]
    storage = scheme_for(mode)
    case, rule, layout = CASES[op_type], OPS[op_type].quant, OPS[op_type].weights
    float_model, int_model = quantized(case, mode)
    sub = read_model(int_model).subgraphs[0]
    (op,) = sub.ops
    assert op.type == op_type
    tensors = sub.tensors
    assert all(t.dtype != F32 for t in tensors), [(t.name, t.dtype) for t in tensors]

    act_dtype = storage.activations.dtype
    acts = [tensors[op.inputs[i]] for i in rule.activation_inputs(len(op.inputs))
            if op.inputs[i] >= 0]
    outs = [tensors[i] for i in op.outputs]
    assert all(t.dtype == act_dtype and len(t.quant.scales) == 1 for t in acts)
    assert all(t.dtype == (np.dtype(case.out_dtype) if case.int_output else act_dtype)
               for t in outs)
    if storage.activations.symmetric:
        assert {z for t in acts + outs if t.quant for z in t.quant.zero_points} <= {0}
    if rule.output is OutputRule.SHARED:
        assert {t.quant for t in acts + outs} == {outs[0].quant}
    if rule.output is OutputRule.FIXED:
        assert outs[0].quant == storage.fixed(rule.fixed)
    if layout is not None:
        w = tensors[op.inputs[layout.weights_input]]
        bias = tensors[op.inputs[layout.bias_input]]
        channels = w.shape[layout.output_axis] if storage.per_channel else 1
        assert w.dtype == storage.weights.dtype and len(w.quant.scales) == channels
        if storage.weights.symmetric:
            assert set(w.quant.zero_points) == {0} and np.abs(w.data).max() <= 127
        assert bias.dtype in (np.int32, np.int64) and len(bias.quant.scales) == channels
        (s_in,) = acts[0].quant.scales
        np.testing.assert_allclose(bias.quant.scales, np.float32(s_in) * np.float32(
            w.quant.scales), rtol=1e-6)

    tests = _test_data(case)
    in_ranges, out_ranges = _ranges(sub, sub.inputs), _ranges(sub, sub.outputs)
    assert any(((x < lo) | (x > hi)).any() for xs in tests for x, (lo, hi) in
               zip(xs, in_ranges)), "no test value outside the quantized range"
    expected = [[np.clip(y, *r) for y, r in zip(
        run_all(float_model, [np.clip(x, *r) for x, r in zip(xs, in_ranges)]), out_ranges)]
        for xs in tests]
    actual = [run_all(int_model, xs) for xs in tests]
    if case.int_output:  # near ties, rounding may pick the other answer (ARG_MAX, LESS)
        equal = np.mean([np.mean(y == ref) for ys, refs in zip(actual, expected)
                         for y, ref in zip(ys, refs)])
        assert equal >= case.agreement, f"{equal:.3f} of the outputs agree"
        if case.agreement < 1.0:  # and fed other samples, far fewer agree
            wrong = [run_all(int_model, xs) for xs in tests[1:] + tests[:1]]
            assert np.mean([np.mean(y == ref) for ys, refs in zip(wrong, expected)
                            for y, ref in zip(ys, refs)]) < equal - 0.2
        return
    wrong = [run_all(int_model, xs) for xs in tests[1:] + tests[:1]]  # shuffled samples
    sqnr, shuffled_sqnr = (sqnr_db(flat(sum(expected, [])), flat(sum(ys, [])))
                           for ys in (actual, wrong))
    bar = case.min_sqnr + sqnr_offset
    assert sqnr >= bar, f"SQNR {sqnr:.1f} dB < {bar}"
    assert sqnr >= shuffled_sqnr + INPUT_MATTERS_DB, (sqnr, shuffled_sqnr)
    # The samples drawn as the calibration ones were: against the float op itself, unclamped
    # (ranges narrower than the calibration data's would clamp them).
    plain = [i for i, k in enumerate(TEST_WIDENING) if k == 1.0]
    float_sqnr = sqnr_db(flat(sum((run_all(float_model, tests[i]) for i in plain), [])),
                         flat(sum((actual[i] for i in plain), [])))
    assert float_sqnr >= bar, f"SQNR against the float op {float_sqnr:.1f} dB < {bar}"


# Per test sample, how much wider than the calibration values its values are drawn.
TEST_WIDENING = (1.0, 1.0, 1.25, 1.5, 2.0, 4.0)


def _test_data(case: Case) -> list[list[np.ndarray]]:
    """Samples unlike the calibration ones: another seed, values spread ``TEST_WIDENING`` ×
    wider around the draw's median (in log space for a positive draw, which stays in the op's
    domain), so some fall outside the calibrated range."""
    def widen(x: np.ndarray, k: float) -> np.ndarray:
        if x.min() > 0:
            return np.exp(widen(np.log(x), k))
        return np.median(x) + k * (x - np.median(x))

    rng = np.random.default_rng(2)
    return [[widen(case.draw(rng, shape), k).astype(np.float32) for shape in case.inputs]
            for k in TEST_WIDENING]


def _ranges(sub, indices: list[int]) -> list[tuple[float, float]]:
    """The real range each tensor's quantization represents: ``s·(q − z)`` for q over the
    integer type (unbounded for an unquantized tensor)."""
    ranges = []
    for i in indices:
        t = sub.tensors[i]
        if t.quant is None or not np.issubdtype(t.dtype, np.integer):
            ranges.append((-np.inf, np.inf))
            continue
        info = np.iinfo(t.dtype)
        (s,), (z,) = t.quant.scales, t.quant.zero_points
        ranges.append((s * (info.min - z), s * (info.max - z)))
    return ranges


def test_per_tensor_weights_get_one_scale():
    case = CASES[OpType.CONV_2D]
    mode = ConversionMode(QuantMode.FULL_INTEGER, Granularity.PER_TENSOR, integer_only=True,
                          input_type=TensorType.INT8, output_type=TensorType.INT8)
    sub = read_model(quantized(case, mode)[1]).subgraphs[0]
    w = sub.tensors[sub.ops[0].inputs[1]]
    bias = sub.tensors[sub.ops[0].inputs[2]]
    assert len(w.quant.scales) == 1 and len(bias.quant.scales) == 1
