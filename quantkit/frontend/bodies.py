"""Function bodies a traced graph calls, rebuilt as graphs with the variables they read typed.

A SavedModel signature (Keras 3's ``model.export``) calls its body with each variable passed
as a resource argument whose handle carries no shape: TF's shape inference then knows nothing
of the values the body reads (``ReadVariableOp`` → unknown shape), and every op downstream of
a weight gets an unknown shape (a Dense's output ``(None, None)``), which keeps the passes
from folding biases and BatchNorm. Lowering binds those arguments to the variables' values
anyway, so the body is rebuilt with each such argument typed as its value (``dtype``, shape)
and the reads turned into ``Identity``: TF's shape inference then sees the weights' shapes,
as it does when it traces a Keras model directly.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import function_pb2, types_pb2
from tensorflow.python.framework.function_def_to_graph import function_def_to_graph

from quantkit.ir.graph import Tensor

_READ = "ReadVariableOp"


def body_graph(fdef: Any, call_inputs: Sequence[Any], bound: Sequence[Tensor | None]) -> Any:
    """The graph of ``fdef`` called with ``call_inputs`` (TF tensors), whose IR values so far
    are ``bound`` (None where not known yet); resource arguments bound to constants that the
    body only reads become plain inputs of the constant's dtype and shape."""
    shapes = [t.shape for t in call_inputs]
    readable = _read_only_resources(fdef)
    typed = {}
    for i, (arg, value) in enumerate(zip(fdef.signature.input_arg, bound)):
        if arg.name in readable and value is not None and value.is_const:
            typed[arg.name] = tf.as_dtype(np.dtype(value.dtype)).as_datatype_enum
            shapes[i] = tf.TensorShape(value.data.shape)
    if typed:
        fdef = _typed(fdef, typed)
    return function_def_to_graph(fdef, input_shapes=shapes)


def _read_only_resources(fdef: Any) -> set[str]:
    """Resource arguments whose every data use is a ``ReadVariableOp`` in the body itself."""
    resources = {a.name for a in fdef.signature.input_arg if a.type == types_pb2.DT_RESOURCE}
    for node in fdef.node_def:
        for name in node.input:
            if name in resources and node.op != _READ:
                resources.discard(name)  # assigned, gathered or passed to a nested call
    return resources


def _typed(fdef: Any, typed: dict[str, int]) -> Any:
    """A copy of ``fdef`` with the arguments in ``typed`` given those dtypes and their reads
    turned into ``Identity`` (references to a read's ``value`` output renamed ``output``)."""
    new = function_pb2.FunctionDef()
    new.CopyFrom(fdef)
    for arg in new.signature.input_arg:
        if arg.name in typed:
            arg.type = typed[arg.name]
            del arg.handle_data[:]
    reads = set()
    for node in new.node_def:
        if node.op == _READ and node.input and node.input[0] in typed:
            reads.add(node.name)
            dtype = node.attr["dtype"].type
            node.op = "Identity"
            del node.attr["dtype"]
            node.attr["T"].type = dtype
    for node in new.node_def:
        node.input[:] = [_renamed(name, reads) for name in node.input]
    for key in list(new.ret):
        new.ret[key] = _renamed(new.ret[key], reads)
    return new


def _renamed(reference: str, reads: set[str]) -> str:
    """``read:value:0`` → ``read:output:0`` for a read that became an Identity."""
    parts = reference.split(":")
    if len(parts) == 3 and parts[0] in reads and parts[1] == "value":
        return f"{parts[0]}:output:{parts[2]}"
    return reference
