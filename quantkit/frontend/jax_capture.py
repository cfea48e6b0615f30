"""The JAX frontend: JAX functions → StableHLO → quantkit IR, one graph per function.

JAX traces each function on its example inputs and lowers it to StableHLO
(``jax.jit(f, keep_unused=True).lower(*examples)``). Weights closed over
(``functools.partial(apply, params)``) are embedded as ``stablehlo.constant`` ops. The module
is read through the MLIR Python bindings that ship with jaxlib, not its text: attributes come
typed (conv and dot dimension numbers, windows, dense arrays straight to numpy), which the
text form would make us re-parse, and the bindings are what ``jax`` itself builds the module
with, so they always match the installed jaxlib.

Each op is lowered through ``stablehlo_ops.LOWERINGS``; private functions (``func.call``:
``jax.nn.relu``, ``jnp.where``, ``jnp.clip`` are traced as such) are inlined in a scope of
their own; ``stablehlo_patterns`` then turns JAX's compositions back into TFLite builtins
(softmax, logistic, mean, ReLU family). Shapes are static: the batch is the example's.

Broadcasts stay implicit: a ``broadcast_in_dim`` becomes at most a RESHAPE (when dims must
move, ``[n] → [n, 1]``), since TFLite's elementwise kernels broadcast themselves, right-aligned
as numpy. So the IR tensor of a value is one that broadcasts to its StableHLO type (maybe of
lower rank); ops that need the exact shape read ``operand()``, which materializes it (numpy
for constants, else RESHAPE and TILE).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor, const
from quantkit.passes.fold_constants import try_fold
from quantkit.types import ConversionError, NotYetSupportedError, OpType, Phase

# StableHLO element types → numpy (bf16 and wider types have no TFLite kernel to lower to).
_DTYPES = {"f32": np.float32, "f16": np.float16, "f64": np.float64, "i1": np.bool_,
           "i8": np.int8, "i16": np.int16, "i32": np.int32, "i64": np.int64, "ui8": np.uint8}
# Ops the walk handles itself rather than through the table.
STRUCTURAL = {"func.call", "func.return"}
SIGNATURE_KEY = "serving_default"


@dataclass(frozen=True)
class Comparison:
    """A ``stablehlo.compare`` result: only ``select`` reads it (``jnp.where`` patterns)."""

    direction: str  # EQ, NE, GE, GT, LE, LT
    lhs: Tensor
    rhs: Tensor


Value = Any  # an MLIR value (jaxlib.mlir.ir.Value)


def tensor_type(value: Value) -> tuple[np.dtype, tuple[int | None, ...]]:
    """(numpy dtype, shape) of an MLIR ranked tensor value; dynamic dims are None."""
    from jaxlib.mlir import ir

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
    from jaxlib.mlir import ir

    if isinstance(attr, (ir.DenseI64ArrayAttr, ir.DenseI32ArrayAttr, ir.DenseBoolArrayAttr)):
        return list(attr)
    if isinstance(attr, ir.DenseElementsAttr):
        return np.array(attr)
    if isinstance(attr, (ir.IntegerAttr, ir.FloatAttr, ir.StringAttr, ir.BoolAttr)):
        return attr.value
    return attr


class StableHLOContext:
    """What a lowering handler sees: MLIR values mapped to IR tensors, and an op sink."""

    def __init__(self, graph: Graph, functions: dict[str, Any], prefix: str = "",
                 producers: dict[Tensor, Op] | None = None):
        self.graph = graph
        self.functions = functions  # the module's functions by symbol name, for calls
        self.prefix = prefix  # "relu/" inside an inlined call: names stay apart
        self.values: dict[Value, Tensor | Comparison] = {}
        self.producers = {} if producers is None else producers  # IR tensor → its op
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

    def error(self, message: str) -> ConversionError:
        return ConversionError(Phase.LOWERING, f"op {self.name!r} ({self.op_type}): {message}")

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

    def operand(self, index: int) -> Tensor:
        """Operand ``index`` with exactly its StableHLO shape (broadcasts materialized)."""
        return self.materialize(self.broadcastable(index), self.op.operands[index])

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

    def const_operand(self, index: int) -> np.ndarray:
        tensor = self.operand(index)
        if not tensor.is_const:
            raise self.error(f"operand {index} must be a constant for the TFLite builtin")
        return tensor.data

    def producer(self, tensor: Tensor, *types: OpType) -> Op | None:
        op = self.producers.get(tensor)
        return op if op is not None and (not types or op.type in types) else None

    # --- producing IR ----------------------------------------------------------------------
    def result_tensor(self, index: int = 0, shape: Any = None) -> Tensor:
        dtype, full = tensor_type(self.op.results[index])
        suffix = "" if index == 0 else f":{index}"
        return Tensor(self.name + suffix, dtype, full if shape is None else tuple(shape))

    def new_tensor(self, suffix: str, dtype: Any, shape: Any) -> Tensor:
        return Tensor(f"{self.name}/{suffix}", np.dtype(dtype), tuple(shape))

    def constant(self, suffix: str, value: Any, dtype: Any = None) -> Tensor:
        return const(f"{self.name}/{suffix}", value, dtype)

    def emit(self, op_type: OpType, inputs: list[Tensor | None], options: Any = None,
             out: Tensor | None = None, shape: Any = None) -> Tensor:
        """Add an op (folded away when its inputs are constant). With no ``out`` its output
        is the current op's result 0 (``shape`` overrides a broadcast result's shape);
        with ``out`` it is an intermediate the handler wires on itself."""
        final = out is None
        if final:
            out = self.result_tensor(0, shape)
        op = Op(op_type, list(inputs), [out], options, name=self.name)
        if not try_fold(op):
            self.graph.ops.append(op)
            self.producers[out] = op
        if final:
            self.set_result(out)
        return out

    def set_result(self, value: Tensor | Comparison, index: int = 0) -> None:
        self.values[self.op.results[index]] = value


# --- the API ---------------------------------------------------------------------------------
def lower_jax(serving_funcs: Sequence[Any], inputs: Sequence[Sequence[tuple[str, Any]]]
              ) -> list[Graph]:
    """Lower JAX functions to IR graphs (before passes), as ``experimental_from_jax`` takes
    them.

    Args:
      serving_funcs: JAX functions with their weights applied (``functools.partial(
        model.apply, params)``); one for now, as TF's converter.
      inputs: one list per function of ``(name, example array)`` pairs, in argument order:
        the examples fix the shapes and dtypes (the batch too), the names are the
        signature's input names.

    Returns:
      One graph per function, signature key ``serving_default``, outputs ``output_0``, ....

    Raises:
      ConversionError: (capture) malformed arguments or a function JAX cannot lower;
        (lowering) every StableHLO op without a TFLite lowering, listed with its count.
    """
    named = _checked_inputs(serving_funcs, inputs)
    return [_lower_function(func, pairs) for func, pairs in zip(serving_funcs, named)]


def _checked_inputs(serving_funcs: Any, inputs: Any) -> list[list[tuple[str, np.ndarray]]]:
    """TF's checks and messages, then each pair as (name, array)."""
    if not serving_funcs:
        raise ConversionError(Phase.CAPTURE, "No serving func is specified.")
    if not inputs:
        raise ConversionError(Phase.CAPTURE, "Input tensors are not specified.")
    if not isinstance(inputs, (tuple, list)):
        raise ConversionError(Phase.CAPTURE, "Input tensors should be pass in a tuple list "
                              "wrapped in an array.")
    if len(inputs) != len(serving_funcs):
        raise ConversionError(Phase.CAPTURE, f"Input tensor mapping len {len(inputs)} does "
                              f"not match serving func len {len(serving_funcs)}.")
    if len(serving_funcs) > 1:
        raise NotYetSupportedError(Phase.CAPTURE, f"{len(serving_funcs)} serving funcs: "
                                   "converting several functions into one model is not yet "
                                   "supported (TF's converter takes one too); pass one")
    named = []
    for i, pairs in enumerate(inputs):
        if not isinstance(pairs, (tuple, list)) or not all(
                isinstance(p, (tuple, list)) and len(p) == 2 and isinstance(p[0], str)
                for p in pairs):
            raise ConversionError(Phase.CAPTURE, f"inputs[{i}] must be a list of (name, "
                                  "example array) pairs, e.g. [('input1', jnp.zeros(shape))]")
        names = [name for name, _ in pairs]
        if len(set(names)) != len(names):
            raise ConversionError(Phase.CAPTURE, f"inputs[{i}]: repeated input names {names}")
        named.append([(name, np.asarray(x)) for name, x in pairs])
    return named


