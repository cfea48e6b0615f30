"""Products with zero: an RNN's zero initial state, once its loop is unrolled.

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
