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
lower rank); ops that need the exact shape read ``input()``, which materializes it (numpy
for constants, else RESHAPE and TILE). Handlers write through
``stablehlo_context.StableHLOContext``, the ``builder.GraphBuilder`` both frontends share.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Sequence

import numpy as np

from quantkit.frontend.stablehlo_context import Comparison, StableHLOContext, Value, tensor_type
from quantkit.frontend.stablehlo_ops import LOWERINGS
from quantkit.frontend.stablehlo_patterns import rewrite_patterns
from quantkit.ir.graph import Graph, Tensor, const
from quantkit.types import ConversionError, NotYetSupportedError, Phase

# Ops the walk handles itself rather than through the table.
STRUCTURAL = {"func.call", "func.return"}
SIGNATURE_KEY = "serving_default"


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
        import jax  # optional dependency (the jax extra): only for JAX models
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
