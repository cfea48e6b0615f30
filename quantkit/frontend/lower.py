"""Lowering: a frozen TF graph → quantkit IR, one TF op at a time through ``tf_ops.LOWERINGS``.

Ops whose inputs are all constant are folded as they are emitted (``fold_constants.try_fold``),
so handlers can read weights that TF computes from variables (Keras 3 reshapes its biases,
BatchNorm computes ``gamma·rsqrt(var + eps)``) as plain arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from quantkit.frontend.capture import Captured
from quantkit.ir.graph import Graph, Op, Tensor, const
from quantkit.passes.fold_constants import try_fold
from quantkit.types import ConversionError, OpType, Phase

# TF ops that only pass a value through (or order execution): no TFLite op at all.
PASS_THROUGH = {"Identity", "IdentityN", "StopGradient", "Snapshot", "PreventGradient",
                "EnsureShape", "CheckNumerics"}
IGNORED = {"NoOp", "Placeholder", "Const", "Assert"}


class LoweringContext:
    """What a lowering handler sees: TF tensors mapped to IR tensors, and an op sink."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.tensors: dict[str, Tensor] = {}
        self.node: Any = None  # the tf.Operation being lowered, for names and errors

    # --- reading TF inputs ----------------------------------------------------------------
    def input(self, index: int) -> Tensor:
        return self.tensors[self.node.inputs[index].name]

    def inputs(self) -> list[Tensor]:
        return [self.tensors[t.name] for t in self.node.inputs]

    def const_input(self, index: int) -> np.ndarray:
        """The value of a constant input (weights, axes, paddings); an error if it is dynamic."""
        tensor = self.input(index)
        if tensor.data is None:
            raise ConversionError(
                Phase.LOWERING, f"op {self.node.name!r} ({self.node.type}): input {index} "
                f"({self.node.inputs[index].name}) must be constant for the TFLite builtin")
        return tensor.data

    def attr(self, name: str) -> Any:
        value = self.node.get_attr(name)
        return value.decode() if isinstance(value, bytes) else value

    # --- producing IR ----------------------------------------------------------------------
    def output_tensor(self, index: int = 0) -> Tensor:
        """The IR tensor for the node's TF output ``index``, typed and shaped by TF."""
        tf_out = self.node.outputs[index]
        shape = None if tf_out.shape.rank is None else tuple(tf_out.shape.as_list())
        name = self.node.name if index == 0 else f"{self.node.name}:{index}"
        return Tensor(name, np.dtype(tf_out.dtype.as_numpy_dtype), shape)

    def new_tensor(self, suffix: str, like: Tensor, shape: Any = "same") -> Tensor:
        shape = like.shape if shape == "same" else shape
        return Tensor(f"{self.node.name}/{suffix}", like.dtype, shape)

    def constant(self, suffix: str, value: Any, dtype: Any = None) -> Tensor:
        return const(f"{self.node.name}/{suffix}", value, dtype)

    def emit(self, op_type: OpType, inputs: list[Tensor | None], options: Any = None,
             outputs: list[Tensor] | None = None, out_index: int | None = 0) -> Tensor:
        """Add an op (folded away when its inputs are constant); map its output to TF's.

        Args:
          out_index: which TF output of the node this op's first output stands for; None for
            an intermediate op whose output the handler wires on itself.
        """
        if outputs is None:
            outputs = [self.output_tensor(out_index or 0)]
        op = Op(op_type, list(inputs), outputs, options, name=self.node.name)
        if not try_fold(op):
            self.graph.ops.append(op)
        if out_index is not None:
            for i, t in enumerate(op.outputs):
                self.tensors[self.node.outputs[out_index + i].name] = t
        return op.outputs[0]

    def alias(self, tensor: Tensor, index: int = 0) -> None:
        """The node's output ``index`` is ``tensor`` itself (pass-through ops)."""
        self.tensors[self.node.outputs[index].name] = tensor


def lower(captured: Captured, *, allow_custom_ops: bool = False) -> Graph:
    """Lower one frozen signature to an IR graph.

    Raises:
      ConversionError: (lowering) listing every TF op that has no TFLite builtin, unless
        ``allow_custom_ops``, in which case those become custom ops named by their TF type.
    """
    from quantkit.frontend.tf_ops import LOWERINGS, lower_custom

    frozen = captured.frozen
    graph = Graph(input_names=list(captured.input_names), output_names=list(captured.output_names),
                  signature_key=captured.signature_key)
    ctx = LoweringContext(graph)
    placeholders = {t.name for t in frozen.inputs}
    for name, tf_in in zip(captured.input_names, frozen.inputs):
        shape = None if tf_in.shape.rank is None else tuple(tf_in.shape.as_list())
        tensor = Tensor(name, np.dtype(tf_in.dtype.as_numpy_dtype), shape)
        ctx.tensors[tf_in.name] = tensor
        graph.inputs.append(tensor)

    nodes = frozen.graph.get_operations()
    unsupported = [n for n in nodes if n.type not in LOWERINGS and n.type not in PASS_THROUGH
                   and n.type not in IGNORED]
    if unsupported and not allow_custom_ops:
        listed = "\n".join(f"  {n.type} (node {n.name!r})" for n in unsupported)
        raise ConversionError(
            Phase.LOWERING, f"{len(unsupported)} TF op(s) have no TFLite builtin in quantkit:\n"
            f"{listed}\nSet `allow_custom_ops=True` to emit them as custom ops (your runtime "
            f"must then provide them). Supported TF ops: {', '.join(sorted(LOWERINGS))}")
    for node in nodes:
        ctx.node = node
        if node.type == "Const":
            value = tf.make_ndarray(node.get_attr("value"))
            ctx.tensors[node.outputs[0].name] = const(node.name, value)
        elif node.type == "Placeholder":
            if node.outputs[0].name not in placeholders:
                raise ConversionError(Phase.LOWERING, f"placeholder {node.name!r} is not an input")
        elif node.type in PASS_THROUGH:
            for i in range(len(node.outputs)):
                ctx.alias(ctx.input(i), i)
        elif node.type in IGNORED:
            continue
        elif node.type in LOWERINGS:
            _lower_node(ctx, node, LOWERINGS[node.type])
        else:
            lower_custom(ctx)
    graph.outputs = [ctx.tensors[t.name] for t in frozen.outputs]
    graph.remove_dead_ops()
    return graph


def _lower_node(ctx: LoweringContext, node: Any, handler: Any) -> None:
    try:
        handler(ctx)
    except ConversionError:
        raise
    except Exception as e:  # a handler's own bug or an unexpected attr: name the node
        raise ConversionError(Phase.LOWERING, f"op {node.name!r} ({node.type}): "
                              f"{type(e).__name__}: {e}") from e
