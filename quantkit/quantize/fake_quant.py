"""TF's FakeQuant arithmetic: the ranges a quantization-aware trained model learned.

A FakeQuant op (``FakeQuantWithMinMaxVars``, ``...PerChannel``, ``...Args``) rounds its input
to a grid of ``2^num_bits`` levels (one fewer with ``narrow_range``) over a trained
``[min, max]``, after *nudging* the range so that 0 falls exactly on the grid. The frontend
drops the op: a weight (constant) input is rounded here once (``fake_quant``), an activation
keeps the trained range as an annotation (``Tensor.trained_range``), and those ranges, nudged
as TF nudges them, stand in for calibrated ones (``trained_ranges``), as in TF's converter.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from quantkit.ir.graph import Graph
from quantkit.types import TrainedRange


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
    """The nudged trained range of every annotated tensor, by name (as calibrated ranges are
    keyed)."""
    found = {}
    for t in graph.tensors():
        trained: TrainedRange | None = t.trained_range
        if trained is not None and not t.is_const:
            lo, hi, _ = nudged(trained.min, trained.max, trained.num_bits, trained.narrow_range)
            found[t.name] = (float(lo), float(hi))
    return found


def has_trained_ranges(graphs: list[Graph]) -> bool:
    return any(t.trained_range is not None for g in graphs for t in g.tensors())
