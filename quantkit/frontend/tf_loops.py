"""Loops and tensor lists: a TF ``While`` over a static trip count is unrolled while lowering.

Keras RNNs (LSTM, GRU, SimpleRNN, Bidirectional) trace to a ``While`` whose body runs the cell
once per time step, reading the sequence from a TensorList (``TensorListFromTensor`` →
``TensorListGetItem``) and writing the outputs to another (``TensorListSetItem`` →
``TensorListStack``). The time dimension of these models is static, so the loop is unrolled:
the condition is evaluated in numpy on the loop counters (constants: lowering folds the body's
``time + 1``), and the body is lowered once per step with its parameters bound to the previous
step's results. A tensor list is a Python tuple of IR tensors (``TensorList``) that exists only
while lowering: reading and writing an element at a constant index moves references, unstacking
is one STRIDED_SLICE per element, stacking one PACK. Nothing here needs a TFLite op of its own,
so every integer scheme that has FULLY_CONNECTED, LOGISTIC, TANH, MUL and ADD runs the result.

Instead of unrolling: a Keras LSTM or SimpleRNN becomes one fused sequence op where the mode
allows (``tf_rnn``), any other loop a WHILE op with subgraphs in the float modes and int8
(``tf_while``: tensor lists are then ``StackedList``s, one tensor each); loops in int16x8 and
uint8, and those a WHILE cannot express, are unrolled.
Unrolling is exact for any cell (GRU's reset-after, peepholes, custom cells), needs nothing of
Keras (SavedModels and concrete functions take the same path), every op of the result has an
int8 and an int16 kernel, and the result is stateless. The price is the op count: about 17 ops
per LSTM step, where TF 2.21 writes a WHILE loop with a body subgraph (and fails on a dynamic
batch).
"""

from __future__ import annotations

import operator
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import function_pb2, types_pb2
from tensorflow.python.framework.function_def_to_graph import function_def_to_graph

from quantkit.frontend.tf_context import TFContext
from quantkit.ir import options as o
from quantkit.ir.graph import Tensor, loop_step_scope
from quantkit.types import OpType

LOOPS = {"While", "StatelessWhile"}
MAX_STEPS = 4096  # a loop that runs longer is not a static sequence


@dataclass(frozen=True)
class TensorList:
    """A TF TensorList while lowering: its elements (None: not yet written).

    ``source``: the tensor it was unstacked from (``TensorListFromTensor``); ``stacked``: the
    tensor stacking it gives, where an op computed the whole sequence at once (a fused RNN,
    ``tf_rnn``): its elements are then sliced from it when read.
    """

    items: tuple[Tensor | None, ...]
    source: Tensor | None = None
    stacked: Tensor | None = None
    element: tuple[int | None, ...] | None = None  # a reserved list's item shape, if known
    dtype: np.dtype | None = None  # a reserved list's item type


@dataclass(frozen=True)
class StackedList:
    """A TF TensorList as one tensor ``[length, *item]``: a loop variable of a loop written as
    a WHILE (``tf_while``), whose items are read and written at run-time indices."""

    tensor: Tensor


def _list(ctx: TFContext, index: int) -> TensorList | StackedList:
    value = ctx.tensors[ctx.node.inputs[index].name]
    if not isinstance(value, (TensorList, StackedList)):
        raise ctx.error(f"{ctx.describe_input(index)} is not a tensor list quantkit tracked")
    return value


def _index(ctx: TFContext, index: int, length: int) -> int:
    tensor = ctx.input(index)
    if not tensor.is_const:
        raise ctx.error("a tensor list index that is not constant (a loop whose trip count "
                        "is not static)")
    i = int(np.reshape(tensor.data, -1)[0])
    if not -length <= i < length:
        raise ctx.error(f"index {i} out of a tensor list of {length}")
    return i % length


# --- slicing helpers (STRIDED_SLICE, which every scheme has) ------------------------------------
def slice_axis(ctx: TFContext, x: Tensor, axis: int, start: int, stop: int | None,
               suffix: str, shrink: bool = False, stride: int = 1) -> Tensor:
    """``x[..., start:stop:stride, ...]`` on ``axis`` (``shrink``: that axis dropped)."""
    rank = len(x.shape)
    begin, end, strides = [0] * rank, [0] * rank, [1] * rank
    begin[axis], end[axis], strides[axis] = start, 0 if stop is None else stop, stride
    others = sum(1 << i for i in range(rank) if i != axis)
    end_mask = others | (1 << axis if stop is None else 0)
    shape = list(x.shape)
    if shrink:
        shape.pop(axis)
    elif x.shape[axis] is not None:
        shape[axis] = len(range(*slice(start, stop, stride).indices(x.shape[axis])))
    out = ctx.new_tensor(suffix, x.dtype, shape)
    return ctx.emit(OpType.STRIDED_SLICE, [
        x, ctx.constant(f"{suffix}/begin", begin, np.int32),
        ctx.constant(f"{suffix}/end", end, np.int32),
        ctx.constant(f"{suffix}/strides", strides, np.int32)],
        o.StridedSliceOptions(begin_mask=others, end_mask=end_mask,
                              shrink_axis_mask=(1 << axis) if shrink else 0), out=out)


