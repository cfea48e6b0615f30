"""Subgraph patterns that TFLite has one builtin for.

* HARD_SWISH: ``x · relu6(x + 3) / 6`` (Keras ``hard_swish``; DIV is already MUL by 1/6);
* PRELU: ``relu(x) + (−α) · relu(−x)`` (Keras ``PReLU``);
* GELU: ``0.5·x · erfc(−x·(1/√2))`` (Keras/TF exact ``gelu``; Erfc arrives as a custom op);
* RESIZE_NEAREST_NEIGHBOR: Keras 3 ``UpSampling2D(interpolation="nearest")`` repeats rows, then
  columns, each as EXPAND_DIMS → TILE → RESHAPE; by an integer factor that is a nearest resize;
* FULLY_CONNECTED on N-D input: Keras ``Dense`` on a 3-D tensor traces ``Tensordot``: RESHAPE
  to 2-D, MatMul, RESHAPE back through a SHAPE/GATHER/CONCATENATION chain. One
  FULLY_CONNECTED with ``keep_num_dims`` does the same.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from quantkit.ir import options as o
from quantkit.ir.graph import Graph, Op, Tensor, const
from quantkit.passes.util import Uses, is_close_scalar, split_const
from quantkit.types import OpType


def _relu6_of_x_plus_3(uses: Uses, t: Tensor) -> Tensor | None:
    """x if ``t = relu6(x + 3)``."""
    relu6 = uses.producer_of(t, OpType.RELU6)
    add = uses.producer_of(relu6.inputs[0], OpType.ADD) if relu6 else None
    split = split_const(add) if add and not add.options.fused_activation_function else None
    return split[0] if split and is_close_scalar(split[1], 3.0) else None


def _match_hard_swish(uses: Uses, op: Op) -> Tensor | None:
    """x if ``op`` computes x·relu6(x+3)/6 in one of the two orders Keras/TF write it."""
    if op.type != OpType.MUL or op.options.fused_activation_function:
        return None
    split = split_const(op)
    if split and is_close_scalar(split[1], 1 / 6):  # (x · relu6(x+3)) · 1/6
        inner = uses.producer_of(split[0], OpType.MUL)
        if inner and not inner.options.fused_activation_function:
            for x, other in (inner.inputs, inner.inputs[::-1]):
                if _relu6_of_x_plus_3(uses, other) is x:
                    return x
        return None
    for x, other in (op.inputs, op.inputs[::-1]):  # x · (relu6(x+3) · 1/6)
        scale = uses.producer_of(other, OpType.MUL)
        s = split_const(scale) if scale else None
        if s and is_close_scalar(s[1], 1 / 6) and _relu6_of_x_plus_3(uses, s[0]) is x:
            return x
    return None


def _rewrite_matches(graph: Graph, match: Callable, rewrite: Callable) -> bool:
    """``rewrite(op, found)`` for every op where ``match(uses, op)`` finds the pattern; the
    pattern's inner ops then become dead and go."""
    uses = Uses(graph)
    found = [(op, m) for op in graph.ops if (m := match(uses, op)) is not None]
    for op, m in found:
        rewrite(op, m)
    if found:
        graph.remove_dead_ops()
    return bool(found)


def _to_hard_swish(op: Op, x: Tensor) -> None:
    op.type, op.inputs, op.options = OpType.HARD_SWISH, [x], None


def hard_swish(graph: Graph) -> bool:
    return _rewrite_matches(graph, _match_hard_swish, _to_hard_swish)


def _match_prelu(uses: Uses, op: Op) -> tuple[Tensor, np.ndarray] | None:
    if op.type != OpType.ADD or op.options.fused_activation_function:
        return None
    for pos, neg in (op.inputs, op.inputs[::-1]):
        relu = uses.producer_of(pos, OpType.RELU)
        mul = uses.producer_of(neg, OpType.MUL)
        split = split_const(mul) if relu and mul else None
        relu_neg = uses.producer_of(split[0], OpType.RELU) if split else None
        negate = uses.producer_of(relu_neg.inputs[0], OpType.NEG) if relu_neg else None
        if negate is not None and negate.inputs[0] is relu.inputs[0]:
            return relu.inputs[0], -split[1]
    return None


def _to_prelu(op: Op, found: tuple[Tensor, np.ndarray]) -> None:
    x, alpha = found
    alpha_t = const(f"{op.outputs[0].name}/alpha", alpha)
    op.type, op.inputs, op.options = OpType.PRELU, [x, alpha_t], None


def prelu(graph: Graph) -> bool:
    return _rewrite_matches(graph, _match_prelu, _to_prelu)


