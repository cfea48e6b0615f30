"""Cross-layer equalization (Nagel et al. 2019, "Data-Free Quantization"): for ``Optimize.ACCURACY``.

For two weighted layers in a row, ``y = W2·f(W1·x + b1) + b2`` with ``f`` positively homogeneous
per channel (``f(x/s) = f(x)/s`` for ``s > 0``: identity, ReLU, max/average pooling, a mean over
space, a flatten), scaling the first layer's output channel ``c`` by ``1/s_c`` and the second
layer's input channel ``c`` by ``s_c`` leaves ``y`` unchanged in exact arithmetic:

    W1[c] ← W1[c] / s_c,   b1[c] ← b1[c] / s_c,   W2[:, c] ← W2[:, c] · s_c.

With ``r1_c = max|W1[c]|`` and ``r2_c = max|W2[:, c]|``, ``s_c = √(r1_c / r2_c)`` makes both
ranges ``√(r1_c·r2_c)``: channels of very different ranges (a depthwise layer's, typically)
then share one per-tensor scale far better. Chains are equalized pair by pair, in rounds,
until the scales settle (each layer sits in up to two pairs).

Pairs: CONV_2D, DEPTHWISE_CONV_2D or FULLY_CONNECTED (fused NONE or RELU) → CONV_2D
(ungrouped), DEPTHWISE_CONV_2D (multiplier 1) or FULLY_CONNECTED (through a flatten: FC input
``j`` reads channel ``j mod C``), with MAX_POOL_2D, AVERAGE_POOL_2D (fused NONE/RELU), MEAN over space and
RESHAPE allowed in between, every tensor on the way read by the next op only.

ReLU6 (``relu6=True``): a first layer fused with RELU6 clamps ``min(x, 6)``; after scaling
its channel ``c`` by ``1/s_c`` the clamp must be ``min(x, 6/s_c)``, which no fused activation
expresses. Such a layer becomes fused RELU followed by a MINIMUM with the constant ``6/S_c``
(``S``: the product of its scales over the rounds; shape ``[C]``, broadcast over the last
axis), exact in float. The int8 model then has one more op per such layer and the tensor
before the MINIMUM carries the unclamped values (the quantizer caps its range at
``max_c 6/S_c``, ``quantize.params``). Off by default: on the models measured it does not pay
(README, #15). RELU_N1_TO_1 first layers are left alone.
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor, const
from quantkit.passes.util import Uses
from quantkit.types import Activation, OpType

ROUNDS = 32  # sweeps over every pair; stops earlier once every scale is within TOLERANCE of 1
TOLERANCE = 1e-4
_HOMOGENEOUS = frozenset({Activation.NONE, Activation.RELU})
_FIRST = frozenset({OpType.CONV_2D, OpType.DEPTHWISE_CONV_2D, OpType.FULLY_CONNECTED})
_SECOND = frozenset({OpType.CONV_2D, OpType.DEPTHWISE_CONV_2D, OpType.FULLY_CONNECTED})
_POOLS = frozenset({OpType.MAX_POOL_2D, OpType.AVERAGE_POOL_2D})


def fused_activation(op: Op) -> Activation:
    """The op's fused activation (NONE for ops without the field)."""
    return getattr(op.options, "fused_activation_function", Activation.NONE)


def _out_axis(op: Op) -> int:
    return 3 if op.type == OpType.DEPTHWISE_CONV_2D else 0  # CONV_2D OHWI, FC [O, I]


def _passes_channels(op: Op) -> bool:
    """``op`` maps channel ``c`` of its input to channel ``c`` of its output, homogeneously."""
    if op.type in _POOLS:
        return fused_activation(op) in _HOMOGENEOUS
    if op.type == OpType.MEAN and len(op.inputs) == 2 and op.inputs[1].is_const:
        rank = len(op.inputs[0].shape or ())
        axes = {int(a) % rank for a in np.ravel(op.inputs[1].data)} if rank else {0}
        return rank >= 2 and rank - 1 not in axes
    return False


def _second(op: Op, channels: int, via_reshape: bool) -> bool:
    """``op`` can take the scales on its input channels (``channels`` of them)."""
    if op.type not in _SECOND or not op.inputs[1].is_const:
        return False
    w = op.inputs[1].data
    if op.type == OpType.FULLY_CONNECTED:
        return w.ndim == 2 and w.shape[1] % channels == 0
    if via_reshape:
        return False
    if op.type == OpType.CONV_2D:
        return w.ndim == 4 and w.shape[3] == channels
    return w.ndim == 4 and w.shape[3] == channels and op.options.depth_multiplier == 1


def pairs(graph: Graph, relu6: bool = False) -> list[tuple[Op, Op]]:
    """The (first, second) layer pairs equalization may scale (module docstring); with
    ``relu6``, first layers fused with RELU6 too."""
    uses = Uses(graph)
    found = []
    firsts = _HOMOGENEOUS | {Activation.RELU6} if relu6 else _HOMOGENEOUS
    for first in graph.ops:
        if first.type not in _FIRST or fused_activation(first) not in firsts \
                or not first.inputs[1].is_const or not _const_or_absent(first, 2):
            continue
        channels = first.inputs[1].data.shape[_out_axis(first)]
        t, via_reshape = first.outputs[0], False
        while (op := uses.only_consumer(t)) is not None and op.inputs[0] is t:
            if op.type == OpType.RESHAPE and not via_reshape:
                via_reshape = True
            elif not _passes_channels(op):
                break
            t = op.outputs[0]
        if op is not None and op.inputs[0] is t and _second(op, channels, via_reshape):
            found.append((first, op))
    return found