def _static_dim(ctx: TFContext, x: Tensor, axis: int) -> int:
    if x.shape is None or x.shape[axis] is None:
        raise ctx.error(f"dim {axis} of {x.name!r} must be static (shape {x.shape})")
    return int(x.shape[axis])


def unstacked(ctx: TFContext, x: Tensor, axis: int = 0) -> list[Tensor]:
    """``x`` split into its slices along ``axis`` (that axis dropped)."""
    n = _static_dim(ctx, x, axis)
    return [slice_axis(ctx, x, axis, i, i + 1, f"item_{i}", shrink=True) for i in range(n)]


# --- lowering rows ----------------------------------------------------------------------------
def tensor_list_reserve(ctx: TFContext) -> None:
    n = int(np.reshape(ctx.const_input(1), -1)[0])
    if n < 0:
        raise ctx.error("a tensor list of unknown length")
    shape = ctx.input(0)
    element = None
    if shape.is_const and np.ndim(shape.data) == 1:
        element = tuple(None if d < 0 else int(d) for d in shape.data)
    dtype = np.dtype(ctx.node.get_attr("element_dtype").as_numpy_dtype)
    ctx.alias(TensorList((None,) * n, element=element, dtype=dtype))


def tensor_list_from_tensor(ctx: TFContext) -> None:
    x = ctx.input(0)
    ctx.alias(TensorList(tuple(unstacked(ctx, x)), source=x))


def tensor_list_get_item(ctx: TFContext) -> None:
    tensors = _list(ctx, 0)
    if isinstance(tensors, StackedList):  # at a run-time index: GATHER
        x = tensors.tensor
        ctx.emit(OpType.GATHER, [x, ctx.input(1)], o.GatherOptions(0), shape=x.shape[1:])
        return
    i = _index(ctx, 1, len(tensors.items))
    item = tensors.items[i]
    if item is None and tensors.stacked is not None:
        item = slice_axis(ctx, tensors.stacked, 0, i, i + 1, f"item_{i}", shrink=True)
    if item is None:
        raise ctx.error("reads a tensor list element that was never written")
    ctx.alias(item)


def _set_stacked(ctx: TFContext, tensors: StackedList) -> None:
    """Item ``i`` of a stacked list replaced: the whole tensor when it has one item (RESHAPE),
    else DYNAMIC_UPDATE_SLICE at ``[i, 0, ...]`` (``i·[1, 0, ...]``: one MUL)."""
    x, item, index = tensors.tensor, ctx.input(2), ctx.input(1)
    if item.shape is None or list(item.shape).count(None) > 1:
        raise ctx.error(f"an item of shape {item.shape}: RESHAPE takes one dynamic dim")
    shape = (1, *item.shape)
    row = ctx.emit(OpType.RESHAPE, [item, ctx.constant("item_shape", [
        -1 if d is None else d for d in shape], np.int32)], out=ctx.new_tensor(
        "item", item.dtype, shape))
    if x.shape[0] == 1:
        ctx.alias(StackedList(row))
        return
    unit = np.zeros(len(x.shape), np.int32)
    unit[0] = 1
    start = ctx.emit(OpType.MUL, [ctx.constant("unit", unit), index], o.MulOptions(),
                     out=ctx.new_tensor("start", np.int32, unit.shape))
    ctx.alias(StackedList(ctx.emit(OpType.DYNAMIC_UPDATE_SLICE, [x, row, start],
                                   out=ctx.new_tensor("list", x.dtype, x.shape))))


def tensor_list_set_item(ctx: TFContext) -> None:
    tensors = _list(ctx, 0)
    if isinstance(tensors, StackedList):
        _set_stacked(ctx, tensors)
        return
    items = list(tensors.items)
    items[_index(ctx, 1, len(items))] = ctx.input(2)
    ctx.alias(TensorList(tuple(items)))


