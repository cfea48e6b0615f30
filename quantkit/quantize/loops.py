"""Integer WHILE loops (issue #12): a loop's condition and body quantized as graphs of their own.

The main graph's planner quantizes a WHILE op like any other (its rule is ``PAIRED``: output
``i`` from its range, input ``i`` read at output ``i``'s parameters, a constant initial value
quantized at them). Its condition and body are then quantized here, each as a graph whose
inputs and outputs are integers in the WHILE op's storage (int8, or int16 where the recipe or
``plan.recurrent_int16`` set the op's precision), from the same ranges. LiteRT's WHILE copies
the loop variables' raw integers between the op, the condition and the body, so each variable
must have one set of parameters everywhere: the ranges are tied first
(``tied_loop_ranges``), and ``link_loops`` checks that the parameters came out equal.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor, subgraphs, variable_slots, while_ops
from quantkit.quantize import math as qm
from quantkit.quantize.edits import apply
from quantkit.quantize.params import Ranges, constant_range
from quantkit.quantize.plan import Plan, plan_integer
from quantkit.types import ConversionError, ConversionMode, OpType, Phase, QuantMode, TensorType

_IO_TYPES = {np.dtype(np.int8): TensorType.INT8, np.dtype(np.uint8): TensorType.UINT8,
             np.dtype(np.int16): TensorType.INT16}


def loop_variables(graph: Graph) -> list[list[Tensor]]:
    """The tensors of each float loop variable of ``graph``'s WHILE ops (their subgraphs' too):
    the op's input and output ``i``, its condition's input ``i``, its body's input and output
    ``i``. LiteRT's WHILE copies a variable's raw values from one to the next, so in an integer
    loop they must all have one set of parameters (``tied_loop_ranges``)."""
    found = []
    for g in subgraphs([graph]):
        for op in while_ops(g):
            found += [list(dict.fromkeys(members)) for members in zip(*variable_slots(op))
                      if np.dtype(members[0].dtype) == np.float32]
    return found


def tied_loop_ranges(graph: Graph, ranges: Ranges) -> Ranges:
    """``ranges`` with each loop variable's tensors (``loop_variables``) given one range: the
    union of their calibrated ranges (a constant's own: a zero initial state), so that they
    get one set of parameters. A variable none of whose tensors has a range is left out.
    Without loop variables: ``ranges`` itself."""
    variables = loop_variables(graph)
    if not variables:
        return ranges
    tied = dict(ranges)
    for members in variables:
        known = [r for r in (_range_of(t, ranges) for t in members) if r is not None]
        if not known:
            continue
        union = (min(lo for lo, _ in known), max(hi for _, hi in known))
        tied.update({t.name: union for t in members if not t.is_const})
    return tied


def _range_of(t: Tensor, ranges: Ranges) -> tuple[float, float] | None:
    if t.is_const:
        return constant_range(t)
    return tuple(map(float, ranges[t.name])) if t.name in ranges else None


def inner_mode(mode: ConversionMode, storage: qm.Storage) -> ConversionMode:
    """The mode a loop's subgraphs are quantized in: the WHILE op's storage, inputs and
    outputs included (int16: int16x8's scheme)."""
    quant = QuantMode.INT16X8 if storage == qm.INT16 else mode.quant
    io = _IO_TYPES[np.dtype(storage.dtype)]
    return dataclasses.replace(mode, quant=quant, input_type=io, output_type=io)


def link_loops(source: Graph, quantized: Graph, plan: Plan, ranges: Ranges,
               mode: ConversionMode) -> None:
    """Quantize the condition and body of each WHILE op of ``source`` (the float graph
    ``plan`` was made from) and set them into ``quantized``'s WHILE ops (in place).
    ``ranges``: tied (``tied_loop_ranges``).

    Raises:
        ConversionError: (quantization) a WHILE op left float while the graph is integer, or
            a loop variable whose parameters differ between the op, its condition and body.
    """
    loops, targets = while_ops(source), [op for op in quantized.ops if op.type == OpType.WHILE]
    for op, target in zip(loops, targets):
        if op not in plan.schemes:
            raise ConversionError(Phase.QUANTIZATION, f"WHILE op {op.name!r} stays float: its "
                                  "body cannot be quantized")
        inner = inner_mode(mode, plan.schemes[op].activations)
        cond, body = (_quantized(g, ranges, inner)
                      for g in (op.options.cond_subgraph, op.options.body_subgraph))
        _requantize_results(body)
        target.options = dataclasses.replace(target.options, cond_subgraph=cond,
                                             body_subgraph=body)
        for i, members in enumerate(zip(*variable_slots(target))):
            found = {(t.dtype, t.quant) for t in members}
            if len(found) > 1:
                raise ConversionError(
                    Phase.QUANTIZATION, f"WHILE op {op.name!r}: loop variable {i} has "
                    f"differing types or parameters {sorted(map(str, found))} across "
                    f"{[t.name for t in members]}")


def _quantized(graph: Graph, ranges: Ranges, mode: ConversionMode) -> Graph:
    plan = plan_integer(graph, ranges, mode)
    new = apply(graph, plan.edits)
    link_loops(graph, new, plan, ranges, mode)  # a loop nested in the body
    return new


def _requantize_results(body: Graph) -> None:
    """A body output whose parameters differ from its input's (an op with fixed output
    parameters, TANH's, wrote it) is requantized to them at the end of the body."""
    for i, (arg, result) in enumerate(zip(body.inputs, body.outputs)):
        if result is arg or result.quant == arg.quant or result.dtype != arg.dtype:
            continue
        name = f"{result.name}/requantized"
        fitted = Tensor(name, result.dtype, result.shape, quant=arg.quant)
        body.ops.append(Op(OpType.QUANTIZE, [result], [fitted], name=name))
        body.outputs[i] = fitted
