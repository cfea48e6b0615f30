"""WHILE loops with fewer loop variables and ops: what a Keras RNN's loop carries twice.

A Keras RNN's TF loop carries two step counters (``loop_counter`` for ``maximum_iterations``,
and ``time``), its last output twice (the state, and a tensor list of one item that a RESHAPE
of the state replaces at each step: ``frontend.tf_while``) and its input sequence transposed
time-major, read by a GATHER at the counter. TF's converter keeps all of it (a GRU: 28 ops);
these rewrites drop the copies (a GRU: 22):

* ``twin_variables``: two loop variables that enter equal and that the body advances the same
  way (one op of one type and options, on the same operands) are equal at every step: one goes;
* ``last_output_variable``: a one-item list that enters as zeros and whose next value is a
  RESHAPE of another variable's next value (zeros on entry too) is that variable reshaped
  after any number of steps: its item, read after the loop, is that variable;
* ``untransposed_sequence``: a sequence that the body only reads one step at a time (GATHER on
  axis 0 at a scalar index), transposed by swapping its first two axes before the loop (TF's
  .tflite at batch 1: a RESHAPE), is read on axis 1 of the tensor before the swap;
* ``conjunction_of_bounds`` (any graph): ``p and p`` → ``p``; ``x < a and x < b`` →
  ``x < min(a, b)`` (the condition of the merged counters).

A loop variable ``k`` is five tensors (``ir.graph.variable_slots``): the WHILE's input and
output ``k``, the condition's and the body's input ``k`` and the body's output ``k``. The loop
rewrites are the only passes that look across a WHILE's subgraph boundaries; they run on the
graph holding the WHILE (before its condition and body get the per-graph passes:
``run_passes``).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from quantkit.ir import options as o
from quantkit.ir.graph import Graph, Op, Tensor, const, variable_slots, while_ops
from quantkit.passes.util import Uses, same_shape, to_fixpoint
from quantkit.types import OpType


def _parts(loop: Op) -> tuple[Graph, Graph]:
    return loop.options.cond_subgraph, loop.options.body_subgraph


def _loops(graph: Graph) -> list[Op]:
    """The graph's WHILE ops whose condition and body no other op runs (a rewrite edits them:
    a .tflite may run one body from two WHILE ops)."""
    loops = while_ops(graph)
    runs = Counter(id(g) for op in loops for g in _parts(op))
    return [op for op in loops if all(runs[id(g)] == 1 for g in _parts(op))]


def _read(graph: Graph, tensor: Tensor) -> bool:
    """Whether an op of ``graph`` or its outputs read ``tensor``."""
    return tensor in graph.outputs or any(tensor in op.inputs for op in graph.ops)


def _same_value(a: Tensor, b: Tensor) -> bool:
    """The same tensor, or constants of equal type, shape and values."""
    if a is b:
        return True
    return a.is_const and b.is_const and a.data.dtype == b.data.dtype and \
        a.data.shape == b.data.shape and bool(np.array_equal(a.data, b.data))


def _zeros(t: Tensor) -> bool:
    return t.is_const and not np.any(t.data)


def _drop_variable(graph: Graph, loop: Op, k: int) -> None:
    """Remove loop variable ``k`` (none of its tensors is read any more)."""
    for tensors in variable_slots(loop):
        del tensors[k]
    for g in (*_parts(loop), graph):
        g.remove_dead_ops()


# --- twin variables ----------------------------------------------------------------------------
def _same_step(body: Graph, producers: dict[Tensor, Op], j: int, k: int) -> bool:
    """Whether the body computes variable ``k``'s next value from it as it computes ``j``'s
    from ``j`` (both passed through, or one op alike but for that operand)."""
    (xj, xk), (yj, yk) = (body.inputs[j], body.inputs[k]), (body.outputs[j], body.outputs[k])
    if yj is xj and yk is xk:
        return True
    pj, pk = producers.get(yj), producers.get(yk)
    if pj is None or pk is None or pj is pk or len(pj.outputs) != 1 or len(pk.outputs) != 1 \
            or (pj.type, pj.options, len(pj.inputs)) != (pk.type, pk.options, len(pk.inputs)):
        return False
    return all((a is xj and b is xk) or (a is not xj and b is not xk and a is not None
                                          and b is not None and _same_value(a, b))
               or (a is None and b is None) for a, b in zip(pj.inputs, pk.inputs))


def _twins(graph: Graph, loop: Op) -> tuple[int, int] | None:
    _, body = _parts(loop)
    producers = body.producers()
    n = len(loop.inputs)
    for j in range(n):
        for k in range(j + 1, n):
            if loop.outputs[k] not in graph.outputs \
                    and body.inputs[j].dtype == body.inputs[k].dtype \
                    and _same_value(loop.inputs[j], loop.inputs[k]) \
                    and _same_step(body, producers, j, k):
                return j, k
    return None


@to_fixpoint
def twin_variables(graph: Graph) -> bool:
    """Two loop variables equal at every step → one (the second's readers read the first)."""
    for loop in _loops(graph):
        found = _twins(graph, loop)
        if found is None:
            continue
        j, k = found
        cond, body = _parts(loop)
        body.replace_uses(body.inputs[k], body.inputs[j])
        cond.replace_uses(cond.inputs[k], cond.inputs[j])
        graph.replace_uses(loop.outputs[k], loop.outputs[j])
        _drop_variable(graph, loop, k)
        return True
    return False


# --- the last output, kept as a one-item list -------------------------------------------------
def _first_item(op: Op, items: Tensor) -> bool:
    """``op`` is ``items[0]`` (or ``items[-1]``) of a one-item ``items``: a STRIDED_SLICE that
    drops axis 0 and takes every other axis whole."""
    if op.type != OpType.STRIDED_SLICE or op.inputs[0] is not items or items.shape is None \
            or not items.shape or items.shape[0] != 1:
        return False
    opts = op.options
    if (opts.shrink_axis_mask, opts.ellipsis_mask, opts.new_axis_mask) != (1, 0, 0):
        return False
    if any(t is None or not t.is_const for t in op.inputs[1:4]):
        return False
    begin, end, strides = (t.data.reshape(-1).astype(np.int64) for t in op.inputs[1:4])
    if not len(begin) == len(end) == len(strides) <= len(items.shape) or np.any(strides != 1):
        return False
    whole = all((opts.begin_mask >> a & 1 or begin[a] == 0) and (opts.end_mask >> a & 1 or (
        items.shape[a] is not None and end[a] >= items.shape[a])) for a in range(1, len(begin)))
    return whole and bool(opts.begin_mask & 1 or begin[0] in (0, -1))


def _list_of_state(graph: Graph, loop: Op) -> tuple[int, int] | None:
    cond, body = _parts(loop)
    producers = body.producers()
    readers = graph.consumers()
    for k, result in enumerate(loop.outputs):
        reshape = producers.get(body.outputs[k])
        if reshape is None or reshape.type != OpType.RESHAPE or result in graph.outputs \
                or not _zeros(loop.inputs[k]) or _read(body, body.inputs[k]) \
                or _read(cond, cond.inputs[k]):
            continue
        for j, state in enumerate(body.outputs):
            if j != k and state is reshape.inputs[0] and _zeros(loop.inputs[j]) and all(
                    _first_item(op, result) and same_shape(op.outputs[0], loop.outputs[j])
                    for op in readers.get(result, [])):
                return k, j
    return None


@to_fixpoint
def last_output_variable(graph: Graph) -> bool:
    """A one-item list holding a reshaped copy of another loop variable → that variable (its
    item's readers read the variable; both enter as zeros, so they agree after no step too)."""
    for loop in _loops(graph):
        found = _list_of_state(graph, loop)
        if found is None:
            continue
        k, j = found
        items = [op for op in graph.ops if loop.outputs[k] in op.inputs]
        for op in items:
            graph.replace_uses(op.outputs[0], loop.outputs[j])
        graph.remove_ops(items)
        _drop_variable(graph, loop, k)
        return True
    return False


# --- a time-major sequence read one step at a time ---------------------------------------------
def _swaps_first_axes(op: Op | None) -> bool:
    """``op`` swaps its input's first two axes: TRANSPOSE(x, [1, 0, …]), or a RESHAPE of a
    static ``[1, n, …]`` to ``[n, 1, …]`` (TF's form at batch 1)."""
    if op is None or not op.inputs[1].is_const:
        return False
    if op.type == OpType.TRANSPOSE:
        perm = [int(p) for p in op.inputs[1].data.reshape(-1)]
        return len(perm) >= 2 and perm == [1, 0, *range(2, len(perm))]
    shape, out = op.inputs[0].shape, op.outputs[0].shape
    return op.type == OpType.RESHAPE and shape is not None and op.inputs[0].static_shape \
        and len(shape) >= 2 and shape[0] == 1 and out == (shape[1], 1, *shape[2:])


def _step_reads(body: Graph, x: Tensor) -> list[Op] | None:
    """The body's readers of ``x``, if each is a GATHER of one step on axis 0."""
    readers = [op for op in body.ops if x in op.inputs]
    if all(op.type == OpType.GATHER and op.inputs[0] is x and x not in op.inputs[1:]
           and op.options == o.GatherOptions(axis=0, batch_dims=0)
           and op.inputs[1].shape == () for op in readers):
        return readers
    return None


@to_fixpoint
def untransposed_sequence(graph: Graph) -> bool:
    """TRANSPOSE(x, [1, 0, …]) (or a RESHAPE that is one) into a loop that GATHERs one step on
    axis 0 → x, GATHERed on axis 1: ``gather(transpose(x), t, axis=0) = gather(x, t, axis=1)``
    for a scalar ``t``."""
    uses = Uses(graph)
    for loop in _loops(graph):
        cond, body = _parts(loop)
        for k, entry in enumerate(loop.inputs):
            transpose = uses.producer_of(entry, OpType.TRANSPOSE, OpType.RESHAPE)
            if not _swaps_first_axes(transpose) or uses.consumers.get(entry) != [loop] \
                    or entry in uses.outputs or body.outputs[k] is not body.inputs[k] \
                    or body.outputs.count(body.inputs[k]) != 1 \
                    or _read(cond, cond.inputs[k]) or _read(graph, loop.outputs[k]):
                continue
            gathers = _step_reads(body, body.inputs[k])
            if gathers is None:
                continue
            x = transpose.inputs[0]
            loop.inputs[k] = x
            for t in (cond.inputs[k], body.inputs[k], loop.outputs[k]):
                t.shape = x.shape
            for op in gathers:
                op.options = o.GatherOptions(axis=1, batch_dims=0)
            graph.remove_dead_ops()
            return True
    return False


# --- the condition ----------------------------------------------------------------------------
def _bound(uses: Uses, t: Tensor) -> tuple[Tensor, np.ndarray] | None:
    """``t = x < c`` with a scalar constant ``c``: (x, c)."""
    op = uses.producer_of(t, OpType.LESS)
    if op is None or op.inputs[0].is_const or not op.inputs[1].is_const \
            or op.inputs[1].data.size != 1:
        return None
    return op.inputs[0], op.inputs[1].data


@to_fixpoint
def conjunction_of_bounds(graph: Graph) -> bool:
    """``p and p`` → ``p``; ``(x < a) and (x < b)`` → ``x < min(a, b)``."""
    uses = Uses(graph)
    for op in graph.ops:
        if op.type != OpType.LOGICAL_AND or len(op.inputs) != 2:
            continue
        p, q = op.inputs
        if p is q and p not in graph.inputs:
            graph.replace_uses(op.outputs[0], p)
            graph.remove_ops([op])
            return True
        a, b = _bound(uses, p), _bound(uses, q)
        if a is None or b is None or a[0] is not b[0] or a[1].dtype != b[1].dtype:
            continue
        op.type, op.options = OpType.LESS, None
        op.inputs = [a[0], const(f"{op.outputs[0].name}/bound", np.minimum(
            a[1].reshape(()), b[1].reshape(())))]
        graph.remove_dead_ops()
        return True
    return False


LOOP_PASSES = (twin_variables, last_output_variable, untransposed_sequence,
               conjunction_of_bounds)
