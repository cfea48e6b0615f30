"""Constant folding: an op whose inputs are all constant is evaluated here, in numpy.

An op's numpy reference kernel ``(op, values) -> [outputs]`` is its spec's ``fold`` in the op
table (``quantkit.ops``; the kernels are ``quantkit.ops.fold``). A kernel may return None to
decline (a case it does not model); the op then stays in the graph. SHAPE folds whenever its
input's shape is static, constant or not.
"""

from __future__ import annotations

import numpy as np

from quantkit.ir.graph import Graph, Op
from quantkit.ops import spec
from quantkit.types import OpType


def try_fold(op: Op) -> bool:
    """Evaluate ``op`` if it can be; its outputs then hold their values. Returns whether it did."""
    if op.type == OpType.SHAPE and op.inputs[0].static_shape:
        results: list[np.ndarray] | None = [np.array(op.inputs[0].shape)]
    elif spec(op.type).fold is not None and all(t is None or t.is_const for t in op.inputs) \
            and not any(t.quant for t in op.outputs):
        values = [t.data for t in op.inputs if t is not None]
        with np.errstate(all="ignore"):
            results = spec(op.type).fold(op, values)
    else:
        return False
    return _set_results(op, results)


def _set_results(op: Op, results: list[np.ndarray] | None) -> bool:
    if results is None:
        return False
    for tensor, value in zip(op.outputs, results):
        # Not np.ascontiguousarray: it turns a scalar into shape [1].
        value = np.asarray(value, order="C").astype(tensor.dtype)
        tensor.data = value
        tensor.shape = tuple(value.shape)
    return True


def fold_static_dims(op: Op, producers: dict) -> bool:
    """Fold a STRIDED_SLICE/GATHER of SHAPE(x) that only reads x's static dims.

    A hand-written flatten computes ``reduce_prod(tf.shape(x)[1:])`` on a dynamic-batch x; the
    dims it reads are known. While slicing, -1 stands for a dynamic dim (real dims are ≥ 0).
    """
    if op.type not in (OpType.STRIDED_SLICE, OpType.GATHER) \
            or not all(t is not None and t.is_const for t in op.inputs[1:]):
        return False
    shape_op = producers.get(op.inputs[0])
    if shape_op is None or shape_op.type != OpType.SHAPE or shape_op.inputs[0].shape is None:
        return False
    dims = np.array([-1 if d is None else d for d in shape_op.inputs[0].shape],
                    op.inputs[0].dtype)
    results = spec(op.type).fold(op, [dims, *(t.data for t in op.inputs[1:])])
    if results is None or np.any(np.asarray(results[0]) < 0):
        return False
    return _set_results(op, results)


def fold_constants(graph: Graph) -> bool:
    """Fold every op that can be folded; drop what no longer reaches an output."""
    producers = graph.producers()
    folded = [op for op in graph.ops if try_fold(op) or fold_static_dims(op, producers)]
    graph.remove_ops(folded)
    graph.remove_dead_ops()
    return bool(folded)