def tensor_list_stack(ctx: TFContext) -> None:
    tensors = _list(ctx, 0)
    if isinstance(tensors, StackedList):
        ctx.alias(tensors.tensor)
        return
    if tensors.stacked is not None:
        ctx.alias(tensors.stacked)
        return
    items = tensors.items
    if not items or any(t is None for t in items):
        raise ctx.error("stacks a tensor list with unwritten elements")
    ctx.emit(OpType.PACK, list(items), o.PackOptions(len(items), 0))


def tensor_list_length(ctx: TFContext) -> None:
    tensors = _list(ctx, 0)
    n = tensors.tensor.shape[0] if isinstance(tensors, StackedList) else len(tensors.items)
    ctx.alias(ctx.constant("length", n, np.int32))


# Readers a batch-1 constant can stand in for a dynamic-batch fill for (see ``fill``).
_BROADCASTING_READERS = {"While", "StatelessWhile", "Identity", "AddV2", "Add", "Sub", "Mul",
                         "MatMul"}


def constant_fill(ctx: TFContext) -> bool:
    """``Fill(dims, value)`` as a constant where it can be one (else False: a FILL op): static
    dims, or dynamic ones (the batch of an RNN's zero initial state) read only where a batch
    of 1 broadcasts the same (elementwise ops, matmul rows, a loop's initial state)."""
    value = ctx.const_input(1)
    dims = ctx.input(0)
    if dims.is_const:
        shape = [int(d) for d in np.reshape(dims.data, -1)]
    else:
        out = ctx.output_tensor().shape
        readers = {op.type for op in ctx.node.outputs[0].consumers()}
        if out is None or not readers <= _BROADCASTING_READERS:
            return False
        shape = [1 if d is None else d for d in out]
    ctx.alias(ctx.constant("filled", np.full(shape, value, value.dtype)))
    return True


def reverse(ctx: TFContext) -> None:
    """ReverseV2 as a STRIDED_SLICE with stride −1 along each reversed axis."""
    x = ctx.input(0)
    rank = len(x.shape)
    for k, axis in enumerate(int(a) % rank for a in np.reshape(ctx.const_input(1), -1)):
        x = slice_axis(ctx, x, axis, -1, None, f"reversed_{k}", stride=-1)
    ctx.alias(x)


def unpack(ctx: TFContext) -> None:
    """Unpack → UNPACK (folded when constant); a tensor list's unstacking (inside the loop
    machinery) slices instead (``unstacked``)."""
    x = ctx.input(0)
    axis = int(ctx.attr("axis")) % len(x.shape)
    ctx.emit(OpType.UNPACK, [x], o.UnpackOptions(len(ctx.node.outputs), axis),
             results=len(ctx.node.outputs))


# Tensor lists exist only around a While (their values are Python tuples while lowering): they
# are part of the loop machinery ``lower`` runs, tested with the RNNs (tests/test_rnn.py).
TENSOR_LISTS: dict[str, Callable[[TFContext], None]] = {
    "TensorListReserve": tensor_list_reserve,
    "TensorListFromTensor": tensor_list_from_tensor,
    "TensorListGetItem": tensor_list_get_item,
    "TensorListSetItem": tensor_list_set_item,
    "TensorListStack": tensor_list_stack,
    "TensorListLength": tensor_list_length,
}

# Rows of the lowering table (``tf_ops.LOWERINGS``), each with its case in tests/test_ops.py.
LOWERINGS: dict[str, Callable[[TFContext], None]] = {
    "ReverseV2": reverse,
    "Unpack": unpack,
}


# --- the loop ---------------------------------------------------------------------------------
# What a loop condition computes on its counters, in numpy.
_CONDITION_OPS: dict[str, Callable[..., Any]] = {
    "Less": operator.lt, "LessEqual": operator.le, "Greater": operator.gt,
    "GreaterEqual": operator.ge, "Equal": operator.eq, "NotEqual": operator.ne,
    "LogicalAnd": np.logical_and, "LogicalOr": np.logical_or, "LogicalNot": np.logical_not,
    "AddV2": operator.add, "Add": operator.add, "Sub": operator.sub,
    "Identity": lambda x: x, "Cast": lambda x: x,
}