def _const_or_absent(op: Op, index: int) -> bool:
    return index >= len(op.inputs) or op.inputs[index] is None or op.inputs[index].is_const


def _ranges(first: Op, second: Op) -> tuple[np.ndarray, np.ndarray]:
    """``r1_c = max|W1[c]|`` and ``r2_c = max|W2[:, c]|`` (FC: over inputs ``j ≡ c mod C``)."""
    w1, w2 = np.abs(first.inputs[1].data), np.abs(second.inputs[1].data)
    axis = _out_axis(first)
    r1 = w1.max(axis=tuple(d for d in range(w1.ndim) if d != axis))
    if second.type == OpType.FULLY_CONNECTED:
        r2 = w2.max(axis=0).reshape(-1, len(r1)).max(axis=0)
    else:
        r2 = w2.max(axis=(0, 1, 2))
    return r1.astype(np.float64), r2.astype(np.float64)


def replace_constant(op: Op, index: int, data: np.ndarray) -> None:
    """Input ``index`` of ``op`` becomes a new constant of the same name, type and shape
    holding ``data`` (the old tensor may be shared with other ops: it is not changed)."""
    old = op.inputs[index]
    data = np.ascontiguousarray(data, dtype=old.data.dtype)
    op.inputs[index] = Tensor(old.name, old.dtype, old.shape, data)


def _scale_shape(ndim: int, axis: int) -> list[int]:
    shape = [1] * ndim
    shape[axis] = -1
    return shape


def weight_scales(first: Op, second: Op) -> np.ndarray:
    """``s_c = √(r1_c / r2_c)`` (1 where either range is 0): both weight ranges become
    ``√(r1_c·r2_c)``."""
    r1, r2 = _ranges(first, second)
    return np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1.0)), 1.0)


def equalize_pair(first: Op, second: Op, s: np.ndarray | None = None) -> np.ndarray:
    """Scale one pair by ``s`` (default ``weight_scales``, module docstring); returns ``s``."""
    if s is None:
        s = weight_scales(first, second)
    s = np.asarray(s, np.float64)
    w1 = first.inputs[1].data.astype(np.float64)
    replace_constant(first, 1, w1 / s.reshape(_scale_shape(w1.ndim, _out_axis(first))))
    if len(first.inputs) > 2 and first.inputs[2] is not None:
        replace_constant(first, 2, first.inputs[2].data.astype(np.float64) / s)
    w2 = second.inputs[1].data.astype(np.float64)
    if second.type == OpType.FULLY_CONNECTED:
        replace_constant(second, 1, w2 * np.tile(s, w2.shape[1] // len(s))[None, :])
    else:
        replace_constant(second, 1, w2 * s.reshape(1, 1, 1, -1))
    return s


def equalize(graph: Graph, relu6: bool = False, scales: dict[Op, np.ndarray] | None = None
             ) -> bool:
    """Equalize every pair of ``graph`` in place; True when anything was scaled. ``relu6``:
    RELU6 first layers too, each then followed by a MINIMUM (module docstring). ``scales``:
    receives each first layer's ``S``, the product of its scales over the rounds."""
    found = pairs(graph, relu6)
    changed = False
    total = {first: np.ones(1) for first, _ in found}
    for _ in range(ROUNDS):
        largest = 0.0
        for first, second in found:
            s = equalize_pair(first, second)
            total[first] = total[first] * s
            largest = max(largest, float(np.abs(np.log(s)).max(initial=0.0)))
        changed = changed or largest > 0.0
        if largest < TOLERANCE:
            break
    for first, product in total.items():
        if fused_activation(first) is Activation.RELU6 and np.any(product != 1.0):
            _bound_per_channel(graph, first, 6.0 / product)
    if scales is not None:
        scales.update(total)
    return changed


def _bound_per_channel(graph: Graph, first: Op, bound: np.ndarray) -> None:
    """``first`` (fused RELU6) becomes fused RELU followed by ``MINIMUM(·, bound)``, which
    writes ``first``'s old output tensor (its readers are unchanged)."""
    out = first.outputs[0]
    unclamped = Tensor(f"{out.name}/unclamped", out.dtype, out.shape)
    limit = const(f"{out.name}/bound", bound.astype(np.float32))
    first.options = dataclasses.replace(first.options, fused_activation_function=Activation.RELU)
    first.outputs[0] = unclamped
    clamp = Op(OpType.MINIMUM, [unclamped, limit], [out], name=f"{first.name}/relu6_bound")
    graph.ops.insert(graph.ops.index(first) + 1, clamp)


def undo_factors(graph: Graph, scales: Mapping[Op, np.ndarray]) -> dict[str, np.ndarray]:
    """Per activation on the way from a first layer of ``scales`` (``equalize``'s, no RELU6
    pairs) to its second, ``S`` with ``t_before = t_equalized · S`` over the last axis (a
    flatten's output channel ``j`` is channel ``j mod C``)."""
    uses = Uses(graph)
    factors: dict[str, np.ndarray] = {}
    for first, s in scales.items():
        t = first.outputs[0]
        while True:
            width = t.shape[-1] if t.shape and (t.shape[-1] or 0) > 0 else len(s)
            factors[t.name] = np.tile(s, width // len(s)).astype(np.float32)
            op = uses.only_consumer(t)
            if op is None or op.inputs[0] is not t or not (
                    op.type == OpType.RESHAPE or _passes_channels(op)):
                break
            t = op.outputs[0]
    return factors
