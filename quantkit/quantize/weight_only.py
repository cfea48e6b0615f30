"""The modes that compress weights only, activations stay float: dynamic range and float16.

**Dynamic range** (``optimizations=[DEFAULT]`` without a representative dataset): the weights
of the ops LiteRT has hybrid kernels for (their spec's ``hybrid``) become symmetric int8 (per
output channel where the kernel takes it); the kernel quantizes its float input on the fly
(asymmetrically, for FULLY_CONNECTED and BATCH_MATMUL, as TF sets it). Weight tensors of fewer than 1024 elements
stay float, as TF keeps them: the saving is small and the error is not. A fused RNN's kernel
reads all its weight matrices as int8 or none (an LSTM's eight gate matrices, per tensor: one
scale per matrix): they are quantized together, only when each is that large, as TF does; its
biases and states stay float.

**float16** (``supported_types=[tf.float16]``): every float32 constant is stored as float16 and
read through a DEQUANTIZE op (LiteRT converts it back to float32 once, at load).

Both reach into the subgraphs a WHILE runs (``nested``): a loop body's weights are compressed
as a flat graph's.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.ops import OPS
from quantkit.quantize import math as qm
from quantkit.quantize.edits import Convert, Edit, SetInput, SetOptions, apply
from quantkit.quantize.schemes import weight_granularity
from quantkit.recipe import OpSettings, Precision
from quantkit.types import ConversionError, ConversionMode, Granularity, OpType, Phase

MIN_ELEMENTS = 1024  # TF's min_elements_for_weights: smaller weights stay float


_FLOAT = np.dtype(np.float32)


def compressed_ops(graph: Graph, settings: OpSettings | None) -> list[Op]:
    """The ops whose weights a weight-only mode compresses: all but those the recipe keeps
    float (int16 is refused: these modes have no integer activations)."""
    settings = settings or {}
    for op, chosen in settings.items():
        if chosen.precision is Precision.INT16:
            raise ConversionError(Phase.QUANTIZATION, f"{op.type.name} op {op.name!r}: the "
                                  "recipe asks for int16, which needs full integer "
                                  "quantization (a representative_dataset)")
    return [op for op in graph.ops
            if op not in settings or settings[op].precision is not Precision.FLOAT]


def plan_dynamic_range(graph: Graph, mode: ConversionMode,
                       settings: OpSettings | None = None) -> list[Edit]:
    """int8 weights (``s = max|w| / 127``, ``z = 0``) for every hybrid op's large weights
    (in the weight granularity the op's ``settings`` ask for)."""
    edits: list[Edit] = []
    quantized: dict[tuple[Tensor, int | None], Tensor] = {}
    for op in compressed_ops(graph, settings):
        spec = OPS.get(op.type)
        rule = spec.hybrid if spec is not None else None
        if rule is None:
            continue
        indices = [i for i in (rule.weights_input, *rule.group)
                   if i < len(op.inputs) and op.inputs[i] is not None]
        if not all(_large_constant(op.inputs[i]) for i in indices):
            continue  # a group is quantized all or none
        per_channel = weight_granularity(mode, op, settings) is Granularity.PER_CHANNEL
        axis = spec.weights.output_axis if per_channel and rule.per_channel else None
        for index in indices:
            w = op.inputs[index]
            key = (w, axis)
            if key not in quantized:
                params = qm.weight_params(w.data, axis)
                data = qm.quantize_weights(w.data, params)
                quantized[key] = Tensor(w.name, data.dtype, w.shape, data, params)
            edits.append(SetInput(op, index, quantized[key]))
        if rule.asymmetric_inputs:
            edits.append(SetOptions(op, dataclasses.replace(op.options,
                                                            asymmetric_quantize_inputs=True)))
    return edits


def _large_constant(w: Tensor) -> bool:
    return w.is_const and w.data.dtype == _FLOAT and w.data.size >= MIN_ELEMENTS


def plan_float16(graph: Graph, mode: ConversionMode,
                 settings: OpSettings | None = None) -> list[Edit]:
    """Each float32 constant read by an op → a float16 constant and one DEQUANTIZE to float32,
    shared by all readers of constants with the same float16 values (as TF shares them)."""
    edits: list[Edit] = []
    dequantized: dict[tuple, Tensor] = {}
    halves: dict[Tensor, tuple[np.ndarray, tuple]] = {}  # constant → (float16 data, key)
    for op in compressed_ops(graph, settings):
        for i, t in enumerate(op.inputs):
            if t is None or not t.is_const or t.data.dtype != _FLOAT:
                continue
            if t not in halves:
                half = t.data.astype(np.float16)
                halves[t] = half, (t.data.shape, half.tobytes())
            half, key = halves[t]
            if key not in dequantized:
                dequantized[key] = Tensor(f"{t.name}/float32", _FLOAT, t.shape)
                source = Tensor(t.name, half.dtype, t.shape, half)
                edits.append(Convert(Op(OpType.DEQUANTIZE, [source], [dequantized[key]],
                                        name=f"{t.name}/dequantize")))
            edits.append(SetInput(op, i, dequantized[key]))
    return edits


def nested(rewrite: Callable[[Graph], Graph], graph: Graph) -> Graph:
    """``rewrite(graph)``, its ops' options referencing ``rewrite`` of the graphs they
    referenced (a WHILE's condition and body), recursively."""
    new = rewrite(graph)
    for op in new.ops:
        if op.options is None:
            continue
        changes = {f.name: nested(rewrite, value) for f in dataclasses.fields(op.options)
                   if isinstance(value := getattr(op.options, f.name), Graph)}
        if changes:
            op.options = dataclasses.replace(op.options, **changes)
    return new


def quantize_dynamic_range(graph: Graph, mode: ConversionMode,
                           settings: OpSettings | None = None) -> Graph:
    """A new graph: ``graph`` with int8 weights on its hybrid ops, loop bodies included
    (``graph`` is unchanged)."""
    return nested(lambda g: apply(g, plan_dynamic_range(g, mode, settings)), graph)


def quantize_float16(graph: Graph, mode: ConversionMode,
                     settings: OpSettings | None = None) -> Graph:
    """A new graph: ``graph`` with float16 constants, loop bodies included (``graph`` is
    unchanged)."""
    return nested(lambda g: apply(g, plan_float16(g, mode, settings)), graph)
