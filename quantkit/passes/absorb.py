"""High-bias absorption (Nagel et al. 2019, "Data-Free Quantization", §4.2), after cross-layer
equalization: a pair's first layer hands the part of its output that is always there to the
second layer's bias, so the tensor between them gets a narrower range.

For a pair ``y = W2·g(ReLU(W1·x + b1)) + b2`` (``g``: the max/average pools, means over space
and flatten ``passes.equalize`` allows between a pair; each commutes with a per-channel shift)
and a vector ``a ≥ 0`` with ``W1·x + b1 ≥ a`` channel-wise on every input,

    ReLU(z − a) + a = ReLU(z)   (z ≥ a ≥ 0),   so
    b1 ← b1 − a,   b2 ← b2 + W2·a

leaves ``y`` unchanged, and the first layer's output channel ``c`` shrinks from
``[a_c, max_c]`` to ``[0, max_c − a_c]``. ``W2·a`` sums each output's weights over the kernel's
positions and the input channels: ``Σ_{i,j,c} W2[o, i, j, c]·a_c`` for CONV_2D,
``Σ_{i,j} W2[0, i, j, c]·a_c`` for DEPTHWISE_CONV_2D, ``Σ_j W2[o, j]·a_{j mod C}`` for
FULLY_CONNECTED (through a flatten).

Which ``a``: DFQ estimates it from the BatchNorm statistics, ``a_c = max(0, β_c − 3γ_c)``,
because it has no data. quantkit has the calibration data, and the pre-activation minimum
is what the ReLU's output shows: ``a_c = max(0, min_data z_c) = min_data ReLU(z_c)``, the
first layer's own output's per-channel minimum over the calibration samples (``minima``).
It is exact on every one of those samples; an input whose ``z_c`` falls below ``a_c`` gets
``a_c`` instead of ``max(z_c, 0)`` (an error of at most ``a_c``), the same approximation
DFQ's three-sigma bound makes.

A second layer without a bias gets one. Skipped (not exact): a first layer not fused with
RELU or without a bias, and a second
CONV_2D or DEPTHWISE_CONV_2D with SAME padding and a kernel larger than 1×1: its zero padding
stands for the shifted value ``−a_c``, not 0, at the border.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.passes.equalize import fused_activation, pairs, replace_constant
from quantkit.types import Activation, OpType, Padding


@dataclass(frozen=True)
class Absorbed:
    """One pair's absorption: the shift ``a`` (per channel of the first layer's output)."""

    first: Op
    second: Op
    shift: np.ndarray


def absorbable(graph: Graph) -> list[tuple[Op, Op]]:
    """The pairs whose first layer's bias may move into the second's (module docstring)."""
    return [(first, second) for first, second in pairs(graph)
            if fused_activation(first) is Activation.RELU and _has_bias(first)
            and _padding_free(second)]


def _has_bias(op: Op) -> bool:
    return len(op.inputs) > 2 and op.inputs[2] is not None and op.inputs[2].is_const


def _padding_free(op: Op) -> bool:
    """``op`` never reads a padded zero: FULLY_CONNECTED, VALID padding or a 1×1 kernel."""
    if op.type == OpType.FULLY_CONNECTED:
        return True
    return op.options.padding == Padding.VALID or op.inputs[1].data.shape[1:3] == (1, 1)


def second_shift(second: Op, a: np.ndarray) -> np.ndarray:
    """``W2·a``: what the second layer's output gains when its input channels gain ``a``."""
    w = second.inputs[1].data.astype(np.float64)
    if second.type == OpType.FULLY_CONNECTED:
        return w @ np.tile(a, w.shape[1] // len(a))
    if second.type == OpType.DEPTHWISE_CONV_2D:
        return w.sum(axis=(0, 1, 2)) * a
    return np.einsum("oijc,c->o", w, a)


def absorb_high_bias(graph: Graph, minima: Mapping[str, np.ndarray]) -> list[Absorbed]:
    """Absorb ``a = max(0, minima[first output])`` of every absorbable pair in place.

    ``minima``: per tensor name, the per-channel (last axis) minimum of that tensor over the
    calibration data, measured on ``graph`` as it is now (the pairs do not disturb each
    other's minima: a second layer's output is unchanged). Pairs without a measured minimum,
    or with nothing to absorb, are left alone."""
    done = []
    for first, second in absorbable(graph):
        measured = minima.get(first.outputs[0].name)
        if measured is None:
            continue
        a = np.maximum(np.asarray(measured, np.float64), 0.0)
        if a.shape != first.inputs[2].data.shape or not np.any(a > 0):
            continue
        replace_constant(first, 2, first.inputs[2].data.astype(np.float64) - a)
        shift = second_shift(second, a)
        if not _has_bias(second):  # a zero bias of the weights' type first
            weights = second.inputs[1]
            zeros = np.zeros(shift.shape, weights.data.dtype)
            bias = Tensor(f"{weights.name}/absorbed_bias", zeros.dtype, zeros.shape, zeros)
            second.inputs[2:] = [bias]
        replace_constant(second, 2, second.inputs[2].data.astype(np.float64) + shift)
        done.append(Absorbed(first, second, a))
    return done