def _lower_function(func: Any, pairs: list[tuple[str, np.ndarray]]) -> Graph:
    from quantkit.frontend.stablehlo_patterns import rewrite_patterns

    lowered = _trace(func, [x for _, x in pairs])
    module = lowered.compiler_ir("stablehlo")
    with module.context:
        functions = {str(f.attributes["sym_name"].value): f for f in module.body.operations
                     if "sym_name" in f.attributes}
        _check_supported(functions)
        main = functions["main"]
        graph = Graph(input_names=[name for name, _ in pairs], signature_key=SIGNATURE_KEY)
        ctx = StableHLOContext(graph, functions)
        args = list(main.regions[0].blocks[0].arguments)
        consts = list(getattr(getattr(lowered, "_lowering", None), "const_args", None) or [])
        if len(args) != len(pairs) + len(consts):
            raise ConversionError(Phase.CAPTURE, f"the lowered function takes {len(args)} "
                                  f"arguments for {len(pairs)} inputs; pass each input as one "
                                  "array (no pytrees)")
        # JAX passes hoisted constants (if any) ahead of the inputs.
        bound: list[Tensor] = [const(f"const_arg_{i}", np.asarray(c))
                               for i, c in enumerate(consts)]
        for (name, _), arg in zip(pairs, args[len(consts):]):
            dtype, shape = tensor_type(arg)
            graph.inputs.append(Tensor(name, dtype, shape))
        results = lower_body(ctx, main, bound + graph.inputs)
        main_results = main.regions[0].blocks[0].operations[-1].operation.operands
        graph.outputs = [_output(ctx, t, v, i)
                         for i, (t, v) in enumerate(zip(results, main_results))]
    graph.output_names = [f"output_{i}" for i in range(len(graph.outputs))]
    rewrite_patterns(graph)  # it ends with remove_dead_ops
    return graph


