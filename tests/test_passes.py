"""Each pass on hand-built IR graphs: the structure it leaves, and LiteRT numerics unchanged.

Every case builds the same graph twice, runs one pass on one copy, writes both with the
writer and runs both in LiteRT on the same input: the outputs must agree.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pytest

from quantkit.ir import options as o
from quantkit.ir.graph import Graph, Op, Tensor, const
from quantkit.passes import run_passes
from quantkit.passes.affine import fold_affine_into_next, merge_affine_chains, shift_before_scale
from quantkit.passes.cleanup import (absorb_negation, constant_operands, drop_zero_bias,
                                     noop_elementwise, static_reshapes)
from quantkit.passes.fold_batchnorm import fold_batchnorm
from quantkit.ops import OPS
from quantkit.passes.fold_constants import fold_constants, try_fold
from quantkit.passes.fuse_activations import fuse_activations
from quantkit.passes.pad import fold_pad_into_conv, mul_through_pad, same_padding
from quantkit.passes.patterns import gelu, hard_swish, nd_fully_connected, prelu, upsample_nearest
from quantkit.tflite_io import write_model
from quantkit.types import Activation, OpType, Padding
from tests.conftest import assert_matches, run_single

F32 = np.float32
RNG = np.random.default_rng(0)
W_CONV = RNG.normal(size=(4, 3, 3, 3)).astype(F32)  # OHWI
W_DW = RNG.normal(size=(1, 3, 3, 3)).astype(F32)
W_FC = RNG.normal(size=(5, 6)).astype(F32)
CHANNELS3 = np.array([0.5, 2.0, -1.5], F32)
CHANNELS4 = np.array([0.5, 2.0, -1.5, 1.25], F32)


class Builder:
    """Appends ops to a graph with one float input; ``t`` makes fresh activation tensors."""

    def __init__(self, shape: tuple):
        self.x = Tensor("x", np.dtype(F32), shape)
        self.graph = Graph(inputs=[self.x], input_names=["x"], output_names=["y"])
        self.count = 0

    def op(self, op_type: OpType, inputs: list, shape: tuple, options=None) -> Tensor:
        self.count += 1
        out = Tensor(f"t{self.count}", np.dtype(F32), shape)
        self.graph.ops.append(Op(op_type, inputs, [out], options))
        return out

    def done(self, y: Tensor) -> Graph:
        self.graph.outputs = [y]
        return self.graph


def conv(b: Builder, x: Tensor, padding=Padding.VALID, weights=W_CONV) -> Tensor:
    h = x.shape[1] - 2 if padding == Padding.VALID else x.shape[1]
    w = x.shape[2] - 2 if padding == Padding.VALID else x.shape[2]
    bias = const("b", np.zeros(weights.shape[0], F32))
    return b.op(OpType.CONV_2D, [x, const("w", weights), bias],
                (None, h, w, weights.shape[0]), o.Conv2DOptions(padding))


def mul(b, x, value, act=Activation.NONE):
    return b.op(OpType.MUL, [x, const("m", value, F32)], x.shape, o.MulOptions(act))


def add(b, x, value, act=Activation.NONE):
    return b.op(OpType.ADD, [x, const("a", value, F32)], x.shape, o.AddOptions(act))


# --- graphs: each returns (graph, input shape) ---------------------------------------------------
def conv_bias_batchnorm_relu():
    b = Builder((None, 8, 8, 3))
    y = conv(b, b.x)
    y = add(b, y, CHANNELS4)  # BiasAdd
    y = mul(b, y, CHANNELS4 * 0.7)  # BatchNorm scale
    y = add(b, y, -CHANNELS4)  # BatchNorm offset
    return b.done(b.op(OpType.RELU, [y], y.shape)), (2, 8, 8, 3)


def rescale_then_valid_conv():
    b = Builder((None, 8, 8, 3))
    y = add(b, mul(b, b.x, CHANNELS3), 0.25)
    return b.done(conv(b, y)), (2, 8, 8, 3)


def rescale_then_same_conv():
    b = Builder((None, 8, 8, 3))
    y = add(b, mul(b, b.x, CHANNELS3), CHANNELS3 - 1.0)
    return b.done(conv(b, y, Padding.SAME)), (2, 8, 8, 3)


def affine_chain():
    b = Builder((None, 4, 4, 3))
    y = mul(b, add(b, mul(b, add(b, b.x, 1.0), CHANNELS3), -2.0), 3.0)
    return b.done(b.op(OpType.TANH, [y], y.shape)), (2, 4, 4, 3)


def scale_pad_conv():
    b = Builder((None, 8, 8, 3))
    y = mul(b, b.x, CHANNELS3)
    pads = const("p", [[0, 0], [0, 1], [0, 1], [0, 0]], np.int32)
    y = b.op(OpType.PAD, [y, pads], (None, 9, 9, 3))
    out = b.op(OpType.CONV_2D, [y, const("w", W_CONV), const("b", np.zeros(4, F32))],
               (None, 4, 4, 4), o.Conv2DOptions(Padding.VALID, 2, 2))
    return b.done(out), (2, 8, 8, 3)


def pad_then_depthwise():
    b = Builder((None, 7, 7, 3))
    pads = const("p", [[0, 0], [1, 1], [1, 1], [0, 0]], np.int32)
    y = b.op(OpType.PAD, [b.x, pads], (None, 9, 9, 3))
    out = b.op(OpType.DEPTHWISE_CONV_2D, [y, const("w", W_DW), const("b", np.zeros(3, F32))],
               (None, 7, 7, 3), o.DepthwiseConv2DOptions(Padding.VALID))
    return b.done(out), (2, 7, 7, 3)


def div_sub_constants():
    b = Builder((None, 6))
    y = b.op(OpType.DIV, [b.x, const("d", 4.0, F32)], (None, 6), o.DivOptions())
    y = b.op(OpType.SUB, [y, const("s", 1.5, F32)], (None, 6), o.SubOptions())
    return b.done(b.op(OpType.LOGISTIC, [y], y.shape)), (3, 6)


def noop_mul_add():
    b = Builder((None, 6))
    y = add(b, b.op(OpType.MUL, [const("one", 1.0, F32), b.x], (None, 6), o.MulOptions()), 0.0)
    return b.done(b.op(OpType.TANH, [y], y.shape)), (3, 6)


def hard_swish_graph():
    b = Builder((None, 6))
    r = b.op(OpType.RELU6, [add(b, b.x, 3.0)], (None, 6))
    y = mul(b, b.op(OpType.MUL, [b.x, r], (None, 6), o.MulOptions()), 1 / 6)
    return b.done(y), (3, 6)


def prelu_graph():
    b = Builder((None, 6))
    pos = b.op(OpType.RELU, [b.x], (None, 6))
    neg = b.op(OpType.RELU, [b.op(OpType.NEG, [b.x], (None, 6))], (None, 6))
    alpha = np.linspace(0.1, 0.6, 6).astype(F32)
    y = b.op(OpType.ADD, [pos, mul(b, neg, -alpha)], (None, 6), o.AddOptions())
    return b.done(y), (3, 6)


def gelu_graph():
    b = Builder((None, 6))
    half = mul(b, b.x, 0.5)
    scaled = mul(b, b.op(OpType.NEG, [b.x], (None, 6)), 0.7071067811865476)
    erfc_out = Tensor("erfc", np.dtype(F32), (None, 6))
    b.graph.ops.append(Op(OpType.CUSTOM, [scaled], [erfc_out], custom_code="Erfc"))
    return b.done(b.op(OpType.MUL, [half, erfc_out], (None, 6), o.MulOptions())), (3, 6)


def dense_3d_tensordot():
    b = Builder((None, 4, 6))
    flat = b.op(OpType.RESHAPE, [b.x, const("s", [-1, 6], np.int32)], (None, 6))
    fc = b.op(OpType.FULLY_CONNECTED, [flat, const("w", W_FC), const("b", CHANNELS4[:1].repeat(5))],
              (None, 5), o.FullyConnectedOptions())
    shape = b.op(OpType.SHAPE, [b.x], (3,), o.ShapeOptions())
    shape.dtype = np.dtype(np.int32)
    lead = b.op(OpType.GATHER, [shape, const("i", [0, 1], np.int32)], (2,), o.GatherOptions())
    lead.dtype = np.dtype(np.int32)
    target = b.op(OpType.CONCATENATION, [lead, const("u", [5], np.int32)], (3,),
                  o.ConcatenationOptions(0))
    target.dtype = np.dtype(np.int32)
    return b.done(b.op(OpType.RESHAPE, [fc, target], (None, None, 5))), (2, 4, 6)


def dense_3d_static_target():
    """The same Tensordot once ``static_reshapes`` made the restoring shape a constant."""
    b = Builder((None, 4, 6))
    flat = b.op(OpType.RESHAPE, [b.x, const("s", [-1, 6], np.int32)], (None, 6))
    fc = b.op(OpType.FULLY_CONNECTED, [flat, const("w", W_FC), const("b", np.ones(5, F32))],
              (None, 5), o.FullyConnectedOptions())
    return b.done(b.op(OpType.RESHAPE, [fc, const("t", [-1, 4, 5], np.int32)],
                       (None, 4, 5))), (2, 4, 6)


def flatten_chain():
    b = Builder((None, 3, 4, 2))
    shape = b.op(OpType.SHAPE, [b.x], (4,), o.ShapeOptions())
    shape.dtype = np.dtype(np.int32)
    batch = b.op(OpType.STRIDED_SLICE, [shape, const("b", [0], np.int32), const("e", [1], np.int32),
                                        const("s", [1], np.int32)], (),
                 o.StridedSliceOptions(shrink_axis_mask=1))
    batch.dtype = np.dtype(np.int32)
    target = b.op(OpType.PACK, [batch, const("n", 24, np.int32)], (2,), o.PackOptions(2))
    target.dtype = np.dtype(np.int32)
    return b.done(b.op(OpType.RESHAPE, [b.x, target], (None, 24))), (2, 3, 4, 2)


def foldable_constants():
    b = Builder((None, 3))
    var = const("var", [1.0, 4.0, 9.0], F32)
    rsqrt = b.op(OpType.RSQRT, [b.op(OpType.ADD, [var, const("eps", 0.0, F32)], (3,),
                                     o.AddOptions())], (3,))
    return b.done(b.op(OpType.MUL, [b.x, rsqrt], (None, 3), o.MulOptions())), (2, 3)


def dense_zero_bias():
    b = Builder((None, 6))
    y = b.op(OpType.FULLY_CONNECTED, [b.x, const("w", W_FC), const("b", np.zeros(5, F32))],
             (None, 5), o.FullyConnectedOptions())
    return b.done(b.op(OpType.TANH, [y], y.shape)), (3, 6)


def conv_relu6():
    b = Builder((None, 8, 8, 3))
    y = conv(b, b.x, Padding.SAME)
    return b.done(b.op(OpType.RELU6, [y], y.shape)), (2, 8, 8, 3)


def conv1d_relu():
    """Keras Conv1D: EXPAND_DIMS → CONV_2D → SQUEEZE, then its ReLU."""
    b = Builder((None, 8, 3))
    wide = b.op(OpType.EXPAND_DIMS, [b.x, const("axis", np.array(1, np.int32))], (None, 1, 8, 3))
    y = b.op(OpType.CONV_2D, [wide, const("w", W_CONV[:, :1]), const("b", np.full(
        W_CONV.shape[0], 0.3, F32))], (None, 1, 8, W_CONV.shape[0]), o.Conv2DOptions(Padding.SAME))
    y = b.op(OpType.SQUEEZE, [y], (None, 8, W_CONV.shape[0]), o.SqueezeOptions((1,)))
    return b.done(b.op(OpType.RELU, [y], y.shape)), (2, 8, 3)


def layernorm_negations():
    """``x·g + (−mean)·g`` as LayerNormalization lowers, plus ``x − (−a)`` and ``(−a) + x``."""
    b = Builder((None, 4, 6))
    axis = const("axis", [2], np.int32)
    mean = b.op(OpType.MEAN, [b.x, axis], (None, 4, 1), o.ReducerOptions(keep_dims=True))
    g = const("g", np.linspace(-1.5, 2.0, 6), F32)
    shifted = b.op(OpType.MUL, [b.op(OpType.NEG, [mean], mean.shape), g], (None, 4, 6),
                   o.MulOptions())
    y = b.op(OpType.ADD, [b.op(OpType.MUL, [b.x, g], b.x.shape, o.MulOptions()), shifted],
             b.x.shape, o.AddOptions())
    y = b.op(OpType.SUB, [y, b.op(OpType.NEG, [b.x], b.x.shape)], b.x.shape, o.SubOptions())
    y = b.op(OpType.ADD, [b.op(OpType.NEG, [mean], mean.shape), y], b.x.shape, o.AddOptions())
    return b.done(y), (2, 4, 6)


# (pass, graph, the op types the pass must leave, in order)
CASES: list[tuple[Callable, Callable, list[str]]] = [
    (fold_batchnorm, conv_bias_batchnorm_relu, ["CONV_2D", "RELU"]),
    (fold_affine_into_next, rescale_then_valid_conv, ["CONV_2D"]),
    (shift_before_scale, rescale_then_same_conv, ["ADD", "MUL", "CONV_2D"]),
    (merge_affine_chains, affine_chain, ["MUL", "ADD", "TANH"]),
    (mul_through_pad, scale_pad_conv, ["PAD", "MUL", "CONV_2D"]),
    (fold_pad_into_conv, pad_then_depthwise, ["DEPTHWISE_CONV_2D"]),
    (constant_operands, div_sub_constants, ["MUL", "ADD", "LOGISTIC"]),
    (noop_elementwise, noop_mul_add, ["TANH"]),
    (hard_swish, hard_swish_graph, ["HARD_SWISH"]),
    (prelu, prelu_graph, ["PRELU"]),
    (gelu, gelu_graph, ["GELU"]),
    (nd_fully_connected, dense_3d_tensordot, ["FULLY_CONNECTED"]),
    (nd_fully_connected, dense_3d_static_target, ["FULLY_CONNECTED"]),
    (static_reshapes, flatten_chain, ["RESHAPE"]),
    (fold_constants, foldable_constants, ["MUL"]),
    (fuse_activations, conv_relu6, ["CONV_2D"]),
    (fuse_activations, conv1d_relu, ["EXPAND_DIMS", "CONV_2D", "SQUEEZE"]),
    (drop_zero_bias, dense_zero_bias, ["FULLY_CONNECTED", "TANH"]),
    (absorb_negation, layernorm_negations, ["MEAN", "MUL", "MUL", "SUB", "ADD", "SUB"]),
]


@pytest.mark.parametrize("pass_fn, make, expected", CASES,
                         ids=[case[0].__name__ for case in CASES])
def test_pass(pass_fn, make, expected):
    before, shape = make()
    after, _ = make()
    assert pass_fn(after) is True
    while pass_fn(after):  # passes that make one edit per call run to their fixpoint
        pass
    after.remove_dead_ops()
    assert [op.type.name for op in after.ops] == expected
    x = RNG.normal(size=shape).astype(F32) * 3
    reference = NUMPY_REFERENCES.get(make)  # where LiteRT cannot run the graph before the pass
    expected = reference(x) if reference else run_single(write_model([before]), x)
    assert_matches(run_single(write_model([after]), x), expected, rel=1e-5)


# Graphs holding an op LiteRT lacks until the pass absorbs it: their outputs, by hand.
NUMPY_REFERENCES = {
    gelu_graph: lambda x: 0.5 * x * np.vectorize(math.erfc)(-x / math.sqrt(2)),
}


def test_pass_is_a_no_op_when_nothing_matches():
    graph, _ = conv_relu6()
    for pass_fn in (fold_batchnorm, merge_affine_chains, hard_swish, prelu, static_reshapes):
        assert pass_fn(graph) is False
    assert [op.type.name for op in graph.ops] == ["CONV_2D", "RELU6"]


def test_fused_activation_and_batchnorm_whole_pipeline():
    graph, shape = conv_bias_batchnorm_relu()
    run_passes(graph)
    assert [op.type.name for op in graph.ops] == ["CONV_2D"]
    assert graph.ops[0].options.fused_activation_function == Activation.RELU


def test_tanh_is_not_fused():
    """LiteRT's kernels ignore or refuse a fused TANH: it must stay its own op."""
    b = Builder((None, 6))
    y = b.op(OpType.FULLY_CONNECTED, [b.x, const("w", W_FC), const("b", np.zeros(5, F32))],
             (None, 5), o.FullyConnectedOptions())
    graph = b.done(b.op(OpType.TANH, [y], y.shape))
    assert fuse_activations(graph) is False


