"""Every quantized op of a converted model, paired with its float op, and run on its own.

The debugger reads two IR graphs of one signature: the float graph (after passes) and the
quantized graph made from it. Their ops pair up through their output tensors' names (the
quantizer keeps an activation's name in every precision; only the QUANTIZE / DEQUANTIZE ops it
adds get new ones). Each pair is cut out into two one-op graphs, written and run in LiteRT:

* the float op alone, fed what we choose (the quantized model's inputs, dequantized: TF's
  NumericVerify reference; or the float model's own inputs rounded onto the op's input grid),
* the quantized op alone, fed its float inputs quantized with its own input parameters:
  the error it adds on its own, with no error accumulated before it.

Quantized one-op graphs are written with the description ``DEBUG_DESCRIPTION`` (they are
quantkit models; tests/mutation.py feeds them noise). Dequantization is ``r = s·(q − z)``,
quantization ``q = clamp(round(r / s) + z, qmin, qmax)``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.runtime import LiteRTExecutor
from quantkit.types import OpType, QuantParams

DEBUG_DESCRIPTION = "quantkit debug: one quantized op"
# Ops the quantizer adds at precision boundaries: they move values between grids, they are
# not layers of the model.
_CONVERTERS = frozenset({OpType.QUANTIZE, OpType.DEQUANTIZE})
# A model output's integer tensor is named after the float one: `logits/int8` (`_1`, ... when
# that name is taken).
_IO_SUFFIX = re.compile(r"/(int8|int16|uint8)(_\d+)?$")


def dequantize(values: np.ndarray, quant: QuantParams | None) -> np.ndarray:
    """``r = s·(q − z)`` (per channel along ``quant.axis``); float values pass through."""
    if quant is None or np.dtype(values.dtype).kind == "f":
        return np.asarray(values, np.float32)
    scales, zeros = _broadcast(quant, values.ndim)
    return (scales * (values.astype(np.float64) - zeros)).astype(np.float32)


def quantize(values: np.ndarray, quant: QuantParams, dtype: np.dtype) -> np.ndarray:
    """``q = clamp(round(r / s) + z, qmin, qmax)``, rounding half away from zero (LiteRT's
    QUANTIZE)."""
    scales, zeros = _broadcast(quant, values.ndim)
    scaled = values.astype(np.float64) / scales
    q = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5) + zeros
    limits = np.iinfo(dtype)
    return np.clip(q, limits.min, limits.max).astype(dtype)


def _broadcast(quant: QuantParams, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    scales = np.asarray(quant.scales, np.float64)
    zeros = np.asarray(quant.zero_points or [0] * len(scales), np.float64)
    if quant.axis is not None and len(scales) > 1:
        shape = [1] * ndim
        shape[quant.axis] = -1
        return scales.reshape(shape), zeros.reshape(shape)
    return scales[:1], zeros[:1]


def one_op_graph(graph: Graph, op: Op, shapes: Sequence[tuple[int, ...]]) -> Graph:
    """``op`` alone: its non-constant inputs are the graph's inputs (with ``shapes``, the
    batch dim left free: passes may leave an activation's dims unknown, which a graph input
    cannot have), its outputs the outputs. ``op`` and ``graph`` are unchanged."""
    originals = activation_inputs(op)
    inputs = [dataclasses.replace(t, shape=(None, *shape[1:]))
              for t, shape in zip(originals, shapes)]
    swap = dict(zip(originals, inputs))
    alone = dataclasses.replace(op, inputs=[swap.get(t, t) if t is not None else None
                                            for t in op.inputs])
    return dataclasses.replace(graph, ops=[alone], inputs=inputs, outputs=list(op.outputs),
                               input_names=[t.name for t in inputs],
                               output_names=[t.name for t in op.outputs])


def _on_grid(t: Tensor) -> bool:
    return t.quant is not None and np.dtype(t.dtype).kind in "iu"


def is_quantized(op: Op) -> bool:
    """An op of the model computing on integers (not a QUANTIZE/DEQUANTIZE the quantizer
    added): its outputs are integers on a grid, but for a WHILE's counters (int32, no
    parameters)."""
    outputs = [t for t in op.outputs if not (op.type is OpType.WHILE and t.quant is None
                                             and np.dtype(t.dtype).kind in "iu")]
    return op.type not in _CONVERTERS and bool(outputs) and all(map(_on_grid, outputs))


def debug_output(op: Op, read: set[Tensor]) -> int:
    """Which of a quantized op's outputs its debug row is about: the first on a grid that the
    model reads (a WHILE's state, not its counter or the sequence it passes through), else
    the first on a grid."""
    on_grid = [i for i, t in enumerate(op.outputs) if _on_grid(t)]
    return next((i for i in on_grid if op.outputs[i] in read), on_grid[0])


@dataclass
class OpPair:
    """A quantized op and the float op it came from, each runnable on its own (the one-op
    graphs are written on first use, when their inputs' shapes are known)."""

    quantized: Op
    float: Op
    float_graph: Graph
    quantized_graph: Graph
    index: int = 0  # the output a debug row is about (``debug_output``)
    _float_alone: LiteRTExecutor | None = None
    _quantized_alone: LiteRTExecutor | None = None

    @property
    def output(self) -> Tensor:
        """The quantized op's output the debug row is about."""
        return self.quantized.outputs[self.index]

    @property
    def float_output(self) -> Tensor:
        """The float op's output that ``output`` quantizes."""
        return self.float.outputs[self.index]

    def run_float(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """The float op on float ``inputs`` (one per non-constant input, in op order)."""
        if self._float_alone is None:
            self._float_alone = LiteRTExecutor(
                one_op_graph(self.float_graph, self.float, [x.shape for x in inputs]))
        run = self._float_alone
        return run(dict(zip(run.input_names, inputs)))[self.float_output.name]

    def run_quantized(self, inputs: Sequence[np.ndarray]) -> np.ndarray:
        """The quantized op on float ``inputs``, each quantized with the op's own input
        parameters; its output dequantized."""
        if self._quantized_alone is None:
            self._quantized_alone = LiteRTExecutor(
                one_op_graph(self.quantized_graph, self.quantized, [x.shape for x in inputs]),
                description=DEBUG_DESCRIPTION)
        run = self._quantized_alone
        feeds = {name: quantize(x, t.quant, t.dtype) if t.quant is not None else x
                 for name, t, x in zip(run.input_names, run.graph.inputs, inputs)}
        return dequantize(run(feeds)[self.output.name], self.output.quant)


def activation_inputs(op: Op) -> list[Tensor]:
    """The op's non-constant inputs, but its states (variables: the op's own, zeros at each
    run)."""
    return list(dict.fromkeys(t for t in op.inputs if t is not None and not t.is_const
                              and not t.is_variable))


def pair_ops(float_graph: Graph, quantized_graph: Graph) -> list[OpPair]:
    """The quantized ops of ``quantized_graph`` with their float ops, in graph order; ops whose
    float op has a different type or inputs (rewritten by the quantizer) are left out."""
    producers = {t.name: op for op in float_graph.ops for t in op.outputs}
    read = {*quantized_graph.consumers(), *quantized_graph.outputs}
    pairs = []
    for op in quantized_graph.ops:
        float_op, index = None, 0
        if is_quantized(op):
            index = debug_output(op, read)
            name = op.outputs[index].name
            float_op = producers.get(name) or producers.get(_IO_SUFFIX.sub("", name))
        if (float_op is None or float_op.type != op.type
                or len(float_op.outputs) != len(op.outputs)
                or len(activation_inputs(float_op)) != len(activation_inputs(op))):
            continue
        pairs.append(OpPair(op, float_op, float_graph, quantized_graph, index))
    return pairs


def dequantized_inputs(op: Op, values: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The op's non-constant inputs in the quantized model's run, dequantized."""
    return [dequantize(values[t.name], t.quant) for t in activation_inputs(op)]
