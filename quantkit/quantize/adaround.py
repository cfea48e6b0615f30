"""AdaRound (Nagel et al. 2020, "Up or Down? Adaptive Rounding for Post-Training
Quantization"): each weight rounded up or down, whichever serves the layer's output on the
calibration data best, instead of to the nearest level (``WeightRounding.ADAROUND``).

With scales ``s_c`` (per output channel ``c``, or one) and ``w̄ = w / s``, a weight's integer
is ``q = ⌊w̄⌋ + h`` with ``h ∈ {0, 1}``. AdaRound relaxes ``h`` to
``h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1)`` (``ζ = 1.1``, ``γ = −0.1``) and minimises, per layer,

    L(V) = Σ_c s_c²·(⌊w̄_c⌋ + h_c − w̄_c)ᵀ G_c (⌊w̄_c⌋ + h_c − w̄_c) / D
           + λ·Σ (1 − |2h − 1|^β),

the first term being ``‖W·x − W̃·x‖²`` over the layer's float inputs ``x`` (``G = Σ x xᵀ / N``,
the inputs' Gram matrix: im2col patches of a CONV_2D, each channel's patches of a
DEPTHWISE_CONV_2D, the rows of a FULLY_CONNECTED; ``D``, the mean of ``s_c²·G_ii``, makes it
per weight), the second pushing each ``h`` to 0 or 1 as ``β`` anneals from 20 to 2 after a
warm-up without it. ``V`` starts where ``h(V) = w̄ − ⌊w̄⌋`` (the float weight), moves by Adam
on the exact full-batch gradient, and the result is ``q = clamp(⌊w̄⌋ + [h(V) ≥ ½], ±qmax)``.
If that rounding's layer error (the first term) is above nearest rounding's, nearest is kept:
the layer's output error never grows.

Deterministic: no random draws (``V`` starts from the weights, the gradient is full-batch) and
a fixed count of ``ITERATIONS``. Time budget per layer: ``ITERATIONS`` steps of
``O(C·K²)`` (``K``: inputs per output), the Gram matrix from at most ``MAX_ROWS`` rows of
inputs (the converter takes the first ``ADAROUND_SAMPLES`` calibration samples).
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable, Mapping

import numpy as np

from quantkit.ir.graph import Op
from quantkit.quantize import math as qm
from quantkit.types import OpType, Padding, QuantParams

ZETA, GAMMA = 1.1, -0.1  # the stretched sigmoid's ends
ITERATIONS = 400
WARMUP = 0.2  # the first share of iterations without the rounding regulariser
BETA = (20.0, 2.0)  # the regulariser's exponent, annealed from the first to the second
LAMBDA = 1.0  # per weight, against the layer error per weight (D); 0.01–1 tried, 1 erred least
LEARNING_RATE = 0.05  # Adam, on V
MAX_ROWS = 8192  # input rows (patches) the Gram matrix is built from, evenly spaced
WEIGHTED = frozenset({OpType.CONV_2D, OpType.DEPTHWISE_CONV_2D, OpType.FULLY_CONNECTED})


def rectified_sigmoid(v: np.ndarray) -> np.ndarray:
    """``h(V) = clip(σ(V)·(ζ − γ) + γ, 0, 1)``."""
    return np.clip((ZETA - GAMMA) / (1.0 + np.exp(-v)) + GAMMA, 0.0, 1.0)


def patches(op: Op, x: np.ndarray) -> np.ndarray:
    """The rows the layer's weights multiply: ``[R, K]`` for CONV_2D (patch order kh, kw,
    cin: the OHWI weights' ``[O, K]``) and FULLY_CONNECTED, ``[R, C, kh·kw]`` for
    DEPTHWISE_CONV_2D (multiplier 1); at most ``MAX_ROWS`` rows, evenly spaced."""
    w = op.inputs[1].data
    if op.type == OpType.FULLY_CONNECTED:
        rows = x.reshape(-1, w.shape[1])
    else:
        o = op.options
        kh, kw = w.shape[1:3]
        x = _padded(x, o.padding, (kh, kw), (o.stride_h, o.stride_w),
                    (o.dilation_h_factor, o.dilation_w_factor))
        out_h = (x.shape[1] - (kh - 1) * o.dilation_h_factor - 1) // o.stride_h + 1
        out_w = (x.shape[2] - (kw - 1) * o.dilation_w_factor - 1) // o.stride_w + 1
        top = [i * o.dilation_h_factor for i in range(kh)]
        left = [j * o.dilation_w_factor for j in range(kw)]
        taps = [x[:, t:t + (out_h - 1) * o.stride_h + 1:o.stride_h,
                  l:l + (out_w - 1) * o.stride_w + 1:o.stride_w] for t in top for l in left]
        stacked = np.stack(taps, axis=-1 if op.type == OpType.DEPTHWISE_CONV_2D else -2)
        rows = stacked.reshape(-1, *stacked.shape[3:])
        if op.type == OpType.CONV_2D:
            rows = rows.reshape(len(rows), -1)
    step = max(1, -(-len(rows) // MAX_ROWS))
    return np.asarray(rows[::step], np.float64)


def _padded(x: np.ndarray, padding: Padding, kernel: tuple[int, int],
            stride: tuple[int, int], dilation: tuple[int, int]) -> np.ndarray:
    """``x`` (NHWC) zero-padded as TFLite's SAME does (the extra row/column after)."""
    if padding != Padding.SAME:
        return x
    pads = [(0, 0)]
    for size, k, s, d in zip(x.shape[1:3], kernel, stride, dilation):
        out = -(-size // s)
        total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, pads + [(0, 0)])