def test_add_does_not_fold_into_same_conv():
    """Zero padding of x + a differs from x padded then shifted: the ADD must stay."""
    b = Builder((None, 8, 8, 3))
    graph = b.done(conv(b, add(b, b.x, CHANNELS3), Padding.SAME))
    assert fold_affine_into_next(graph) is False


def test_uniform_offset_stays_a_scalar():
    """MobileNetV3's ``Rescaling(1/127.5, offset=-1)`` before a SAME conv leaves one ADD by a
    scalar, not by a [3] vector: LiteRT broadcasts a vector row by row (the int8 model's first
    ADD took 0.10 ms instead of 0.007 ms); a per-channel offset stays a vector."""
    for offset, size in ((-1.0, 1), (CHANNELS3, 3)):
        b = Builder((None, 8, 8, 3))
        y = add(b, mul(b, b.x, np.float32(1 / 127.5)), offset)
        graph = b.done(conv(b, y, Padding.SAME))
        x = RNG.uniform(0, 255, size=(2, 8, 8, 3)).astype(F32)
        expected = run_single(write_model([graph]), x)
        run_passes(graph)
        assert [op.type.name for op in graph.ops] == ["ADD", "CONV_2D"]
        assert graph.ops[0].inputs[1].data.size == size
        assert_matches(run_single(write_model([graph]), x), expected, rel=1e-5)