def _restores_leading_dims(uses: Uses, shape_in: Tensor, x: Tensor, units: int) -> bool:
    """Whether ``shape_in`` is ``x``'s shape with ``units`` last: as a constant (-1 for the
    dynamic dim, once ``static_reshapes`` has run) or as concat(gather(shape(x), [0..r-2]),
    [units])."""
    if shape_in.is_const:
        lead = [-1 if d is None else d for d in x.shape[:-1]]
        return lead.count(-1) <= 1 and shape_in.data.reshape(-1).tolist() == [*lead, units]
    concat = uses.producer_of(shape_in, OpType.CONCATENATION)
    if concat is None or len(concat.inputs) != 2 or not concat.inputs[1].is_const:
        return False
    gather = uses.producer_of(concat.inputs[0], OpType.GATHER)
    shape = uses.producer_of(gather.inputs[0], OpType.SHAPE) if gather else None
    rank = len(x.shape)
    return (shape is not None and shape.inputs[0] is x and gather.inputs[1].is_const
            and list(gather.inputs[1].data.reshape(-1)) == list(range(rank - 1))
            and list(concat.inputs[1].data.reshape(-1)) == [units])


def nd_fully_connected(graph: Graph) -> bool:
    """RESHAPE(x → 2-D) → FULLY_CONNECTED → RESHAPE(back) ⇒ FULLY_CONNECTED(keep_num_dims)."""
    uses = Uses(graph)
    changed = False
    for fc in graph.ops:
        if fc.type != OpType.FULLY_CONNECTED or fc.options.keep_num_dims:
            continue
        flatten = uses.producer_of(fc.inputs[0], OpType.RESHAPE)
        x = flatten.inputs[0] if flatten else None
        back = uses.only_consumer(fc.outputs[0])
        units, depth = fc.inputs[1].shape
        if x is None or x.shape is None or len(x.shape) < 3 or x.shape[-1] != depth \
                or back is None or back.type != OpType.RESHAPE \
                or not _restores_leading_dims(uses, back.inputs[1], x, units):
            continue
        fc.inputs[0] = x
        fc.options = o.FullyConnectedOptions(fc.options.fused_activation_function, True)
        out = back.outputs[0]
        out.shape = (*x.shape[:-1], units)
        fc.outputs = [out]
        graph.remove_ops([back])
        changed = True
    if changed:
        graph.remove_dead_ops()
    return changed


_INV_SQRT2 = 0.7071067811865476


def _match_gelu(uses: Uses, op: Op) -> Tensor | None:
    """x if ``op`` computes (0.5·x) · erfc((−x)·(1/√2))."""
    if op.type != OpType.MUL or op.options.fused_activation_function:
        return None
    for half_x, erfc_out in (op.inputs, op.inputs[::-1]):
        erfc = uses.producer_of(erfc_out, OpType.CUSTOM)
        half = uses.producer_of(half_x, OpType.MUL)
        if erfc is None or erfc.custom_code != "Erfc" or half is None:
            continue
        scaled = uses.producer_of(erfc.inputs[0], OpType.MUL)
        s_half, s_scaled = split_const(half), split_const(scaled) if scaled else None
        negate = uses.producer_of(s_scaled[0], OpType.NEG) if s_scaled else None
        if s_half and negate and is_close_scalar(s_half[1], 0.5) \
                and is_close_scalar(s_scaled[1], _INV_SQRT2) and negate.inputs[0] is s_half[0]:
            return s_half[0]
    return None


def _to_gelu(op: Op, x: Tensor) -> None:
    op.type, op.inputs, op.options = OpType.GELU, [x], o.GeluOptions(approximate=False)


def gelu(graph: Graph) -> bool:
    return _rewrite_matches(graph, _match_gelu, _to_gelu)


_SQRT_2_OVER_PI, _GELU_CUBIC = 0.7978845608028654, 0.044715


def _scaled(uses: Uses, t: Tensor, factor: float) -> Tensor | None:
    """x if ``t = x · factor`` (a MUL by a constant scalar)."""
    mul = uses.producer_of(t, OpType.MUL)
    split = split_const(mul) if mul and not mul.options.fused_activation_function else None
    return split[0] if split and is_close_scalar(split[1], factor) else None


