"""The JAX frontend's builder: what a ``stablehlo_ops`` lowering row sees of the MLIR op it
lowers.

Broadcasts stay implicit (see ``jax_capture``): the IR tensor of a value is one that
broadcasts to its StableHLO type, maybe of lower rank. Elementwise rows read it as it is
(``broadcastable``); rows that need the exact shape read ``input``, which materializes it.

jaxlib is imported inside the functions that read MLIR: JAX is an optional dependency, and
``import quantkit`` must work without it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from quantkit.frontend.builder import GraphBuilder
from quantkit.ir.graph import Graph, Tensor, const
from quantkit.types import ConversionError, OpType, Phase

# StableHLO element types → numpy (bf16 and wider types have no TFLite kernel to lower to).
_DTYPES = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i1": np.bool_,
           "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64, "ui8": np.uint8}


@dataclass(frozen=True)
class Comparison:
    """A ``stablehlo.compare`` result: only ``select`` reads it (``jnp.where`` patterns)."""

    direction: str  # EQ, NE, GE, GT, LE, LT
    lhs: Tensor
    rhs: Tensor


Value = Any  # an MLIR value (jaxlib.mlir.ir.Value)


def tensor_type(value: Value) -> tuple[np.dtype, tuple[int | None, ...]]:
    """(numpy dtype, shape) of an MLIR ranked tensor value; dynamic dims are None."""
    from jaxlib.mlir import ir  # optional dependency (the jax extra)

    t = ir.RankedTensorType(value.type)
    name = str(t.element_type)
    if name not in _DTYPES:
        raise ConversionError(Phase.LOWERING, f"element type {name} is not supported (only "
                              f"{', '.join(_DTYPES)}); cast the model to float32")
    shape = tuple(None if t.is_dynamic_dim(i) else int(d) for i, d in enumerate(t.shape))
    return np.dtype(_DTYPES[name]), shape


def attr_value(attr: Any) -> Any:
    """A typed MLIR attribute as a Python value: arrays as lists or numpy, numbers as such;
    others (dimension numbers) as the attribute itself."""
    from jaxlib.mlir import ir  # optional dependency (the jax extra)

    if isinstance(attr, (ir.DenseI64ArrayAttr, ir.DenseI32ArrayAttr, ir.DenseBoolArrayAttr)):
        return list(attr)
    if isinstance(attr, ir.DenseElementsAttr):
        return np.array(attr)
    if isinstance(attr, (ir.IntegerAttr, ir.FloatAttr, ir.StringAttr, ir.BoolAttr)):
        return attr.value
    return attr


class StableHLOContext(GraphBuilder):
    """MLIR values mapped to IR tensors, for the MLIR operation being lowered (``op``)."""

    def __init__(self, graph: Graph, functions: dict[str, Any], prefix: str = "",
                 producers: dict | None = None):
        super().__init__(graph, prefix, producers)
        self.functions = functions  # the module's functions by symbol name, for calls
        self.values: dict[Value, Tensor | Comparison] = {}
        self.op: Any = None  # the MLIR operation being lowered

    def scope(self, name: str) -> "StableHLOContext":
        return StableHLOContext(self.graph, self.functions, f"{self.prefix}{name}/",
                                self.producers)

    @property
    def name(self) -> str:
        """The current op's name: its JAX name stack (``conv_general_dilated``) when known."""
        try:
            loc = self.op.location.name_str
        except AttributeError:  # an unnamed location
            loc = ""
        loc = re.sub(r"^(jit\([^)]*\)/)+", "", loc)
        if not loc or loc.startswith("jit("):
            loc = self.op.name.split(".")[-1]
        return self.prefix + loc

    @property
    def op_type(self) -> str:
        return self.op.name

    # --- reading operands and attributes --------------------------------------------------
    def attr(self, name: str, default: Any = None) -> Any:
        attrs = self.op.attributes
        return attr_value(attrs[name]) if name in attrs else default

    def raw(self, index: int) -> Tensor | Comparison:
        return self.values[self.op.operands[index]]

    def broadcastable(self, index: int) -> Tensor:
        """Operand ``index`` as it is: a tensor that broadcasts to its StableHLO type
        (elementwise ops read it so)."""
        value = self.raw(index)
        if isinstance(value, Comparison):
            raise self.error("a comparison is supported only as the condition of select "
                             "(jnp.where(x > 0, x, 0), jax.nn.leaky_relu)")
        return value

    def input(self, index: int) -> Tensor:
        """Operand ``index`` with exactly its StableHLO shape (broadcasts materialized)."""
        return self.materialize(self.broadcastable(index), self.op.operands[index])

    def describe_input(self, index: int) -> str:
        return f"operand {index}"

    def materialize(self, tensor: Tensor, value: Value) -> Tensor:
        _, shape = tensor_type(value)
        if tensor.shape == shape:
            return tensor
        if tensor.is_const:
            return const(f"{tensor.name}/broadcast", np.broadcast_to(tensor.data, shape))
        if len(tensor.shape) < len(shape):
            ranked = (1,) * (len(shape) - len(tensor.shape)) + tuple(tensor.shape)
            tensor = self.emit(OpType.RESHAPE, [tensor, self.constant("ranked", ranked, np.int32)],
                               out=self.new_tensor("ranked", tensor.dtype, ranked))
            if tensor.shape == shape:
                return tensor
        multiples = [n // d for n, d in zip(shape, tensor.shape)]
        return self.emit(OpType.TILE, [tensor, self.constant("multiples", multiples, np.int32)],
                         out=self.new_tensor("broadcast", tensor.dtype, shape))

    # --- the op's results ------------------------------------------------------------------
    def result_tensor(self, index: int = 0, shape: Any = None) -> Tensor:
        dtype, full = tensor_type(self.op.results[index])
        suffix = "" if index == 0 else f":{index}"
        return Tensor(self.name + suffix, dtype, full if shape is None else tuple(shape))

    def result_tensors(self, count: int, shape: Any = None) -> list[Tensor]:
        return [self.result_tensor(i, shape if i == 0 else None) for i in range(count)]

    def bind_results(self, tensors: list[Tensor]) -> None:
        for i, tensor in enumerate(tensors):
            self.set_result(tensor, i)

    def set_result(self, value: Tensor | Comparison, index: int = 0) -> None:
        self.values[self.op.results[index]] = value