@pytest.mark.parametrize("size, kernel, stride, dilation, expected", [
    (224, 3, 2, 1, (0, 1)),   # MobileNet's correct_pad case
    (7, 3, 1, 1, (1, 1)),
    (224, 7, 2, 1, (2, 3)),   # ResNet's stem pads (3, 3): no fold
    (10, 3, 1, 2, (2, 2)),
    (5, 1, 1, 1, (0, 0)),
])
def test_same_padding(size, kernel, stride, dilation, expected):
    assert same_padding(size, kernel, stride, dilation) == expected


I32 = np.int32
# One hand-computed case per constant-folding kernel: (options, inputs, expected output).
FOLD_CASES = {
    OpType.ADD: (o.AddOptions(Activation.RELU), [[1.0, -5.0], [2.0, 1.0]], [3.0, 0.0]),
    OpType.SUB: (o.SubOptions(), [[1.0, -5.0], [2.0, 1.0]], [-1.0, -6.0]),
    OpType.MUL: (o.MulOptions(Activation.RELU6), [[2.0, 3.0], [4.0, -1.0]], [6.0, 0.0]),
    OpType.DIV: (o.DivOptions(), [[1.0, 9.0], [4.0, 3.0]], [0.25, 3.0]),
    OpType.MAXIMUM: (None, [[1.0, 5.0], [2.0, 3.0]], [2.0, 5.0]),
    OpType.MINIMUM: (None, [[1.0, 5.0], [2.0, 3.0]], [1.0, 3.0]),
    OpType.SQUARED_DIFFERENCE: (None, [[1.0, 5.0], [3.0, 3.0]], [4.0, 4.0]),
    OpType.RSQRT: (None, [[4.0, 0.25]], [0.5, 2.0]),
    OpType.SQRT: (None, [[4.0, 0.25]], [2.0, 0.5]),
    OpType.NEG: (None, [[4.0, -0.25]], [-4.0, 0.25]),
    OpType.EXP: (None, [[0.0, 1.0]], [1.0, 2.718281828]),
    OpType.SQUARE: (None, [[3.0, -2.0]], [9.0, 4.0]),
    OpType.RELU: (None, [[3.0, -2.0]], [3.0, 0.0]),
    OpType.RELU6: (None, [[7.0, -2.0, 1.5]], [6.0, 0.0, 1.5]),
    OpType.LOGISTIC: (None, [[0.0]], [0.5]),
    OpType.TANH: (None, [[0.0]], [0.0]),
    OpType.TRANSPOSE: (None, [[[1.0, 2.0], [3.0, 4.0]], np.array([1, 0], I32)],
                       [[1.0, 3.0], [2.0, 4.0]]),
    OpType.RESHAPE: (None, [[1.0, 2.0, 3.0, 4.0], np.array([2, -1], I32)],
                     [[1.0, 2.0], [3.0, 4.0]]),
    OpType.SQUEEZE: (o.SqueezeOptions((0,)), [[[1.0, 2.0]]], [1.0, 2.0]),
    OpType.EXPAND_DIMS: (None, [[1.0, 2.0], np.array(1, I32)], [[1.0], [2.0]]),
    OpType.CONCATENATION: (o.ConcatenationOptions(0), [[1.0], [2.0, 3.0]], [1.0, 2.0, 3.0]),
    OpType.PACK: (o.PackOptions(2, 0), [1.0, 2.0], [1.0, 2.0]),
    OpType.CAST: (None, [[1.0, 2.0]], [1.0, 2.0]),
    OpType.STRIDED_SLICE: (o.StridedSliceOptions(end_mask=1),
                           [[1.0, 2.0, 3.0, 4.0], np.array([1], I32), np.array([0], I32),
                            np.array([2], I32)], [2.0, 4.0]),
    OpType.GATHER: (o.GatherOptions(0), [[5.0, 6.0, 7.0], np.array([2, 0], I32)], [7.0, 5.0]),
    OpType.REDUCE_PROD: (o.ReducerOptions(), [[[1.0, 2.0], [3.0, 4.0]], np.array([1], I32)],
                         [2.0, 12.0]),
    OpType.SUM: (o.ReducerOptions(True), [[[1.0, 2.0], [3.0, 4.0]], np.array([0], I32)],
                 [[4.0, 6.0]]),
    OpType.MEAN: (o.ReducerOptions(), [[[1.0, 2.0], [3.0, 4.0]], np.array([0, 1], I32)], 2.5),
    OpType.REDUCE_MAX: (o.ReducerOptions(), [[[1.0, 5.0], [3.0, 4.0]], np.array([0], I32)],
                        [3.0, 5.0]),
    OpType.PAD: (None, [[1.0, 2.0], np.array([[1, 0]], I32)], [0.0, 1.0, 2.0]),
    # x·Wᵀ + b = [1·1 + 2·1 + 0.5, 1·2 + 2·0 − 3] = [3.5, −1] → ReLU
    OpType.FULLY_CONNECTED: (o.FullyConnectedOptions(Activation.RELU),
                             [[[1.0, 2.0]], [[1.0, 1.0], [2.0, 0.0]], [0.5, -3.0]], [[3.5, 0.0]]),
    # --- issue #12 (SPLIT/SPLIT_V/UNPACK: the first output) ---
    OpType.ABS: (None, [[-1.0, 2.0]], [1.0, 2.0]),
    OpType.LOG: (None, [[1.0, np.e]], [0.0, 1.0]),
    OpType.POW: (None, [[2.0, 3.0], [2.0, 0.5]], [4.0, 1.7320508]),
    OpType.ELU: (None, [[1.0, -1.0]], [1.0, -0.63212056]),
    OpType.REDUCE_MIN: (o.ReducerOptions(), [[[1.0, 5.0], [3.0, 4.0]], np.array([0], I32)],
                        [1.0, 4.0]),
    OpType.SPLIT: (o.SplitOptions(2), [np.array(0, I32), [1.0, 2.0, 3.0, 4.0]], [1.0, 2.0]),
    OpType.SPLIT_V: (o.SplitVOptions(2), [[1.0, 2.0, 3.0], np.array([1, 2], I32),
                                          np.array(0, I32)], [1.0]),
    OpType.UNPACK: (o.UnpackOptions(2, 1), [[[1.0, 2.0], [3.0, 4.0]]], [1.0, 3.0]),  # x[:, 0]
    OpType.LESS: (None, [[1.0, 5.0], [2.0, 3.0]], [1.0, 0.0]),
    OpType.LESS_EQUAL: (None, [[1.0, 3.0], [2.0, 3.0]], [1.0, 1.0]),
    OpType.GREATER: (None, [[1.0, 5.0], [2.0, 3.0]], [0.0, 1.0]),
    OpType.GREATER_EQUAL: (None, [[1.0, 3.0], [2.0, 3.0]], [0.0, 1.0]),
    OpType.EQUAL: (None, [[1.0, 3.0], [2.0, 3.0]], [0.0, 1.0]),
    OpType.SELECT_V2: (None, [np.array([True, False]), [1.0, 2.0], [3.0, 4.0]], [1.0, 4.0]),
    OpType.LOGICAL_AND: (None, [np.array([True, False]), np.array([True, True])], [1.0, 0.0]),
    OpType.FILL: (None, [np.array([2], I32), 3.0], [3.0, 3.0]),
    OpType.RANGE: (None, [0.0, 3.0, 1.0], [0.0, 1.0, 2.0]),
}