def loop_condition(ctx: TFContext, cond: Any, values: list) -> bool:
    """The loop condition on this step's loop variables; an error unless it is constant."""
    known: dict[str, Any] = {}
    for param, value in zip(cond.inputs, values):
        if isinstance(value, Tensor) and value.is_const:
            known[param.name] = value.data
    for node in cond.get_operations():
        if node.type == "Const":
            known[node.outputs[0].name] = tf.make_ndarray(node.get_attr("value"))
        elif node.type in _CONDITION_OPS and all(t.name in known for t in node.inputs):
            args = [known[t.name] for t in node.inputs]
            known[node.outputs[0].name] = _CONDITION_OPS[node.type](*args)
    result = known.get(cond.outputs[0].name)
    if result is None:
        raise ctx.error("a loop whose condition is not constant on each step (its trip count "
                        "is not static); quantkit unrolls loops over a static sequence length")
    return bool(np.reshape(result, -1)[0])


def function_graph(ctx: TFContext, key: str, name: str, values: list) -> Any:
    """The graph of library function ``name`` called on ``values`` (IR tensors, tensor lists):
    the variables it reads become constants and its other inputs are shaped as the values.

    A function reads its weights through resource arguments, so as the library holds it TF
    knows no shape past the first matmul (an LSTM cell's Split then could not be lowered);
    with the reads turned into constants TF infers every shape. Built once per ``key`` and
    distinct set of input shapes.
    """
    library = ctx.library._get_function(name).definition
    args = library.signature.input_arg
    shapes = [tf.TensorShape(v.shape) if arg.type != types_pb2.DT_RESOURCE
              and isinstance(v, Tensor) and v.shape is not None else None
              for arg, v in zip(args, values)]
    cache_key = (key, tuple(None if s is None else tuple(s.as_list()) for s in shapes))
    if cache_key not in ctx.bodies:
        fdef = function_pb2.FunctionDef()
        fdef.CopyFrom(library)
        constants = {arg.name: v.data for arg, v in zip(args, values)
                     if arg.type == types_pb2.DT_RESOURCE and isinstance(v, Tensor)
                     and v.is_const}
        _reads_as_constants(fdef, constants)
        ctx.bodies[cache_key] = function_def_to_graph(fdef, input_shapes=shapes)
    return ctx.bodies[cache_key]


# Marks a Const that stands for a variable read: lowering binds it to the argument's IR
# constant itself (one tensor per variable, named after it), not to a copy.
VARIABLE_ATTR = "_quantkit_variable"


def variable_read(node: Any) -> str | None:
    """The tensor name of the argument a Const made by ``function_graph`` reads, else None."""
    attr = node.node_def.attr.get(VARIABLE_ATTR)
    return None if attr is None else f"{attr.s.decode()}:0"


def _reads_as_constants(fdef: Any, constants: dict) -> None:
    """Each ReadVariableOp of a resource argument in ``constants`` becomes a Const node."""
    renamed = {}  # a read's result is ``name:value:0``, a constant's ``name:output:0``
    for node in fdef.node_def:
        if node.op == "ReadVariableOp" and node.input and node.input[0] in constants:
            arg = node.input[0]
            value = constants[arg]
            node.op = "Const"
            del node.input[:]
            node.attr.clear()
            node.attr["dtype"].type = tf.as_dtype(value.dtype).as_datatype_enum
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(value))
            node.attr[VARIABLE_ATTR].s = arg.encode()
            renamed[f"{node.name}:value:"] = f"{node.name}:output:"

    def rename(name: str) -> str:
        head = name[:name.rfind(":") + 1]
        return renamed[head] + name[len(head):] if head in renamed else name

    for node in fdef.node_def:
        node.input[:] = [rename(name) for name in node.input]
    for key in list(fdef.ret):
        fdef.ret[key] = rename(fdef.ret[key])


def lower_while(ctx: TFContext, cond: Any, lower_nodes: Callable[[TFContext, list], None]) -> None:
    """Unroll the While node ``ctx.node``: its body lowered once per step (``step_k`` scopes).

    Args:
      cond: the graph of the loop's condition.
      lower_nodes: lowers a graph's nodes into a builder (``lower._lower_nodes``).
    """
    node = ctx.node
    values = [ctx.tensors[t.name] for t in node.inputs]
    for step in range(MAX_STEPS + 1):
        if not loop_condition(ctx, cond, values):
            break
        if step == MAX_STEPS:
            raise ctx.error(f"a loop of more than {MAX_STEPS} steps")
        body = function_graph(ctx, f"{ctx.name}/body", node.get_attr("body").name, values)
        inner = ctx.scope(loop_step_scope(node.name, step))
        for param, value in zip(body.inputs, values):
            inner.tensors[param.name] = value
        lower_nodes(inner, body.get_operations())
        values = [inner.tensors[t.name] for t in body.outputs]
    for out, value in zip(node.outputs, values):
        ctx.tensors[out.name] = value
