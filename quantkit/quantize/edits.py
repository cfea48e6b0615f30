"""The edits a quantization plan is made of, and the one function that applies them.

Planning (``quantize.plan``) decides; ``apply`` carries the decisions out, in order, on a
copy of the float graph, and puts the ops back into a topological order. The float graph is
never changed: edits name its tensors and ops, and ``apply`` maps them to their copies. New
tensors and ops are created by the planner (they are not in any graph until applied); nothing
here knows flatbuffer indices.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.types import QuantParams


@dataclass(frozen=True)
class Retype:
    """An activation becomes integer in place (its producer now writes integers)."""

    tensor: Tensor
    dtype: np.dtype
    params: QuantParams


@dataclass(frozen=True)
class SetInput:
    """``op`` reads ``tensor`` at ``index`` (a quantized constant, or a converted value)."""

    op: Op
    index: int
    tensor: Tensor


@dataclass(frozen=True)
class SetOptions:
    """``op`` gets new ``options`` (e.g. int16 ADD: general scaling)."""

    op: Op
    options: object


@dataclass(frozen=True)
class SetIntermediates:
    """``op`` gets new ``intermediates`` (the integer LSTM's: tensors it reads only the
    parameters of)."""

    op: Op
    tensors: list[Tensor]


@dataclass(frozen=True)
class Convert:
    """Insert a QUANTIZE or DEQUANTIZE ``op`` (its input and new output already set)."""

    op: Op


@dataclass(frozen=True)
class SetGraphOutput:
    """The model's output ``position`` becomes ``tensor``, which takes the old output's name;
    the old output tensor, now inside the graph, is renamed ``inner_name``."""

    position: int
    tensor: Tensor
    inner_name: str


Edit = Retype | SetInput | SetOptions | SetIntermediates | Convert | SetGraphOutput


def apply(graph: Graph, edits: list[Edit]) -> Graph:
    """A new graph: a copy of ``graph`` with ``edits`` applied in order, ops in a topological
    order. ``graph`` itself is left as it was (calibration statistics stay keyed to it)."""
    copy = _Copy(graph)
    new = copy.graph
    for edit in edits:
        if isinstance(edit, Retype):
            tensor = copy.tensor(edit.tensor)
            tensor.dtype, tensor.quant = np.dtype(edit.dtype), edit.params
        elif isinstance(edit, SetInput):
            copy.op(edit.op).inputs[edit.index] = copy.tensor(edit.tensor)
        elif isinstance(edit, SetOptions):
            copy.op(edit.op).options = edit.options
        elif isinstance(edit, SetIntermediates):
            copy.op(edit.op).intermediates = list(edit.tensors)
        elif isinstance(edit, Convert):
            _insert_after_producer(new, copy.op(edit.op))
        elif isinstance(edit, SetGraphOutput):
            old, tensor = new.outputs[edit.position], copy.tensor(edit.tensor)
            tensor.name, old.name = old.name, edit.inner_name
            new.outputs[edit.position] = tensor
    return new


class _Copy:
    """A copy of a graph's ops and tensors (constants' data shared, never written), and the
    map from the originals; tensors and ops the planner made map to themselves, with their
    inputs mapped."""

    def __init__(self, graph: Graph):
        self._tensors = {t: replace(t) for t in graph.tensors()}
        self._ops: dict[Op, Op] = {}
        self.graph = replace(graph, ops=[self.op(op) for op in graph.ops],
                             inputs=[self.tensor(t) for t in graph.inputs],
                             outputs=[self.tensor(t) for t in graph.outputs],
                             input_names=list(graph.input_names),
                             output_names=list(graph.output_names))

    def tensor(self, t: Tensor | None) -> Tensor | None:
        return None if t is None else self._tensors.get(t, t)

    def op(self, op: Op) -> Op:
        if op not in self._ops:
            self._ops[op] = replace(op, inputs=[self.tensor(t) for t in op.inputs],
                                    outputs=[self.tensor(t) for t in op.outputs])
        return self._ops[op]


def _insert_after_producer(graph: Graph, op: Op) -> None:
    source = op.inputs[0]
    position = 0
    for i, other in enumerate(graph.ops):
        if source in other.outputs:
            position = i + 1
            break
    graph.ops.insert(position, op)
