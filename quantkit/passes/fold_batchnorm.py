"""Fold per-channel affine ops (BatchNorm, BiasAdd) into the convolution or matmul before them.

    y = (conv(x, W) + b)·m + a   ⇒   y = conv(x, W·m) + (b·m + a)

``m`` and ``a`` vary only along the output-channel axis. This covers inference BatchNorm in
both forms TF traces it (FusedBatchNormV3, and Keras 3's Rsqrt/Mul/Sub/AddV2 chain, already
constant-folded to one MUL and one ADD) and the BiasAdd that follows every Keras layer.
"""

from __future__ import annotations

import numpy as np

from quantkit.ir.graph import Graph, Op, const
from quantkit.ops import OPS, WEIGHTED
from quantkit.passes.util import Uses, channel_vector, same_shape, split_const, take_outputs
from quantkit.types import Activation, OpType



def _foldable_producer(uses: Uses, op: Op) -> tuple[Op, np.ndarray] | None:
    """(conv, per-channel vector) if ``op`` is MUL/ADD by a constant right after a conv."""
    if op.type not in (OpType.MUL, OpType.ADD) or op.options.fused_activation_function:
        return None
    split = split_const(op)
    if split is None:
        return None
    x, value = split
    conv = uses.producer_of(x, *WEIGHTED)
    if conv is None or uses.only_consumer(x) is not op \
            or conv.options.fused_activation_function != Activation.NONE:
        return None
    layout = OPS[conv.type].weights
    weights, bias = conv.inputs[layout.weights_input], conv.inputs[layout.bias_input]
    if not weights.is_const or (bias is not None and not bias.is_const):
        return None
    vector = channel_vector(value, op.outputs[0])
    if vector is None or not same_shape(x, op.outputs[0]):
        return None
    return conv, vector


def _apply(conv: Op, op: Op, vector: np.ndarray) -> None:
    layout = OPS[conv.type].weights
    w_in, b_in = layout.weights_input, layout.bias_input
    weights = conv.inputs[w_in]
    channels = weights.data.shape[layout.output_axis]
    bias = conv.inputs[b_in]
    b = np.zeros(channels) if bias is None else bias.data.astype(np.float64)
    if op.type == OpType.MUL:
        shape = [1] * weights.data.ndim
        shape[layout.output_axis] = channels
        w = weights.data.astype(np.float64) * vector.reshape(shape)
        conv.inputs[w_in] = const(weights.name, w.astype(weights.dtype))
        b = b * vector
    else:
        b = b + vector
    conv.inputs[b_in] = const(f"{conv.outputs[0].name}/bias", b.astype(weights.dtype))
    take_outputs(conv, op)  # the conv now produces what the affine op did


def fold_batchnorm(graph: Graph) -> bool:
    """Fold every MUL/ADD-by-constant that directly follows a conv/matmul into it."""
    changed = False
    while True:
        uses = Uses(graph)
        dead = []
        touched: set[int] = set()
        for op in graph.ops:
            found = _foldable_producer(uses, op)
            if found is None or id(found[0]) in touched:
                continue
            conv, vector = found
            _apply(conv, op, vector)
            touched.add(id(conv))
            dead.append(op)
        if not dead:
            return changed
        graph.remove_ops(dead)
        changed = True