def test_gather_with_batch_dims_is_not_folded():
    params = const("params", np.arange(6, dtype=F32).reshape(2, 3))
    indices = const("indices", np.array([[2], [0]], I32))
    out = Tensor("out", np.dtype(F32), (2, 1))
    op = Op(OpType.GATHER, [params, indices], [out], o.GatherOptions(axis=1, batch_dims=1))
    assert try_fold(op) is False and out.data is None


def test_strided_slice_with_new_axis_folds():
    """Keras's causal mask: band[None, None, :, :] (new-axis bits 0 and 1)."""
    x = const("x", np.arange(6, dtype=F32).reshape(2, 3))
    begin, end, strides = (const(n, np.array(v, I32)) for n, v in (
        ("b", [0, 0, 0, 0]), ("e", [0, 0, 0, 0]), ("s", [1, 1, 1, 1])))
    out = Tensor("out", np.dtype(F32), (1, 1, 2, 3))
    op = Op(OpType.STRIDED_SLICE, [x, begin, end, strides], [out],
            o.StridedSliceOptions(begin_mask=15, end_mask=15, new_axis_mask=3))
    assert try_fold(op) is True
    np.testing.assert_array_equal(out.data, np.arange(6, dtype=F32).reshape(1, 1, 2, 3))


def test_every_folder_has_a_golden_case():
    assert set(FOLD_CASES) == {t for t, spec in OPS.items() if spec.fold is not None}


