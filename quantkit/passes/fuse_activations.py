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
from quantkit.types import Activation


def fuse_activations(graph: Graph) -> bool:
    uses = Uses(graph)
    dead = []
    for act in graph.ops:
        activation = spec(act.type).activation
        producer = uses.producer_of(act.inputs[0]) if activation is not None else None
        if producer is None or activation not in spec(producer.type).fusable \
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