def _tanh_gelu_inner(uses: Uses, t: Tensor) -> Tensor | None:
    """x if ``t = 1 + tanh(√(2/π)·(x + 0.044715·x³))``, x³ a POW by 3."""
    add = uses.producer_of(t, OpType.ADD)
    split = split_const(add) if add and not add.options.fused_activation_function else None
    tanh = uses.producer_of(split[0], OpType.TANH) if split and is_close_scalar(
        split[1], 1.0) else None
    inner = _scaled(uses, tanh.inputs[0], _SQRT_2_OVER_PI) if tanh else None
    total = uses.producer_of(inner, OpType.ADD) if inner is not None else None
    if total is None or total.options.fused_activation_function:
        return None
    for x, cubic in (total.inputs, total.inputs[::-1]):
        pow_out = _scaled(uses, cubic, _GELU_CUBIC)
        power = uses.producer_of(pow_out, OpType.POW) if pow_out is not None else None
        if power is not None and power.inputs[0] is x and power.inputs[1].is_const \
                and is_close_scalar(power.inputs[1].data, 3.0):
            return x
    return None


def _match_gelu_tanh(uses: Uses, op: Op) -> Tensor | None:
    """x if ``op`` computes (0.5·x) · (1 + tanh(√(2/π)·(x + 0.044715·x³))) (TF's and Keras's
    ``gelu(approximate=True)``)."""
    if op.type != OpType.MUL or op.options.fused_activation_function:
        return None
    for half_x, rest in (op.inputs, op.inputs[::-1]):
        x = _scaled(uses, half_x, 0.5)
        if x is not None and _tanh_gelu_inner(uses, rest) is x:
            return x
    return None


def _to_gelu_tanh(op: Op, x: Tensor) -> None:
    op.type, op.inputs, op.options = OpType.GELU, [x], o.GeluOptions(approximate=True)


def gelu_tanh(graph: Graph) -> bool:
    return _rewrite_matches(graph, _match_gelu_tanh, _to_gelu_tanh)


def _nearest_repeats(size: int, factor: int) -> bool:
    """Whether LiteRT's nearest resize of ``size`` rows to ``size·factor`` repeats each row.

    Its kernel reads input row ⌊i · s⌋ for output row i, with s = size / (size·factor), all in
    float32; this evaluates exactly that and compares with i // factor. (It holds for every
    size ≤ 1024 and factor ≤ 16; the check costs one pass over the output rows.)
    """
    out = size * factor
    scale = np.float32(size) / np.float32(out)
    rows = np.floor(np.arange(out, dtype=np.float32) * scale).astype(np.int64)
    return bool(np.array_equal(np.minimum(rows, size - 1), np.arange(out) // factor))


def _match_repeat(uses: Uses, reshape: Op) -> tuple[Tensor, int, int] | None:
    """(x, axis, factor) if ``reshape`` computes a repeat of a 4-D x along H or W as Keras 3
    does it: EXPAND_DIMS after the axis, TILE the new axis, RESHAPE it back in."""
    if reshape.type != OpType.RESHAPE:
        return None
    tile = uses.producer_of(reshape.inputs[0], OpType.TILE)
    expand = uses.producer_of(tile.inputs[0], OpType.EXPAND_DIMS) if tile else None
    if expand is None or not expand.inputs[1].is_const or not tile.inputs[1].is_const:
        return None
    x, new_axis = expand.inputs[0], int(expand.inputs[1].data)
    multiples = tile.inputs[1].data.reshape(-1).tolist()
    if x.shape is None or len(x.shape) != 4 or new_axis not in (2, 3) \
            or None in x.shape[1:] or len(multiples) != 5:
        return None
    factor = multiples[new_axis]
    axis = new_axis - 1
    expected = list(x.shape)
    expected[axis] *= factor
    if any(m != 1 for i, m in enumerate(multiples) if i != new_axis) \
            or not _nearest_repeats(x.shape[axis], factor) or reshape.outputs[0].shape is None \
            or list(reshape.outputs[0].shape[1:]) != expected[1:]:
        return None
    return x, axis, factor


def _default_nearest(op: Op | None) -> bool:
    return op is not None and op.type == OpType.RESIZE_NEAREST_NEIGHBOR \
        and op.options == o.ResizeNearestNeighborOptions() and op.inputs[1].is_const


def upsample_nearest(graph: Graph) -> bool:
    """Keras' repeat-based nearest upsampling → one RESIZE_NEAREST_NEIGHBOR per layer."""
    uses = Uses(graph)
    changed = False
    for op in graph.ops:
        found = _match_repeat(uses, op)
        if found is None:
            continue
        x, axis, factor = found
        inner = uses.producer_of(x)
        if _default_nearest(inner) and uses.only_consumer(x) is not None:
            x = inner.inputs[0]  # rows were repeated by a resize already: resize once
        height, width = op.outputs[0].shape[1:3]
        size = const(f"{op.outputs[0].name}/size", [height, width], np.int32)
        op.type, op.inputs = OpType.RESIZE_NEAREST_NEIGHBOR, [x, size]
        op.options = o.ResizeNearestNeighborOptions()
        changed = True
        uses = Uses(graph)
    if changed:
        graph.remove_dead_ops()
    return changed