@pytest.mark.parametrize("op_type", sorted(FOLD_CASES, key=lambda t: t.name),
                         ids=lambda t: t.name)
def test_fold_kernel(op_type):
    options, values, expected = FOLD_CASES[op_type]
    inputs = [const(f"in{i}", v if isinstance(v, np.ndarray) else np.asarray(v, F32))
              for i, v in enumerate(values)]
    expected = np.asarray(expected, F32)
    out = Tensor("out", np.dtype(F32), expected.shape)
    op = Op(op_type, inputs, [out], options)
    assert try_fold(op) is True
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.data, expected, rtol=1e-6)


def test_shape_folds_for_a_static_input_only():
    static = Tensor("x", np.dtype(F32), (2, 3))
    out = Tensor("s", np.dtype(np.int32), (2,))
    assert try_fold(Op(OpType.SHAPE, [static], [out], o.ShapeOptions())) is True
    assert out.data.tolist() == [2, 3] and out.data.dtype == np.int32
    dynamic = Tensor("y", np.dtype(F32), (None, 3))
    assert try_fold(Op(OpType.SHAPE, [dynamic], [Tensor("s2", np.dtype(np.int32), (2,))],
                       o.ShapeOptions())) is False


def test_a_pass_that_never_settles_is_reported():
    from quantkit.passes.util import to_fixpoint
    from quantkit.types import ConversionError

    @to_fixpoint
    def flip_flop(graph):
        graph.ops.reverse()
        return True

    graph, _ = conv_relu6()
    with pytest.raises(ConversionError, match=r"\[passes\] pass flip_flop did not settle"):
        flip_flop(graph)


