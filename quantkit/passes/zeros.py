"""What an unrolled RNN leaves: products with its zero initial state, and its bias added after
a sum of matmuls (``constant_into_summand``).

The first step of an unrolled LSTM multiplies the forget gate by the zero initial cell state
and adds the result; the matmul of the zero hidden state folds (FULLY_CONNECTED of constants),
the product does not, since the gate is not constant. ``x·0 = 0`` whatever x, so the product
becomes a zero constant; ``noop_elementwise`` then drops the ADD of it.
"""

from __future__ import annotations

import numpy as np

from quantkit.ir.graph import Graph, const
from quantkit.passes.util import split_const
from quantkit.types import OpType

_BINARY = (OpType.ADD, OpType.SUB, OpType.MUL)


def zero_products(graph: Graph) -> bool:
    """``MUL(x, 0)`` read only by binary elementwise ops → a zero constant.

    A dynamic dim of the product becomes 1 in the constant: its readers broadcast it, and they
    are elementwise, so their own shapes do not change.
    """
    consumers, outputs = graph.consumers(), set(graph.outputs)
    changed = False
    for op in graph.ops:
        if op.type != OpType.MUL or getattr(op.options, "fused_activation_function", 0):
            continue
        split = split_const(op)
        out = op.outputs[0]
        if split is None or np.any(split[1] != 0) or out in outputs or out.shape is None:
            continue
        readers = consumers.get(out, [])
        if not readers or any(r.type not in _BINARY or len(r.inputs) != 2 for r in readers):
            continue
        zeros = np.zeros([1 if d is None else d for d in out.shape], out.dtype)
        graph.replace_uses(out, const(f"{out.name}/zeros", zeros))
        changed = True
    return changed


def constant_into_summand(graph: Graph) -> bool:
    """``(a + b) + c`` → ``(a + c) + b`` for a constant c, where a is a FULLY_CONNECTED or
    CONV_2D output read only here: c then folds into a's bias.

    An RNN cell adds its bias after the sum of its input and recurrent matmuls,
    ``(x·W + h·U) + bias``; moved onto ``x·W`` it costs no op of its own.
    """
    producers, consumers = graph.producers(), graph.consumers()
    changed = False
    for outer in graph.ops:
        split = _plain_add(outer) and split_const(outer)
        if not split:
            continue
        inner = producers.get(split[0])
        if inner is None or not _plain_add(inner) or len(consumers.get(split[0], [])) != 1 \
                or any(t.is_const for t in inner.inputs):
            continue
        for a, b in (inner.inputs, inner.inputs[::-1]):
            source = producers.get(a)
            if source is not None and source.type in (OpType.FULLY_CONNECTED, OpType.CONV_2D) \
                    and len(consumers.get(a, [])) == 1 and a.shape == inner.outputs[0].shape:
                constant = next(t for t in outer.inputs if t.is_const)
                inner.inputs = [a, constant]
                outer.inputs = [inner.outputs[0], b]
                changed = True
                break
    return changed


def _plain_add(op) -> bool:
    return op.type == OpType.ADD and len(op.inputs) == 2 \
        and not getattr(op.options, "fused_activation_function", 0)