def _trace(func: Any, examples: list[np.ndarray]) -> Any:
    try:
        import jax
    except ImportError as e:
        raise ConversionError(Phase.CAPTURE, "experimental_from_jax needs jax: pip install "
                              "jax") from e
    try:
        return jax.jit(func, keep_unused=True).lower(*examples)
    except Exception as e:  # a tracing error in the user's function
        raise ConversionError(Phase.CAPTURE, f"JAX could not lower the serving func on the "
                              f"example inputs: {type(e).__name__}: {e}") from e


def _output(ctx: StableHLOContext, tensor: Any, value: Value, index: int) -> Tensor:
    if isinstance(tensor, Comparison):
        raise ConversionError(Phase.LOWERING, f"output {index} is a comparison (boolean); "
                              "only float and integer outputs are supported")
    return ctx.materialize(tensor, value)


def _check_supported(functions: dict[str, Any]) -> None:
    """One error listing every op (with its count) that no table row lowers."""
    from quantkit.frontend.stablehlo_ops import LOWERINGS

    missing: Counter = Counter()
    for func in functions.values():
        for op in func.regions[0].blocks[0].operations:
            name = op.operation.name
            if name not in LOWERINGS and name not in STRUCTURAL:
                missing[name] += 1
    if missing:
        listed = "\n".join(f"  {name} ×{n}" for name, n in sorted(missing.items()))
        raise ConversionError(
            Phase.LOWERING, f"{sum(missing.values())} StableHLO op(s) have no TFLite lowering "
            f"in quantkit:\n{listed}\nSupported StableHLO ops: {', '.join(sorted(LOWERINGS))}")


def lower_body(ctx: StableHLOContext, func: Any, args: list[Any]) -> list[Any]:
    """Lower a function's ops with its arguments bound to ``args``; the returned values."""
    from quantkit.frontend.stablehlo_ops import LOWERINGS

    block = func.regions[0].blocks[0]
    for arg, value in zip(block.arguments, args):
        ctx.values[arg] = value
    for op in block.operations:
        ctx.op = op = op.operation
        if op.name == "func.return":
            return [ctx.values[v] for v in op.operands]
        if op.name == "func.call":
            _inline_call(ctx)
            continue
        try:
            LOWERINGS[op.name](ctx)
        except ConversionError:
            raise
        except Exception as e:  # a handler's own bug or an unexpected attribute: name the op
            raise ctx.error(f"{type(e).__name__}: {e}") from e
    raise ConversionError(Phase.LOWERING, "a function without func.return")


def _inline_call(ctx: StableHLOContext) -> None:
    call = ctx.op
    callee = str(call.attributes["callee"].value)
    inner = ctx.scope(callee)
    results = lower_body(inner, ctx.functions[callee], [ctx.values[v] for v in call.operands])
    ctx.op = call
    for i, value in enumerate(results):
        ctx.set_result(value, i)