def gram(op: Op, x: np.ndarray) -> np.ndarray:
    """``G = Σ x xᵀ / R`` over ``patches``: ``[K, K]``, or ``[C, K, K]`` for depthwise."""
    rows = patches(op, x)
    if op.type == OpType.DEPTHWISE_CONV_2D:
        return np.einsum("rck,rcl->ckl", rows, rows) / len(rows)
    return rows.T @ rows / len(rows)


def _rows(op: Op, w: np.ndarray) -> np.ndarray:
    """The weights as ``[C, K]`` (output channel, the inputs it multiplies)."""
    if op.type == OpType.DEPTHWISE_CONV_2D:
        return w.reshape(-1, w.shape[3]).T
    return w.reshape(w.shape[0], -1)


def _from_rows(op: Op, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return rows.T.reshape(shape) if op.type == OpType.DEPTHWISE_CONV_2D else rows.reshape(shape)


def layer_error(delta: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``Σ_c δ_cᵀ G_c δ_c`` per row ``c`` of ``delta`` (``[C, K]``; ``G`` shared or per row)."""
    gd = delta @ g if g.ndim == 2 else np.einsum("ckl,cl->ck", g, delta)
    return np.einsum("ck,ck->c", gd, delta)


def adaround_rows(w: np.ndarray, scales: np.ndarray, g: np.ndarray, qmax: int,
                  nearest: np.ndarray | None = None, iterations: int = ITERATIONS
                  ) -> np.ndarray:
    """The integers ``q`` (``[C, K]``) of weights ``w`` (``[C, K]``) with per-row ``scales``
    and the inputs' Gram matrix ``g`` (module docstring); a row keeps ``nearest`` (default:
    ``clamp(round(w / s), ±qmax)``) where that errs less."""
    s = np.asarray(scales, np.float64)[:, None]
    ratio = np.asarray(w, np.float64) / s
    floor = np.floor(ratio)
    rest = ratio - floor
    free = (floor >= -qmax) & (floor + 1 <= qmax)  # both neighbours are levels
    norm = float(np.mean(s[:, 0] ** 2 * np.mean(np.diagonal(g, axis1=-2, axis2=-1), axis=-1)))
    weight = s ** 2 / max(norm, 1e-30)
    v = _optimise(rest, weight, g, free, iterations)
    learned = np.clip(floor + (rectified_sigmoid(v) >= 0.5), -qmax, qmax)
    if nearest is None:
        nearest = np.clip(qm.round_half_away(ratio), -qmax, qmax)
    keep = layer_error((learned - ratio) * s, g) <= layer_error((nearest - ratio) * s, g)
    return np.where(keep[:, None], learned, nearest)


def _optimise(rest: np.ndarray, weight: np.ndarray, g: np.ndarray, free: np.ndarray,
              iterations: int) -> np.ndarray:
    """``V`` after ``iterations`` Adam steps on ``L(V)`` (module docstring), from
    ``h(V) = rest``; in float32 (the layer error is compared in float64 after)."""
    f32 = np.float32
    times = _product(g)
    rest, weight = rest.astype(f32), weight.astype(f32)
    p = np.clip((rest - GAMMA) / (ZETA - GAMMA), 1e-4, 1 - 1e-4)
    v = np.log(p / (1 - p)).astype(f32)
    m, u = np.zeros_like(v), np.zeros_like(v)
    warm = int(WARMUP * iterations)
    for step in range(iterations):
        sig = 1 / (1 + np.exp(-v))
        h = np.clip(sig * f32(ZETA - GAMMA) + f32(GAMMA), 0, 1)
        delta = h - rest
        grad_h = (2 * weight) * times(delta)
        if step >= warm:
            beta = BETA[1] + (BETA[0] - BETA[1]) * (
                1 - (step - warm) / max(iterations - warm - 1, 1))
            centred = 2 * h - 1
            grad_h -= f32(LAMBDA * 2 * beta) * np.abs(centred) ** f32(beta - 1) * np.sign(centred)
        inside = (h > 0) & (h < 1) & free
        grad = np.where(inside, grad_h * f32(ZETA - GAMMA) * sig * (1 - sig), f32(0))
        m = f32(0.9) * m + f32(0.1) * grad
        u = f32(0.999) * u + f32(0.001) * grad * grad
        v -= f32(LEARNING_RATE) * (m / f32(1 - 0.9 ** (step + 1))) / (
            np.sqrt(u / f32(1 - 0.999 ** (step + 1))) + f32(1e-8))
    return v


def _product(g: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """``δ ↦ δ·G`` per row, float32. A shared ``G`` of low rank (a dense layer fed fewer
    samples than it has inputs) is applied as ``(δ·Fᵀ)·F`` with ``G = FᵀF`` from its
    eigenvectors (eigenvalues under ``1e-7`` of the largest dropped): fewer operations."""
    if g.ndim == 3:
        g32 = g.astype(np.float32)
        return lambda delta: (g32 @ delta[:, :, None])[:, :, 0]
    values, vectors = np.linalg.eigh(g)
    kept = values > 1e-7 * max(values.max(initial=0.0), 1e-30)
    if 2 * kept.sum() >= len(g):
        g32 = g.astype(np.float32)
        return lambda delta: delta @ g32
    factor = (vectors[:, kept] * np.sqrt(values[kept])).T.astype(np.float32)
    return lambda delta: (delta @ factor.T) @ factor


def adaround_weights(op: Op, params: QuantParams, g: np.ndarray,
                     storage: qm.Storage = qm.INT8_WEIGHTS) -> np.ndarray:
    """``op``'s weights rounded by AdaRound with ``params`` (symmetric, per output channel
    or per tensor), as ``storage``'s integers in the weights' layout."""
    w = op.inputs[1].data
    rows = _rows(op, w.astype(np.float64))
    scales = np.broadcast_to(np.asarray(params.scales, np.float64), (len(rows),))
    nearest = _rows(op, qm.quantize_weights(w, params, storage).astype(np.float64))
    q = adaround_rows(rows, scales, g, storage.qmax, nearest)
    return _from_rows(op, q, w.shape).astype(storage.dtype)


class AdaRound:
    """Rounds weighted ops' weights by AdaRound on their recorded float inputs (a
    ``WeightRounder`` for ``quantize_integer``); each result is kept (``Optimize.ACCURACY``'s
    range search quantizes the same weights many times)."""

    def __init__(self, inputs: Mapping[str, np.ndarray], ops: Iterable[Op] | None = None):
        self.inputs = inputs  # activation tensor name → its values on the calibration samples
        self.ops = None if ops is None else set(ops)  # the ops to round (None: every one)
        self._grams: dict[tuple, np.ndarray] = {}
        self._done: dict[tuple, np.ndarray] = {}

    def __call__(self, op: Op, params: QuantParams, storage: qm.Storage) -> np.ndarray | None:
        """``op``'s integer weights, or None (nearest rounding) when it is not a weighted op
        with symmetric weights whose inputs were recorded."""
        x = self.inputs.get(op.inputs[0].name) if op.inputs else None
        if x is None or op.type not in WEIGHTED or (self.ops is not None and op not in self.ops) or not storage.symmetric \
                or any(z != 0 for z in params.zero_points) \
                or (op.type == OpType.DEPTHWISE_CONV_2D
                    and op.inputs[1].data.shape[3] != x.shape[-1]):  # a depth multiplier
            return None
        w = op.inputs[1].data
        digest = hashlib.blake2b(np.ascontiguousarray(w).tobytes(), digest_size=16).digest()
        key = (op.inputs[0].name, digest, w.shape, params, storage.qmax)
        if key not in self._done:
            gram_key = (op.inputs[0].name, op.type, w.shape, op.options)
            if gram_key not in self._grams:
                self._grams[gram_key] = gram(op, x)
            self._done[key] = adaround_weights(op, params, self._grams[gram_key], storage)
        return self._done[key]