def _producer(b: Builder, op_type: OpType) -> Tensor:
    """A small op of ``op_type`` on the 4-D input, for the fusion table's rows."""
    x = b.x
    if op_type == OpType.CONV_2D:
        return conv(b, x, Padding.SAME)
    if op_type == OpType.DEPTHWISE_CONV_2D:
        return b.op(op_type, [x, const("w", W_DW), const("b", CHANNELS3)], x.shape,
                    o.DepthwiseConv2DOptions(Padding.SAME))
    if op_type == OpType.FULLY_CONNECTED:
        return b.op(op_type, [x, const("w", W_FC[:, :3]), const("b", np.ones(5, F32))],
                    (None, 5), o.FullyConnectedOptions())
    if op_type == OpType.TRANSPOSE_CONV:
        return b.op(op_type, [const("s", [2, 8, 8, 4], np.int32), const("w", W_CONV), x, None],
                    (2, 8, 8, 4), o.TransposeConvOptions(Padding.SAME))
    if op_type in (OpType.AVERAGE_POOL_2D, OpType.MAX_POOL_2D):
        return b.op(op_type, [x], (None, 4, 4, 3), o.Pool2DOptions(Padding.VALID, 2, 2, 2, 2))
    if op_type == OpType.CONCATENATION:
        return b.op(op_type, [x, x], (None, 8, 8, 6), o.ConcatenationOptions(3))
    options = {OpType.ADD: o.AddOptions, OpType.SUB: o.SubOptions, OpType.MUL: o.MulOptions,
               OpType.DIV: o.DivOptions}[op_type]()
    return b.op(op_type, [x, const("c", CHANNELS3 + 4.0)], x.shape, options)


