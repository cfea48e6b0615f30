"""Small queries and helpers the passes share."""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.types import ConversionError, Phase


class Uses:
    """Producer and consumers of every tensor, computed once per pass sweep."""

    def __init__(self, graph: Graph):
        self.graph = graph
        self.producer = graph.producers()
        self.consumers = graph.consumers()
        self.outputs = set(graph.outputs)

    def only_consumer(self, tensor: Tensor) -> Op | None:
        """The op that alone reads ``tensor`` (None if several read it or it is an output)."""
        readers = self.consumers.get(tensor, [])
        if len(readers) != 1 or tensor in self.outputs:
            return None
        return readers[0]

    def producer_of(self, tensor: Tensor | None, *types) -> Op | None:
        op = self.producer.get(tensor) if tensor is not None else None
        return op if op is not None and (not types or op.type in types) else None


def split_const(op: Op) -> tuple[Tensor, np.ndarray] | None:
    """For a binary op with exactly one constant operand: (the other input, the constant)."""
    if len(op.inputs) != 2:
        return None
    a, b = op.inputs
    if b.is_const and not a.is_const:
        return a, b.data
    if a.is_const and not b.is_const:
        return b, a.data
    return None


def channel_vector(value: np.ndarray, out: Tensor) -> np.ndarray | None:
    """``value`` as a vector over the last axis of ``out`` if it broadcasts only along it.

    A scalar or a ``[1, ..., 1, C]`` constant qualifies; anything that varies along another
    axis (or would grow ``out`` by broadcasting) does not.
    """
    if out.shape is None or not out.shape or out.shape[-1] is None:
        return None
    channels = out.shape[-1]
    if value.ndim > len(out.shape) or any(d != 1 for d in value.shape[:-1]):
        return None
    if value.size == 1:
        return np.full([channels], value.reshape(-1)[0], dtype=np.float64)
    if value.shape[-1] != channels:
        return None
    return value.reshape(-1).astype(np.float64)


def is_close_scalar(value: np.ndarray, target: float) -> bool:
    return value.size == 1 and abs(float(value.reshape(-1)[0]) - target) <= 1e-6 * abs(target)


def same_shape(a: Tensor, b: Tensor) -> bool:
    """Shapes equal where both are known (None dims match anything)."""
    if a.shape is None or b.shape is None or len(a.shape) != len(b.shape):
        return False
    return all(x is None or y is None or x == y for x, y in zip(a.shape, b.shape))


def merge_shapes(a: tuple | None, b: tuple | None) -> tuple | None:
    """The more specific of two shapes of one value: known dims win over None."""
    if a is None or b is None or len(a) != len(b):
        return a if b is None else b
    return tuple(x if x is not None else y for x, y in zip(a, b))


def take_outputs(producer: Op, replaced: Op) -> None:
    """``producer`` now computes what ``replaced`` did: it takes over its output tensors,
    keeping whatever either knew about their shapes."""
    for old, new in zip(producer.outputs, replaced.outputs):
        new.shape = merge_shapes(new.shape, old.shape)
    producer.outputs = list(replaced.outputs)


def to_fixpoint(edit_once: Callable[[Graph], bool]) -> Callable[[Graph], bool]:
    """Run a pass that makes at most one edit per call until it makes none.

    Each edit removes or reorders ops, so a correct pass stops within a few edits per op;
    more than that means two rewrites undo each other, which is reported, not looped on.
    """
    @functools.wraps(edit_once)
    def run(graph: Graph) -> bool:
        limit = 4 * len(graph.ops) + 16
        for edits in range(limit + 1):
            if not edit_once(graph):
                return edits > 0
        raise ConversionError(Phase.PASSES, f"pass {edit_once.__name__} did not settle after "
                              f"{limit} edits on graph {graph.name!r}")
    return run
