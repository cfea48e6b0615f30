"""JAX's compositions → TFLite builtins, on a freshly lowered graph (before the passes).

StableHLO has no softmax, sigmoid, mean or ReLU: JAX emits ``jax.nn.softmax`` as
``exp(x − max x) / Σ exp(…)``, ``jax.nn.sigmoid`` as ``1 / (1 + exp(−x))``, ``jnp.mean`` as
``Σx / n``, ``jax.nn.relu`` as ``max(x, 0)``, ``relu6`` and ``jnp.clip`` as
``min(max(x, lo), hi)``, and an average pool as a window sum (lowered AVERAGE_POOL_2D·k)
divided by k. Each rule rewrites the op that completes a composition in place (or drops it);
the intermediates die with it unless something else reads them. Without these an int8 model
would need DIV (no int8 kernel) and keep a range for every intermediate.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from quantkit.ir import options as o
from quantkit.ir.graph import Graph, Op, Tensor, const
from quantkit.passes.util import Uses, split_const
from quantkit.types import OpType

# A rule looks at one op; it edits the graph and returns True when it matched.
Rule = Callable[[Graph, Op, Uses], bool]


def all_equal(t: Tensor | None, value: float) -> bool:
    return t is not None and t.is_const and bool(np.all(t.data == value))


def _scalar(value: np.ndarray) -> float | None:
    """The one value a constant holds everywhere, else None."""
    flat = np.unique(value)
    return float(flat[0]) if flat.size == 1 else None


def _replace(op: Op, op_type: OpType, inputs: list[Tensor], options: object = None) -> bool:
    op.type, op.inputs, op.options = op_type, inputs, options
    return True


def _same_shape(x: Tensor, op: Op) -> bool:
    """The rewrite keeps ``op``'s output shape only if ``x`` was not broadcast by it."""
    return x.shape == op.outputs[0].shape


def _skip(uses: Uses, t: Tensor) -> Tensor:
    """``t`` back through RESHAPEs (keepdims) and ``max(−inf, ·)`` (jnp.max's initial)."""
    while True:
        op = uses.producer_of(t, OpType.RESHAPE, OpType.MAXIMUM)
        if op is None:
            return t
        if op.type == OpType.MAXIMUM:
            split = split_const(op)
            if split is None or not all_equal(op.inputs[op.inputs.index(split[0]) ^ 1],
                                              -np.inf):
                return t
            t = split[0]
        else:
            t = op.inputs[0]


def _last_axis_reduction(uses: Uses, t: Tensor, op_type: OpType, x: Tensor) -> bool:
    """``t`` is ``op_type`` of ``x`` over its last axis (through reshapes)."""
    op = uses.producer_of(_skip(uses, t), op_type)
    if op is None or op.inputs[0] is not x or x.shape is None:
        return False
    axes = np.reshape(op.inputs[1].data, -1) % len(x.shape)
    return axes.tolist() == [len(x.shape) - 1]


# --- the rules ---------------------------------------------------------------------------------
def relu(graph: Graph, op: Op, uses: Uses) -> bool:
    """max(x, 0) → RELU."""
    split = split_const(op) if op.type == OpType.MAXIMUM else None
    if split is None or not np.all(split[1] == 0) or not _same_shape(split[0], op):
        return False
    return _replace(op, OpType.RELU, [split[0]])


_CLAMPS = {(0.0, 6.0): OpType.RELU6, (-1.0, 1.0): OpType.RELU_N1_TO_1}


def clamp(graph: Graph, op: Op, uses: Uses) -> bool:
    """min(max(x, lo), hi) or max(min(x, hi), lo) with (lo, hi) = (0, 6) → RELU6, (−1, 1) →
    RELU_N1_TO_1 (also min(RELU(x), 6))."""
    split = split_const(op) if op.type in (OpType.MINIMUM, OpType.MAXIMUM) else None
    if split is None or _scalar(split[1]) is None:
        return False
    y, outer = split[0], _scalar(split[1])
    inner_type = OpType.MAXIMUM if op.type == OpType.MINIMUM else OpType.MINIMUM
    inner = uses.producer_of(y, inner_type, OpType.RELU)
    if inner is None:
        return False
    if inner.type == OpType.RELU:
        if op.type != OpType.MINIMUM:
            return False
        x, inner_value = inner.inputs[0], 0.0
    else:
        inner_split = split_const(inner)
        if inner_split is None or _scalar(inner_split[1]) is None:
            return False
        x, inner_value = inner_split[0], _scalar(inner_split[1])
    bounds = (inner_value, outer) if op.type == OpType.MINIMUM else (outer, inner_value)
    if bounds not in _CLAMPS or not _same_shape(x, op):
        return False
    return _replace(op, _CLAMPS[bounds], [x])