# The op table's producers that take fused activations, and the ops that are activations.
FUSABLE_INTO = sorted((t for t, spec in OPS.items() if spec.fusable), key=lambda t: t.name)
ACTIVATION_OPS = sorted((t for t, spec in OPS.items() if spec.activation is not None),
                        key=lambda t: t.name)


@pytest.mark.parametrize("op_type", FUSABLE_INTO, ids=lambda t: t.name)
@pytest.mark.parametrize("activation", ACTIVATION_OPS, ids=lambda t: t.name)
def test_fusion_table_rows_run_in_litert(op_type, activation):
    """Every producer the fusion table names takes every fusable activation in LiteRT;
    activations LiteRT does not apply stay separate ops."""
    graphs = []
    for _ in range(2):
        b = Builder((2 if op_type == OpType.TRANSPOSE_CONV else None, 8, 8, 3))
        y = _producer(b, op_type)
        graphs.append(b.done(b.op(activation, [y], y.shape)))
    before, after = graphs
    fused = fuse_activations(after)
    assert fused == (OPS[activation].activation in OPS[op_type].fusable)
    x = (RNG.normal(size=(2, 8, 8, 3)) * 4).astype(F32)
    assert_matches(run_single(write_model([after]), x), run_single(write_model([before]), x),
                   rel=1e-5)


def test_deduplicate_ops_merges_repeats_and_keeps_distinct_ops():
    from quantkit.passes.cleanup import deduplicate_ops

    valid = o.Pool2DOptions(Padding.VALID, 2, 2, 2, 2)
    b = Builder((None, 8, 8, 3))
    r1 = b.op(OpType.RELU, [b.x], b.x.shape)
    r2 = b.op(OpType.RELU, [b.x], b.x.shape)  # the same ReLU again
    r3 = b.op(OpType.RELU6, [b.x], b.x.shape)  # another op on the same input
    p1 = b.op(OpType.MAX_POOL_2D, [r1], (None, 4, 4, 3), valid)
    p2 = b.op(OpType.MAX_POOL_2D, [r2], (None, 4, 4, 3), valid)  # repeats p1 once r2 is r1
    p3 = b.op(OpType.MAX_POOL_2D, [r1], (None, 4, 4, 3),
              o.Pool2DOptions(Padding.SAME, 2, 2, 2, 2))  # other options
    p4 = b.op(OpType.MAX_POOL_2D, [r3], (None, 4, 4, 3), valid)  # another input
    m1, m2 = mul(b, p1, 2.0), mul(b, p2, 2.0)  # equal small constants, two tensors
    graph = b.done(b.op(OpType.CONCATENATION, [m1, m2, p3, p4], (None, 4, 4, 12),
                        o.ConcatenationOptions(3)))
    x = RNG.normal(size=(2, 8, 8, 3)).astype(F32)
    expected = run_single(write_model([graph]), x)
    assert deduplicate_ops(graph) is True
    graph.remove_dead_ops()
    assert [op.type.name for op in graph.ops] == [
        "RELU", "RELU6", "MAX_POOL_2D", "MAX_POOL_2D", "MAX_POOL_2D", "MUL", "CONCATENATION"]
    assert_matches(run_single(write_model([graph]), x), expected, rel=1e-6)


