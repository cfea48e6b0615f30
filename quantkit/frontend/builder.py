"""The graph builder both frontends lower through: the API a lowering row is written against.

A lowering handler (a row of ``tf_ops.LOWERINGS`` or ``stablehlo_ops.LOWERINGS``) reads the
current source op's inputs and attributes and emits TFLite-level IR ops. What it reads differs
by frontend (a ``tf.Operation``, an MLIR operation), so each frontend subclasses ``GraphBuilder``
(``tf_context.TFContext``, ``stablehlo_context.StableHLOContext``) with its ``name``,
``op_type``, ``input``, ``attr`` and the result tensors of the current op; what a handler
writes (``emit``, ``new_tensor``, ``constant``, ``error``, ``scope``) is here, once, so a row
reads the same in both tables.

Emitted ops whose inputs are all constant are folded on the spot (``fold_constants.try_fold``),
so handlers can read weights that the source computes from variables as plain arrays; so are
slices of a dynamic-batch tensor's shape that read only its static dims (a causal mask's size).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor, const
from quantkit.passes.fold_constants import fold_static_dims, try_fold
from quantkit.types import ConversionError, OpType, Phase


class GraphBuilder:
    """An op sink into ``graph`` for the source op being lowered, within a name scope.

    Subclasses say what the current source op is (``name``, ``op_type``), read its inputs
    (``input``, ``attr``), make the IR tensors of its results (``result_tensors``) and record
    which IR tensors stand for them (``bind_results``).
    """

    def __init__(self, graph: Graph, prefix: str = "", producers: dict[Tensor, Op] | None = None):
        self.graph = graph
        self.prefix = prefix  # "call/" inside an inlined function body: names stay apart
        self.producers = {} if producers is None else producers  # IR tensor → the op emitting it

    # --- what the subclass tells ----------------------------------------------------------
    @property
    def name(self) -> str:
        """The current source op's name, as the IR ops and tensors it yields carry it."""
        raise NotImplementedError

    @property
    def op_type(self) -> str:
        """The current source op's type (``Conv2D``, ``stablehlo.convolution``)."""
        raise NotImplementedError

    def input(self, index: int) -> Tensor:
        """The IR tensor of the current op's input ``index``."""
        raise NotImplementedError

    def describe_input(self, index: int) -> str:
        """Input ``index`` as an error message names it."""
        return f"input {index}"

    def result_tensors(self, count: int, shape: Any = None) -> list[Tensor]:
        """New IR tensors for the current op's first ``count`` results (``shape`` overrides
        the first's)."""
        raise NotImplementedError

    def bind_results(self, tensors: list[Tensor]) -> None:
        """``tensors`` stand for the current op's results from now on."""
        raise NotImplementedError

    def scope(self, name: str) -> "GraphBuilder":
        """A builder into the same graph whose names are prefixed ``<prefix><name>/``."""
        raise NotImplementedError

    # --- reading ---------------------------------------------------------------------------
    def const_input(self, index: int) -> np.ndarray:
        """The value of a constant input (weights, axes, paddings); an error if it is dynamic."""
        tensor = self.input(index)
        if tensor.data is None:
            raise self.error(f"{self.describe_input(index)} must be constant for the TFLite "
                             "builtin")
        return tensor.data

    def producer(self, tensor: Tensor, *types: OpType) -> Op | None:
        """The op this builder emitted ``tensor`` from (of one of ``types``, if given)."""
        op = self.producers.get(tensor)
        return op if op is not None and (not types or op.type in types) else None

    def error(self, message: str) -> ConversionError:
        return ConversionError(Phase.LOWERING, f"op {self.name!r} ({self.op_type}): {message}")

    # --- writing ---------------------------------------------------------------------------
    def new_tensor(self, suffix: str, dtype: Any, shape: Any) -> Tensor:
        """An intermediate tensor named after the current op (``shape`` None: rank unknown)."""
        return Tensor(f"{self.name}/{suffix}", np.dtype(dtype),
                      None if shape is None else tuple(shape))

    def constant(self, suffix: str, value: Any, dtype: Any = None) -> Tensor:
        return const(f"{self.name}/{suffix}", value, dtype)

    def emit(self, op_type: OpType, inputs: list[Tensor | None], options: Any = None,
             out: Tensor | None = None, shape: Any = None, results: int = 1,
             custom_code: str | None = None) -> Tensor:
        """Add an op (folded away when its inputs are constant); its first output.

        With no ``out`` the op stands for the current source op: its outputs are that op's
        first ``results`` results (``shape`` overrides a broadcast result's shape). With
        ``out`` it is an intermediate the handler wires on itself.
        """
        final = out is None
        outputs = self.result_tensors(results, shape) if final else [out]
        op = Op(op_type, list(inputs), outputs, options, name=self.name,
                custom_code=custom_code)
        if not try_fold(op) and not fold_static_dims(op, self.producers):
            self.graph.ops.append(op)
            for tensor in outputs:
                self.producers[tensor] = op
        if final:
            self.bind_results(op.outputs)
        return op.outputs[0]


def zero_bias(ctx: GraphBuilder, channels: int, dtype: np.dtype) -> Tensor:
    """A zero bias for a conv or fully connected op that has none."""
    return ctx.constant("bias", np.zeros([channels], dtype))
