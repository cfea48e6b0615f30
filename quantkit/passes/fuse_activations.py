"""Fuse a RELU/RELU6/RELU_N1_TO_1/TANH into the ``fused_activation_function`` of its producer."""

from __future__ import annotations

import dataclasses

from quantkit.ir.graph import Graph
from quantkit.passes.util import Uses
from quantkit.types import Activation, OpType

ACTIVATIONS = {OpType.RELU: Activation.RELU, OpType.RELU6: Activation.RELU6,
               OpType.RELU_N1_TO_1: Activation.RELU_N1_TO_1, OpType.TANH: Activation.TANH}

# Producers whose LiteRT kernels apply a fused activation, and which activations each takes.
_RELUS = frozenset({Activation.RELU, Activation.RELU6, Activation.RELU_N1_TO_1})
FUSABLE_INTO = {
    OpType.CONV_2D: _RELUS | {Activation.TANH},
    OpType.DEPTHWISE_CONV_2D: _RELUS | {Activation.TANH},
    OpType.FULLY_CONNECTED: _RELUS | {Activation.TANH},
    OpType.TRANSPOSE_CONV: _RELUS,
    OpType.ADD: _RELUS | {Activation.TANH},
    OpType.SUB: _RELUS,
    OpType.MUL: _RELUS | {Activation.TANH},
    OpType.DIV: _RELUS,
    OpType.CONCATENATION: _RELUS,
    OpType.AVERAGE_POOL_2D: _RELUS,
    OpType.MAX_POOL_2D: _RELUS,
}


def fuse_activations(graph: Graph) -> bool:
    uses = Uses(graph)
    dead = []
    for act in graph.ops:
        activation = ACTIVATIONS.get(act.type)
        producer = uses.producer_of(act.inputs[0]) if activation is not None else None
        if producer is None or producer.type not in FUSABLE_INTO \
                or activation not in FUSABLE_INTO[producer.type] \
                or uses.only_consumer(act.inputs[0]) is not act \
                or producer.options.fused_activation_function != Activation.NONE \
                or any(t.quant for t in [*producer.outputs, *act.outputs]):
            continue
        producer.options = dataclasses.replace(producer.options, fused_activation_function=activation)
        producer.outputs = list(act.outputs)
        dead.append(act)
    graph.remove_ops(dead)
    return bool(dead)