def test_one_pad_read_by_two_convs_folds_into_both():
    b = Builder((None, 7, 7, 3))
    pads = const("p", [[0, 0], [1, 1], [1, 1], [0, 0]], np.int32)
    y = b.op(OpType.PAD, [b.x, pads], (None, 9, 9, 3))
    a = b.op(OpType.DEPTHWISE_CONV_2D, [y, const("w", W_DW), const("b", np.zeros(3, F32))],
             (None, 7, 7, 3), o.DepthwiseConv2DOptions(Padding.VALID))
    c = conv(b, y)
    graph = b.done(b.op(OpType.CONCATENATION, [a, c], (None, 7, 7, 7), o.ConcatenationOptions(3)))
    x = RNG.normal(size=(2, 7, 7, 3)).astype(F32)
    expected = run_single(write_model([graph]), x)
    assert fold_pad_into_conv(graph) is True
    assert [op.type.name for op in graph.ops] == ["DEPTHWISE_CONV_2D", "CONV_2D", "CONCATENATION"]
    assert_matches(run_single(write_model([graph]), x), expected, rel=1e-6)


def test_zero_bias_is_dropped_and_a_real_one_kept():
    graph, _ = dense_zero_bias()
    assert drop_zero_bias(graph) is True and graph.ops[0].inputs[2] is None
    graph.ops[0].inputs[2] = const("b", CHANNELS4[:1].repeat(5))
    assert drop_zero_bias(graph) is False and graph.ops[0].inputs[2] is not None


def _repeat_graph(factor: int, axis: int, shape=(None, 5, 7, 2)) -> Graph:
    """np.repeat(x, factor, axis) as Keras 3 traces it: EXPAND_DIMS, TILE, RESHAPE."""
    b = Builder(shape)
    expanded = list(shape)
    expanded.insert(axis + 1, 1)
    e = b.op(OpType.EXPAND_DIMS, [b.x, const("a", axis + 1, np.int32)], tuple(expanded))
    multiples = [1] * 5
    multiples[axis + 1] = factor
    tiled = list(expanded)
    tiled[axis + 1] = factor
    t = b.op(OpType.TILE, [e, const("m", multiples, np.int32)], tuple(tiled))
    out = list(shape)
    out[axis] *= factor
    target = [-1 if d is None else d for d in out]
    return b.done(b.op(OpType.RESHAPE, [t, const("s", target, np.int32)], tuple(out)))


@pytest.mark.parametrize("factor", [2, 3, 4, 5, 7, 8])
@pytest.mark.parametrize("axis", [1, 2])
def test_repeat_becomes_a_nearest_resize_that_repeats_exactly(factor, axis):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    graph = _repeat_graph(factor, axis)
    assert upsample_nearest(graph) is True
    assert [op.type.name for op in graph.ops] == ["RESIZE_NEAREST_NEIGHBOR"]
    model = write_model([graph])
    x = RNG.normal(size=(2, 5, 7, 2)).astype(F32)
    np.testing.assert_array_equal(run_single(model, x), np.repeat(x, factor, axis))
    builtin = Interpreter(  # LiteRT's own kernel, not the XNNPACK delegate run_single uses
        model_content=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    builtin.resize_tensor_input(0, list(x.shape))
    builtin.allocate_tensors()
    builtin.set_tensor(builtin.get_input_details()[0]["index"], x)
    builtin.invoke()
    out = builtin.get_tensor(builtin.get_output_details()[0]["index"])
    np.testing.assert_array_equal(out, np.repeat(x, factor, axis))


def test_repeats_along_both_axes_become_one_resize():
    graph = _repeat_graph(2, 1)
    rows = graph.outputs[0]
    second = _repeat_graph(3, 2, shape=rows.shape)
    for op in second.ops:  # chain the column repeat onto the row repeat
        op.inputs = [rows if t is second.inputs[0] else t for t in op.inputs]
    graph.ops += second.ops
    graph.outputs = second.outputs
    assert upsample_nearest(graph) is True
    assert [op.type.name for op in graph.ops] == ["RESIZE_NEAREST_NEIGHBOR"]
    assert graph.ops[0].inputs[0] is graph.inputs[0]
    assert graph.ops[0].inputs[1].data.tolist() == [10, 21]


def test_nearest_resize_index_formula_repeats_rows():
    from quantkit.passes.patterns import _nearest_repeats

    assert all(_nearest_repeats(size, factor) for size in range(1, 130) for factor in (2, 3, 7, 16))
