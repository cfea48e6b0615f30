"""Fuse a RELU/RELU6/RELU_N1_TO_1 into the ``fused_activation_function`` of its producer.

Which op is which activation (``activation``) and which producers' kernels apply which fused
activations (``fusable``) is in the op table (``quantkit.ops``): TANH is a legal
``fused_activation_function`` but no kernel applies it, so it stays a separate op.
"""

from __future__ import annotations

import dataclasses

from quantkit.ir.graph import Graph
from quantkit.ops import spec
from quantkit.passes.util import Uses, take_outputs
from quantkit.types import Activation, OpType


# Ops that only reshape: an elementwise activation after one commutes with it (Conv1D is
# EXPAND_DIMS → CONV_2D → SQUEEZE, and its activation follows the SQUEEZE).
_RESHAPES = frozenset({OpType.RESHAPE, OpType.SQUEEZE, OpType.EXPAND_DIMS})


def fuse_activations(graph: Graph) -> bool:
    uses = Uses(graph)
    dead = []
    for act in graph.ops:
        activation = spec(act.type).activation
        producer = uses.producer_of(act.inputs[0]) if activation is not None else None
        reshape = producer if producer is not None and producer.type in _RESHAPES else None
        if reshape is not None and uses.only_consumer(act.inputs[0]) is act:
            producer = uses.producer_of(reshape.inputs[0])
            if producer is None or uses.only_consumer(reshape.inputs[0]) is not reshape:
                continue
        elif producer is None or uses.only_consumer(act.inputs[0]) is not act:
            continue
        if activation not in spec(producer.type).fusable \
                or producer.options.fused_activation_function != Activation.NONE \
                or any(t.quant for t in [*producer.outputs, *act.outputs]):
            continue
        producer.options = dataclasses.replace(producer.options,
                                               fused_activation_function=activation)
        take_outputs(reshape or producer, act)
        dead.append(act)
    graph.remove_ops(dead)
    return bool(dead)