def logistic(graph: Graph, op: Op, uses: Uses) -> bool:
    """1 / (1 + exp(−x)) → LOGISTIC."""
    if op.type != OpType.DIV or not all_equal(op.inputs[0], 1):
        return False
    add = uses.producer_of(op.inputs[1], OpType.ADD)
    split = split_const(add) if add else None
    if split is None or not np.all(split[1] == 1):
        return False
    exp = uses.producer_of(split[0], OpType.EXP)
    neg = uses.producer_of(exp.inputs[0], OpType.NEG) if exp else None
    if neg is None or not _same_shape(neg.inputs[0], op):
        return False
    return _replace(op, OpType.LOGISTIC, [neg.inputs[0]])


def softmax(graph: Graph, op: Op, uses: Uses) -> bool:
    """e / Σe over the last axis with e = exp(x − max x) → SOFTMAX."""
    if op.type != OpType.DIV:
        return False
    e, total = op.inputs
    exp = uses.producer_of(e, OpType.EXP)
    sub = uses.producer_of(exp.inputs[0], OpType.SUB) if exp else None
    if sub is None:
        return False
    x, peak = sub.inputs
    if not (_last_axis_reduction(uses, peak, OpType.REDUCE_MAX, x)
            and _last_axis_reduction(uses, total, OpType.SUM, e) and _same_shape(x, op)):
        return False
    return _replace(op, OpType.SOFTMAX, [x], o.SoftmaxOptions(1.0))


def mean(graph: Graph, op: Op, uses: Uses) -> bool:
    """Σx / n over the summed axes (n their size) → MEAN, reshaped as the quotient was."""
    if op.type != OpType.DIV or not op.inputs[1].is_const:
        return False
    total = uses.producer_of(_skip(uses, op.inputs[0]), OpType.SUM)
    if total is None or total.inputs[0].shape is None or not _same_shape(op.inputs[0], op):
        return False
    x, axes = total.inputs
    count = int(np.prod([x.shape[int(a)] for a in np.reshape(axes.data, -1)]))
    if not np.all(op.inputs[1].data == count):
        return False
    out = op.outputs[0]
    kept = tuple(1 if i in set(np.reshape(axes.data, -1) % len(x.shape)) else d
                 for i, d in enumerate(x.shape))
    if out.shape in (kept, total.outputs[0].shape):
        return _replace(op, OpType.MEAN, [x, axes], o.ReducerOptions(out.shape == kept))
    reduced = Tensor(f"{out.name}/mean", out.dtype, total.outputs[0].shape)
    graph.ops.insert(graph.ops.index(op), Op(OpType.MEAN, [x, axes], [reduced],
                                             o.ReducerOptions(False), name=op.name))
    return _replace(op, OpType.RESHAPE, [reduced, const(f"{out.name}/shape", out.shape,
                                                         np.int32)])


def window_average(graph: Graph, op: Op, uses: Uses) -> bool:
    """(AVERAGE_POOL_2D · k) / k → the average pool itself."""
    if op.type != OpType.DIV or not op.inputs[1].is_const:
        return False
    scaled = uses.producer_of(op.inputs[0], OpType.MUL)
    split = split_const(scaled) if scaled else None
    if split is None or uses.producer_of(split[0], OpType.AVERAGE_POOL_2D) is None \
            or _scalar(split[1]) is None or not _same_shape(split[0], op) \
            or not np.all(op.inputs[1].data == _scalar(split[1])):
        return False
    graph.replace_uses(op.outputs[0], split[0])
    graph.remove_ops([op])
    return True


RULES: tuple[Rule, ...] = (clamp, relu, logistic, softmax, mean, window_average)


def rewrite_patterns(graph: Graph) -> int:
    """Apply every rule to every op, in graph order; the number of rewrites."""
    uses = Uses(graph)
    count = 0
    for op in list(graph.ops):
        for rule in RULES:
            if rule(graph, op, uses):
                count += 1
                break
    graph.remove_dead_ops()
    return count
