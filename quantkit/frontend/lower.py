"""Lowering: a captured TF graph → quantkit IR, one TF op at a time through ``tf_ops.LOWERINGS``.

Handlers write through ``tf_context.TFContext`` (the ``builder.GraphBuilder`` both frontends
share). Ops whose inputs are all constant are folded as they are emitted, so handlers can read
weights that TF computes from variables (Keras 3 reshapes its biases, BatchNorm computes
``gamma·rsqrt(var + eps)``) as plain arrays. Function calls are inlined: the called function's
graph is lowered in place, in a scope of its own (``TFContext.scope``: a name prefix), its
parameters bound to the call's arguments, its variable reads bound to the variables' constants
(``tf_loops.function_graph``: TF then knows the shapes inside). A ``While`` over a static trip
count is unrolled the same way, its body lowered once per step (``tf_loops``), unless it is a
Keras LSTM or SimpleRNN, which becomes one fused sequence op (``tf_rnn``), or the mode keeps
loops (float activations): a WHILE op with its condition and body as subgraphs (``tf_while``).
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf
from tensorflow.python.framework.function_def_to_graph import function_def_to_graph

from quantkit.frontend import tf_loops, tf_rnn, tf_while
from quantkit.frontend.capture import Captured
from quantkit.frontend.tf_context import TFContext, ir_tensor
from quantkit.frontend.tf_ops import LOWERINGS, lower_custom
from quantkit.ir.graph import Graph, const
from quantkit.types import ConversionError, Phase

# TF ops that only pass a value through (or order execution): no TFLite op at all.
PASS_THROUGH = {"Identity", "IdentityN", "StopGradient", "Snapshot", "PreventGradient",
                "EnsureShape", "CheckNumerics", "ReadVariableOp"}
IGNORED = {"NoOp", "Placeholder", "Const", "Assert"}
# Function calls, inlined: their bodies are lowered in place of the call.
CALLS = {"StatefulPartitionedCall", "PartitionedCall"}


def lower(captured: Captured, *, allow_custom_ops: bool = False,
          fused_rnns: frozenset[tf_rnn.FusedCell] = tf_rnn.ALL_CELLS) -> Graph:
    """Lower one captured signature to an IR graph.

    ``fused_rnns``: the Keras RNN cells whose loops become TFLite's fused sequence ops
    (``tf_rnn``); with ``FusedCell.LOOP`` other loops become WHILE ops with condition and body
    subgraphs (``tf_while``), else they are unrolled.

    Raises:
      ConversionError: (lowering) listing every TF op that has no TFLite builtin, unless
        ``allow_custom_ops``, in which case those become custom ops named by their TF type.
    """
    graph = Graph(input_names=list(captured.input_names), output_names=list(captured.output_names),
                  signature_key=captured.signature_key)
    ctx = TFContext(graph, captured.graph, fused_rnns=fused_rnns)
    for name, tf_in in zip(captured.input_names, captured.inputs):
        ctx.tensors[tf_in.name] = ir_tensor(name, tf_in)
        graph.inputs.append(ctx.tensors[tf_in.name])
    for name, value in captured.constants.items():  # variables and captured tensors
        ctx.tensors[name] = const(name.split(":")[0], value)

    nodes = captured.graph.get_operations()
    unsupported = _unsupported(ctx, nodes, LOWERINGS)
    if unsupported and not allow_custom_ops:
        listed = "\n".join(f"  {n.type} (node {n.name!r})" for n in unsupported)
        raise ConversionError(
            Phase.LOWERING, f"{len(unsupported)} TF op(s) have no TFLite builtin in quantkit:\n"
            f"{listed}\nSet `allow_custom_ops=True` to emit them as custom ops (your runtime "
            f"must then provide them). Supported TF ops: {', '.join(sorted(LOWERINGS))}")
    _lower_nodes(ctx, nodes)
    graph.outputs = [ctx.tensors[t.name] for t in captured.outputs]
    graph.remove_dead_ops()
    _drop_wrapper_scope(graph, [n for n in nodes if n.type in CALLS])
    return graph


def _drop_wrapper_scope(graph: Graph, calls: list) -> None:
    """Tensor names lose the scope of the one call that wraps the whole traced function
    (``StatefulPartitionedCall/conv/BiasAdd`` → ``conv/BiasAdd``): it says nothing, and the
    names are in the file (TF drops it too). Repeats are suffixed later (``uniquify_names``)."""
    if len(calls) != 1:
        return
    scope = f"{calls[0].name}/"
    for t in graph.tensors():
        if t.name.startswith(scope) and len(t.name) > len(scope):
            t.name = t.name[len(scope):]


def _body(ctx: TFContext, call: Any) -> Any:
    """The graph of the function a call node runs, its inputs shaped as at the call."""
    return _function_graph(ctx, ctx.prefix + call.name, call.get_attr("f").name,
                           [t.shape for t in call.inputs])


def _function_graph(ctx: TFContext, key: str, name: str, shapes: list) -> Any:
    """The graph of the library function ``name``, built once per ``key`` (a call site)."""
    if key not in ctx.bodies:
        # The traced graph's library holds nested functions too; a body graph's does not.
        function = ctx.library._get_function(name)
        if function is None:
            raise ConversionError(Phase.LOWERING, f"op {key!r}: function {name!r} is not in "
                                  "the graph's library")
        ctx.bodies[key] = function_def_to_graph(function.definition, input_shapes=shapes)
    return ctx.bodies[key]


def _loop_graphs(ctx: TFContext, loop: Any) -> list:
    """A While node's condition and body graphs."""
    shapes = [t.shape for t in loop.inputs]
    return [_function_graph(ctx, f"{ctx.prefix}{loop.name}/{part}",
                            loop.get_attr(part).name, shapes) for part in ("cond", "body")]


