"""TF's FakeQuant arithmetic: the ranges a quantization-aware trained model learned.

A FakeQuant op (``FakeQuantWithMinMaxVars``, ``...PerChannel``, ``...Args``) rounds its input
to a grid of ``2^num_bits`` levels (one fewer with ``narrow_range``) over a trained
``[min, max]``, after *nudging* the range so that 0 falls exactly on the grid. The frontend
drops the op: a weight (constant) input is rounded here once (``fake_quant``), an activation
keeps the trained range as an annotation (``Tensor.trained_range``), and those ranges, nudged
as TF nudges them, stand in for calibrated ones (``trained_ranges``), as in TF's converter.
A float32 conversion keeps each activation FakeQuant as a QUANTIZE → DEQUANTIZE pair
(``emulated``), as TF's converter does, so the float model computes what the trained model
computes, its clamping to the trained ranges included.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.quantize import math as qm
from quantkit.quantize.edits import Convert, Edit, SetGraphOutput, SetInput, apply
from quantkit.types import OpType, QuantParams, TrainedRange

_FLOAT = np.dtype(np.float32)


def nudged(rmin: np.ndarray | float, rmax: np.ndarray | float, num_bits: int = 8,
           narrow_range: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TF's nudged range and step: ``s = (max − min) / (q_max − q_min)`` with ``q_min = 1 if
    narrow_range else 0``, ``q_max = 2^num_bits − 1``; zero point ``z = clamp(round(q_min −
    min / s), q_min, q_max)``; nudged ``[(q_min − z)·s, (q_max − z)·s]``. Computed in float32,
    as TF's kernel computes it. Returns (nudged min, nudged max, s), elementwise."""
    qmin, qmax = np.float32(1 if narrow_range else 0), np.float32(2 ** num_bits - 1)
    rmin, rmax = np.asarray(rmin, np.float32), np.asarray(rmax, np.float32)
    scale = ((rmax - rmin) / (qmax - qmin)).astype(np.float32)
    safe = np.where(scale > 0, scale, np.float32(1))
    from_min = qmin - rmin / safe
    zero_point = np.clip(np.floor(from_min + np.float32(0.5)), qmin, qmax).astype(np.float32)
    return (qmin - zero_point) * scale, (qmax - zero_point) * scale, scale


def fake_quant(x: np.ndarray, rmin: np.ndarray | float, rmax: np.ndarray | float,
               num_bits: int = 8, narrow_range: bool = False) -> np.ndarray:
    """``x`` rounded as TF's FakeQuant rounds it: ``c = clamp(x, min', max')`` over the nudged
    range, ``q = ⌊(c − min') / s + ½⌋``, ``r = q·s + min'``. ``rmin``/``rmax`` broadcast against
    ``x``'s last axis (per channel) or are scalars."""
    lo, hi, scale = nudged(rmin, rmax, num_bits, narrow_range)
    x = np.asarray(x, np.float32)
    inverse = np.float32(1) / np.where(scale > 0, scale, np.float32(1))  # TF multiplies by it
    q = np.floor((np.clip(x, lo, hi) - lo) * inverse + np.float32(0.5))
    return np.where(scale > 0, q * scale + lo, np.clip(x, lo, hi)).astype(np.float32)


def trained_ranges(graph: Graph) -> Mapping[str, tuple[float, float]]:
    """The trained range of every annotated tensor, by name (as calibrated ranges are keyed),
    for ``math.activation_params``. A range around 0 is given as trained: the parameters then
    get TF's step ``s = (max − min) / 255`` to the last bit and its nudged zero point
    (``affine_params`` rounds it the same way); the nudged range would give a step one float32
    ulp off, which flips roundings. A range off 0 is given nudged (TF then keeps ``s`` and
    clamps ``z``, where widening it to 0 would change ``s``)."""
    found = {}
    for t in graph.tensors():
        trained: TrainedRange | None = t.trained_range
        if trained is None or t.is_const:
            continue
        if trained.min <= 0.0 <= trained.max and trained.num_bits == 8 \
                and not trained.narrow_range:
            found[t.name] = (float(trained.min), float(trained.max))
        else:
            lo, hi, _ = nudged(trained.min, trained.max, trained.num_bits, trained.narrow_range)
            found[t.name] = (float(lo), float(hi))
    return found


def has_trained_ranges(graphs: list[Graph]) -> bool:
    return any(t.trained_range is not None for g in graphs for t in g.tensors())


def _uint8_params(trained: TrainedRange) -> QuantParams:
    """TF's own step ``s`` and nudged zero point ``z = q_min − min'/s`` (uint8, as TF's
    converter writes a float model's FakeQuant: the scale its kernel rounds with, to the bit)."""
    lo, _, scale = nudged(trained.min, trained.max, trained.num_bits, trained.narrow_range)
    if not scale > 0:
        return qm.activation_params(0.0, 0.0, qm.UINT8)
    qmin = 1 if trained.narrow_range else 0
    zero_point = int(qm.round_half_away(qmin - lo / scale))
    return QuantParams((float(scale),), (int(np.clip(zero_point, 0, 255)),))


def emulated(graph: Graph) -> Graph:
    """A copy of ``graph`` where each tensor with a trained range is read through QUANTIZE →
    DEQUANTIZE at its nudged uint8 parameters: ``r' = s·(clamp(round(r/s) + z, 0, 255) − z)``,
    TF's FakeQuant for 8 bits, as TF's converter writes it (a narrower grid, ``num_bits < 8``,
    is emulated on the 8-bit grid of the same nudged range)."""
    consumers = graph.consumers()
    edits: list[Edit] = []
    for t in graph.tensors():
        if t.trained_range is None or t.is_const or np.dtype(t.dtype) != _FLOAT:
            continue
        params = _uint8_params(t.trained_range)
        stored = Tensor(f"{t.name}/fake_quant", np.dtype(np.uint8), t.shape, quant=params)
        rounded = Tensor(f"{t.name}/fake_quant/float", _FLOAT, t.shape)
        edits += [Convert(Op(OpType.QUANTIZE, [t], [stored], name=t.name)),
                  Convert(Op(OpType.DEQUANTIZE, [stored], [rounded], name=t.name))]
        edits += [SetInput(op, i, rounded) for op in consumers.get(t, [])
                  for i, x in enumerate(op.inputs) if x is t]
        edits += [SetGraphOutput(position, rounded, f"{t.name}/raw")
                  for position, out in enumerate(graph.outputs) if out is t]
    return apply(graph, edits) if edits else graph


def trained_weight_params(w: Tensor, axis: int | None) -> QuantParams | None:
    """A fake-quantized weight's own grid as int8 weight parameters: ``s`` = TF's nudged step
    per channel (along ``axis``) or per tensor, ``z = 0``; its values then quantize exactly.
    None unless the trained range is TFLite's weight grid (8 bits, narrow, symmetric: nudged
    zero point 128) and matches ``axis``."""
    trained = w.trained_range
    if trained is None or trained.num_bits != 8 or not trained.narrow_range:
        return None
    per_channel = isinstance(trained.min, tuple)
    if per_channel != (axis is not None):
        return None
    lo, hi, scale = nudged(np.asarray(trained.min), np.asarray(trained.max), 8, True)
    scale = np.atleast_1d(scale)
    if per_channel and len(scale) != w.shape[axis]:
        return None
    if not np.all(scale > 0) or not np.allclose(np.atleast_1d(lo), -np.atleast_1d(hi)):
        return None
    return QuantParams(tuple(float(s) for s in scale), (0,) * len(scale), axis)
