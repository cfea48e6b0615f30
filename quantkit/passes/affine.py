"""Fold standalone affine ops (Keras ``Rescaling``/``Normalization``, BatchNorm after ReLU).

Two rewrites, both on MUL/ADD by a per-channel constant:

* merge a chain into one ``x·m + a``: ``(x + a)·m = x·m + a·m``;
* fold into the next op where that is exact: a convolution or FULLY_CONNECTED reads every
  input value through its weights, so ``conv(x·m + a, W) = conv(x, W·m) + Σ W·a``. SAME padding
  pads ``x·m + a`` with zeros, which ``x`` padded then scaled matches (``0·m = 0``) but ``x``
  padded then shifted does not: ADD folds only into VALID convolutions.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from quantkit.ir import options as o
from quantkit.ir.graph import Graph, Op, const
from quantkit.ops import WeightLayout, spec
from quantkit.passes.util import Uses, to_fixpoint, channel_vector, same_shape, split_const
from quantkit.types import OpType, Padding

_AFFINE = (OpType.MUL, OpType.ADD)


def _affine(op: Op) -> tuple | None:
    """(x, per-channel vector) for MUL/ADD by a channel constant with no fused activation."""
    if op.type not in _AFFINE or op.options.fused_activation_function:
        return None
    split = split_const(op)
    if split is None or not same_shape(split[0], op.outputs[0]):
        return None
    vector = channel_vector(split[1], op.outputs[0])
    return None if vector is None else (split[0], vector)


def _set_const(op: Op, op_type: OpType, x, vector: np.ndarray) -> None:
    """``op`` becomes ``x·vector`` or ``x + vector``; a vector equal across channels is written
    as a scalar: LiteRT's kernels (XNNPACK's and the built-in ones) broadcast a scalar in one
    vectorized loop but a [C] vector row by row, which for an RGB input's offset (C = 3) made
    MobileNetV3Small's first ADD 14× slower than TF's scalar MUL + ADD (0.10 ms of 1.5)."""
    dtype = op.outputs[0].dtype
    value = vector[:1].reshape(()) if np.all(vector == vector[0]) else vector
    op.type = op_type
    op.options = o.MulOptions() if op_type == OpType.MUL else o.AddOptions()
    op.inputs = [x, const(f"{op.outputs[0].name}/{op_type.name.lower()}", value.astype(dtype))]


def _affine_pairs(graph: Graph) -> Iterator[tuple[Uses, Op, tuple, Op, np.ndarray]]:
    """``(uses, first, (x, v1), second, v2)`` for each MUL/ADD by a channel constant whose one
    reader is another; the graph is only read until the caller edits it and stops."""
    uses = Uses(graph)
    for first in graph.ops:
        a = _affine(first)
        second = uses.only_consumer(first.outputs[0]) if a else None
        b = _affine(second) if second is not None else None
        if b is not None:
            yield uses, first, a, second, b[1]


@to_fixpoint
def merge_affine_chains(graph: Graph) -> bool:
    """Merge MUL/ADD-by-constant chains into at most one MUL followed by one ADD."""
    for _, first, (x, v1), second, v2 in _affine_pairs(graph):
        if first.type == second.type:  # x·m1·m2 or x + a1 + a2: one op
            merged = v1 * v2 if first.type == OpType.MUL else v1 + v2
            _set_const(second, first.type, x, merged)
            graph.remove_ops([first])
            return True
        if first.type == OpType.ADD:  # (x + a)·m → x·m + a·m
            _set_const(first, OpType.MUL, x, v2)
            _set_const(second, OpType.ADD, first.outputs[0], v1 * v2)
            return True
    return False


def _fold_into_consumer(affine: Op, x, consumer: Op, vector: np.ndarray) -> bool:
    weights, bias = consumer.inputs[1], consumer.inputs[2]
    if consumer.inputs[0] is not affine.outputs[0] or not weights.is_const \
            or (bias is not None and not bias.is_const):
        return False
    # A MUL commutes with zero padding; an ADD does not.
    exact = affine.type == OpType.MUL or consumer.type == OpType.FULLY_CONNECTED \
        or consumer.options.padding == Padding.VALID
    if not exact:
        return False
    if consumer.type == OpType.DEPTHWISE_CONV_2D and consumer.options.depth_multiplier != 1 \
            or consumer.type == OpType.FULLY_CONNECTED and len(affine.outputs[0].shape or ()) != 2:
        return False
    layout = spec(consumer.type).weights
    w = weights.data.astype(np.float64)
    shape = [1] * w.ndim
    shape[layout.input_axis] = vector.size
    b = np.zeros(w.shape[layout.output_axis]) if bias is None else bias.data.astype(np.float64)
    if affine.type == OpType.MUL:
        w = w * vector.reshape(shape)
    else:  # each output channel sums its weights over everything but the output axis
        sum_axes = tuple(a for a in range(w.ndim) if a != layout.output_axis)
        b = b + (w * vector.reshape(shape)).sum(axis=sum_axes).reshape(-1)
    consumer.inputs[1] = const(weights.name, w.astype(weights.dtype))
    consumer.inputs[2] = const(f"{consumer.outputs[0].name}/bias", b.astype(weights.dtype))
    consumer.inputs[0] = x
    return True


@to_fixpoint
def fold_affine_into_next(graph: Graph) -> bool:
    """Fold a MUL/ADD by a channel constant into the conv or dense layer it feeds, where exact."""
    return _fold_into_next(graph, (OpType.MUL, OpType.ADD))


@to_fixpoint
def fold_scale_into_next(graph: Graph) -> bool:
    """Fold only a MUL into the next layer; an offset (ADD) stays an op.

    For the weight-only modes (dynamic range, float16): an input normalization's offset folded
    into the first convolution becomes a bias that cancels a large weighted sum of raw pixels,
    which float16 weights (and the hybrid kernels' symmetric input quantization) turn into
    error (ConvNeXtTiny: −3 dB against TF, which keeps the offset).
    """
    return _fold_into_next(graph, (OpType.MUL,))


def _reads_through_weights(layout: WeightLayout | None) -> bool:
    """Whether an op with ``layout`` reads its input 0 only through its weights (a conv or a
    dense layer; not TRANSPOSE_CONV, whose input 0 is the output shape)."""
    return layout is not None and layout.activation_input == 0


def _fold_into_next(graph: Graph, kinds: tuple[OpType, ...]) -> bool:
    uses = Uses(graph)
    for op in graph.ops:
        found = _affine(op) if op.type in kinds else None
        consumer = uses.only_consumer(op.outputs[0]) if found else None
        if consumer is None or not _reads_through_weights(spec(consumer.type).weights):
            continue
        if _fold_into_consumer(op, found[0], consumer, found[1]):
            graph.remove_ops([op])
            return True
    return False


@to_fixpoint
def shift_before_scale(graph: Graph) -> bool:
    """``x·m + a`` feeding a SAME convolution → ``(x + a/m)·m``, so the MUL folds into it.

    The ADD cannot fold through SAME padding but the MUL can; swapping them (exact for m ≠ 0)
    leaves one ADD where there were MUL and ADD.
    """
    for uses, first, (x, scale), second, shift in _affine_pairs(graph):
        if (first.type, second.type) != (OpType.MUL, OpType.ADD):
            continue
        conv = uses.only_consumer(second.outputs[0])
        layout = spec(conv.type).weights if conv is not None else None
        if layout is None or not layout.pads_input \
                or conv.options.padding != Padding.SAME or np.any(scale == 0) \
                or not conv.inputs[layout.weights_input].is_const \
                or getattr(conv.options, "depth_multiplier", 1) != 1:
            continue  # only where the MUL will fold, else merge_affine_chains swaps it back
        _set_const(first, OpType.ADD, x, shift / scale)
        _set_const(second, OpType.MUL, first.outputs[0], scale)
        return True
    return False
