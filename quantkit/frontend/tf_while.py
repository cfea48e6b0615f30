"""A TF ``While`` as a TFLite WHILE op: its condition and body lowered into subgraphs of their own.

Where activations stay float (``converter.FUSED_RNNS`` holds ``FusedCell.LOOP``), a loop that
``tf_rnn`` does not fuse (a Keras GRU's, a custom cell's) is kept as a loop instead of unrolled:
the WHILE op takes the loop variables, its ``WhileOptions`` reference the condition graph (the
variables → a bool) and the body graph (the variables → their next values), both lowered by the
same lowering table as the main graph. The result has the ops of one step, not of every step
(a GRU: 28 ops, as TF's, where unrolling writes 248).

What becomes of the loop variables:

* a constant that the body passes through unchanged (TF's ``maximum_iterations``, a bound) is
  no loop variable at all: both graphs read the constant, so the condition folds what it can;
* a tensor list is one tensor ``[length, *item]``: the sequence a ``TensorListFromTensor``
  unstacks is the tensor itself; a ``TensorListReserve`` is zeros; inside the body an item
  read at the loop counter is a GATHER, an item written at it a DYNAMIC_UPDATE_SLICE (a list of
  one item, which a Keras RNN that returns its last output only writes, is replaced whole: a
  RESHAPE); after the loop, stacking it is the tensor (``tf_loops.StackedList``);
* any other tensor is a variable as it is.

A dynamic batch: a constant entry value (a zero initial state: ``tf_loops.constant_fill``) has
batch 1, and LiteRT's WHILE resizes the body's inputs when a step's outputs differ in shape, so
the first step broadcasts it to the input's batch. A reserved list of more than one item (the
outputs of an RNN that returns sequences) cannot grow that way, as DYNAMIC_UPDATE_SLICE writes
into it: its zeros are a FILL whose dynamic item dims are read at run time (SHAPE) from the
sequence the loop unstacks, whose items have them at the same places (``_fill_source``); with
no such sequence the loop is unrolled (``NotAsWhile``).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from quantkit.frontend import tf_loops
from quantkit.frontend.tf_context import TFContext
from quantkit.frontend.tf_loops import StackedList, TensorList
from quantkit.ir import options as o
from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.types import ConversionError, OpType


class NotAsWhile(Exception):
    """The loop cannot be written as a WHILE (``lower_as_while`` unrolls it instead)."""


def _pass_through(body: Any, index: int) -> bool:
    """Whether the body returns its input ``index`` unchanged (through Identity ops)."""
    tensor = body.outputs[index]
    while tensor.op.type in ("Identity", "IdentityN") and tensor.op.inputs:
        tensor = tensor.op.inputs[tensor.value_index if tensor.op.type == "IdentityN" else 0]
    return tensor is body.inputs[index]


def _fill_source(values: list, item: tuple) -> Tensor | None:
    """An unstacked sequence among the loop's ``values`` whose items are dynamic exactly where
    ``item`` (a reserved list's item shape) is: the run-time dims of that list's zeros."""
    for value in values:
        source = value.source if isinstance(value, TensorList) else None
        if source is not None and source.shape is not None and len(source.shape) == \
                len(item) + 1 and [d is None for d in source.shape[1:]] == \
                [d is None for d in item]:
            return source
    return None


def _entry_shape(value: Tensor | TensorList) -> tuple:
    """The shape of a loop variable inside the loop: its entry value's (a tensor list:
    ``[length, *item]``), where a constant's dims of 1 are dynamic (a zero state stands for
    any batch with batch 1: ``tf_loops.constant_fill``)."""
    if isinstance(value, Tensor):
        if value.is_const and value.shape is not None:
            return tuple(None if d == 1 else d for d in value.shape)
        return value.shape
    if value.source is not None:
        return value.source.shape
    if value.element is None or value.dtype is None:
        raise NotAsWhile("a tensor list of unknown item shape")
    return (len(value.items), *value.element)


def _subgraph(ctx: TFContext, name: str, tf_graph: Any, params: list[Tensor | None],
              bound: list, lower_nodes: Callable) -> tuple[Graph, TFContext]:
    """``tf_graph`` lowered into a new graph whose inputs are ``params`` (None: that variable
    is a constant, ``bound[i]``)."""
    graph = Graph(name=name, signature_key="")
    inner = TFContext(graph, ctx.library, f"{name}/", ctx.bodies, ctx.fused_rnns)
    for tf_param, param, value in zip(tf_graph.inputs, params, bound):
        if param is None:
            inner.tensors[tf_param.name] = value
        elif isinstance(value, TensorList):
            inner.tensors[tf_param.name] = StackedList(param)
        else:
            inner.tensors[tf_param.name] = param
    graph.inputs = [p for p in params if p is not None]
    lower_nodes(inner, tf_graph.get_operations())
    return graph, inner


def _result(value: Any, what: str) -> Tensor:
    if isinstance(value, StackedList):
        return value.tensor
    if not isinstance(value, Tensor):
        raise NotAsWhile(f"{what} is a {type(value).__name__}")
    return value


def lower_as_while(ctx: TFContext, lower_nodes: Callable[[TFContext, list], None]) -> bool:
    """Lower the While ``ctx.node`` to a WHILE op with condition and body subgraphs; False
    (nothing emitted in ``ctx``'s graph) when it cannot be (``NotAsWhile``)."""
    node = ctx.node
    values = [ctx.tensors[t.name] for t in node.inputs]
    body_tf = tf_loops.function_graph(ctx, f"{ctx.name}/while_body",
                                      node.get_attr("body").name, values)
    cond_tf = tf_loops.function_graph(ctx, f"{ctx.name}/while_cond",
                                      node.get_attr("cond").name, values)
    invariant = [isinstance(v, Tensor) and v.is_const and _pass_through(body_tf, i)
                 for i, v in enumerate(values)]
    try:
        if any(not isinstance(v, (Tensor, TensorList)) for v in values):
            raise NotAsWhile("a loop variable quantkit does not track")
        shapes = [None if fixed else _entry_shape(v) for fixed, v in zip(invariant, values)]
        for v in values:
            if isinstance(v, TensorList) and v.source is None and len(v.items) > 1 \
                    and None in v.element and _fill_source(values, v.element) is None:
                raise NotAsWhile("a list of several items with a dynamic dim that no "
                                 "unstacked sequence gives at run time")
        graphs = []
        for part, tf_graph in (("cond", cond_tf), ("body", body_tf)):
            params = [None if fixed else Tensor(
                f"{ctx.name}/{part}/arg{i}", np.dtype(_dtype(v)),
                None if shape is None else tuple(shape))
                for i, (fixed, shape, v) in enumerate(zip(invariant, shapes, values))]
            graph, inner = _subgraph(ctx, f"{ctx.name}/{part}", tf_graph, params, values,
                                     lower_nodes)
            results = [inner.tensors[t.name] for t in tf_graph.outputs]
            if part == "cond":
                graph.outputs = [_result(results[0], "the condition")]
            else:
                graph.outputs = [_result(r, f"loop variable {i}") for i, r in
                                 enumerate(results) if not invariant[i]]
            graph.remove_dead_ops()
            graphs.append(graph)
    except (NotAsWhile, ConversionError):
        return False
    cond, body = graphs
    entries = [_entry(ctx, i, v, values) for i, v in enumerate(values) if not invariant[i]]
    outputs = [Tensor(f"{ctx.name}/{k}" if k else ctx.name, t.dtype, t.shape)
               for k, t in enumerate(body.inputs)]
    op = Op(OpType.WHILE, entries, outputs, o.WhileOptions(cond, body), name=ctx.name)
    ctx.graph.ops.append(op)
    ctx.producers.update(dict.fromkeys(outputs, op))
    op_outputs = iter(outputs)
    for out, value, fixed in zip(node.outputs, values, invariant):
        if fixed:
            ctx.tensors[out.name] = value
        else:
            result = next(op_outputs)
            ctx.tensors[out.name] = StackedList(result) if isinstance(value, TensorList) \
                else result
    return True


def _dtype(value: Tensor | TensorList) -> Any:
    if isinstance(value, Tensor):
        return value.dtype
    return value.source.dtype if value.source is not None else value.dtype


def _entry(ctx: TFContext, index: int, value: Tensor | TensorList, values: list) -> Tensor:
    """The WHILE's input for a loop variable: a tensor list as one tensor (a reserved one:
    zeros, with the run-time dims of ``_fill_source`` where it has more than one item)."""
    if isinstance(value, Tensor):
        return value
    if value.source is not None:
        return value.source
    shape = _entry_shape(value)
    if len(value.items) == 1 or None not in shape:
        return ctx.constant(f"list_{index}", np.zeros([1 if d is None else d for d in shape],
                                                      value.dtype))
    source = _fill_source(values, value.element)
    dims = ctx.emit(OpType.SHAPE, [source], o.ShapeOptions(),
                    out=ctx.new_tensor(f"list_{index}/source_shape", np.int32,
                                       [len(source.shape)]))
    pieces = []
    for k, d in enumerate(shape):  # item dim k - 1 is the source's dim k
        pieces.append(ctx.constant(f"list_{index}/dim_{k}", [d], np.int32) if d is not None
                      else tf_loops.slice_axis(ctx, dims, 0, k, k + 1, f"list_{index}/dim_{k}"))
    dims = ctx.emit(OpType.CONCATENATION, pieces, o.ConcatenationOptions(0),
                    out=ctx.new_tensor(f"list_{index}/dims", np.int32, [len(shape)]))
    return ctx.emit(OpType.FILL, [dims, ctx.constant(f"list_{index}/zero", np.zeros(
        (), value.dtype))], out=ctx.new_tensor(f"list_{index}", value.dtype, shape))
