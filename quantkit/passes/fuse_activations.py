"""Fuse a RELU/RELU6/RELU_N1_TO_1 into the ``fused_activation_function`` of its producer."""

from __future__ import annotations

import dataclasses

from quantkit.ir.graph import Graph
from quantkit.passes.util import Uses, take_outputs
from quantkit.types import Activation, OpType

ACTIVATIONS = {OpType.RELU: Activation.RELU, OpType.RELU6: Activation.RELU6,
               OpType.RELU_N1_TO_1: Activation.RELU_N1_TO_1, OpType.TANH: Activation.TANH}

# Producers whose LiteRT kernels apply a fused activation (tests run every row in LiteRT).
# TANH is a legal ``fused_activation_function`` but LiteRT's CONV_2D/ADD/MUL kernels clamp only
# the RELU family (a fused TANH is silently ignored) and FULLY_CONNECTED refuses it, so TANH
# stays a separate op. CONCATENATION has the field too, but its kernel refuses any activation.
FUSABLE = frozenset({Activation.RELU, Activation.RELU6, Activation.RELU_N1_TO_1})
FUSABLE_INTO = frozenset({
    OpType.CONV_2D, OpType.DEPTHWISE_CONV_2D, OpType.FULLY_CONNECTED, OpType.TRANSPOSE_CONV,
    OpType.ADD, OpType.SUB, OpType.MUL, OpType.DIV, OpType.AVERAGE_POOL_2D, OpType.MAX_POOL_2D,
})


def fuse_activations(graph: Graph) -> bool:
    uses = Uses(graph)
    dead = []
    for act in graph.ops:
        activation = ACTIVATIONS.get(act.type)
        producer = uses.producer_of(act.inputs[0]) if activation is not None else None
        if producer is None or producer.type not in FUSABLE_INTO \
                or activation not in FUSABLE \
                or uses.only_consumer(act.inputs[0]) is not act \
                or producer.options.fused_activation_function != Activation.NONE \
                or any(t.quant for t in [*producer.outputs, *act.outputs]):
            continue
        producer.options = dataclasses.replace(producer.options,
                                               fused_activation_function=activation)
        take_outputs(producer, act)
        dead.append(act)
    graph.remove_ops(dead)
    return bool(dead)