def _unsupported(ctx: TFContext, nodes: list, lowerings: dict) -> list:
    """Every node, inlined function bodies included, that no table row lowers."""
    missing = []
    for node in nodes:
        if node.type in CALLS:
            missing += _unsupported(ctx.scope(node.name), _body(ctx, node).get_operations(),
                                    lowerings)
        elif node.type in tf_loops.LOOPS:  # its condition is evaluated, not lowered
            body = _loop_graphs(ctx, node)[1]
            missing += _unsupported(ctx.scope(node.name), body.get_operations(), lowerings)
        elif node.type not in lowerings and node.type not in PASS_THROUGH \
                and node.type not in IGNORED and node.type not in tf_loops.TENSOR_LISTS:
            missing.append(node)
    return missing


def _lower_nodes(ctx: TFContext, nodes: list) -> None:
    for node in nodes:
        ctx.node = node
        if node.type == "Const":
            variable = tf_loops.variable_read(node)
            if variable is not None:  # a variable's read (tf_loops.function_graph)
                ctx.alias(ctx.tensors[variable])
                continue
            value = tf.make_ndarray(node.get_attr("value"))
            ctx.tensors[node.outputs[0].name] = const(ctx.name, value)
        elif node.type in PASS_THROUGH:
            for i in range(len(node.outputs)):
                ctx.alias(ctx.input(i), i)
        elif node.type in CALLS:
            _lower_call(ctx, node)
        elif node.type in tf_loops.LOOPS:
            _lower_node(ctx, node, _lower_loop)
        elif node.type in IGNORED:
            continue  # placeholders were mapped before: inputs, captures, call arguments
        elif node.type in LOWERINGS:
            _lower_node(ctx, node, LOWERINGS[node.type])
        elif node.type in tf_loops.TENSOR_LISTS:
            _lower_node(ctx, node, tf_loops.TENSOR_LISTS[node.type])
        else:
            lower_custom(ctx)


def _lower_call(ctx: TFContext, call: Any) -> None:
    """Inline a function call (SavedModel signatures wrap their body in one)."""
    # Variables read as constants: TF then infers the shapes in the body (tf_loops).
    body = tf_loops.function_graph(ctx, f"{ctx.prefix}{call.name}/inlined",
                                   call.get_attr("f").name,
                                   [ctx.tensors[t.name] for t in call.inputs])
    inner = ctx.scope(call.name)
    for param, arg in zip(body.inputs, call.inputs):
        inner.tensors[param.name] = ctx.tensors[arg.name]
    _lower_nodes(inner, body.get_operations())
    for result, out in zip(body.outputs, call.outputs):
        ctx.tensors[out.name] = inner.tensors[result.name]


def _lower_loop(ctx: TFContext) -> None:
    """A Keras RNN's While as one fused sequence op (``tf_rnn``), else a WHILE op with its
    condition and body as subgraphs where the mode keeps loops (``tf_while``), else unrolled
    (``tf_loops``): its body lowered in place once per step."""
    cond = _loop_graphs(ctx, ctx.node)[0]
    if tf_rnn.lower_fused(ctx, cond, _lower_nodes, ctx.fused_rnns):
        return
    if tf_rnn.FusedCell.LOOP in ctx.fused_rnns and tf_while.lower_as_while(ctx, _lower_nodes):
        return
    tf_loops.lower_while(ctx, cond, _lower_nodes)


def _lower_node(ctx: TFContext, node: Any, handler: Any) -> None:
    try:
        handler(ctx)
    except ConversionError:
        raise
    except Exception as e:  # a handler's own bug or an unexpected attr: name the node
        raise ctx.error(f"{type(e).__name__}: {e}") from e
