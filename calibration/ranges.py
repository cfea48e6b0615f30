"""Range setters: a tensor's histogram (``HistogramStats``) → the ``(lo, hi)`` it is quantized to.

Every setter reads the mergeable histogram only (bins of width ``w`` over ``[-R, R)``, with the
exact min and max), so it works on sharded and saved statistics alike. Each value is taken at
its bin's centre ``c_i``, with ``n_i`` values in bin ``i``. A range ``(lo, hi)`` always keeps
``lo ≤ 0 ≤ hi`` within ``[min, max]`` widened to 0 (zero must stay exactly representable).

- ``percentile``: ``observers.percentile_range`` (keep ``p`` % of the values).
- ``mse``: minimise the expected squared quantization error ``E[(x − Q(x))²]`` (``mse_range``).
- ``entropy``: TensorRT's KL-divergence threshold (``entropy_range``).

The automatic per-tensor choice (by the error a range causes downstream, in the quantized
model) needs the model, so it lives with the quantizer (``quantkit.quantize.auto_ranges``).
"""

from __future__ import annotations

import numpy as np

from calibration.observers import HistogramStats
from calibration.types import CalibrationError

INT8_LEVELS = 256  # asymmetric int8: 255 steps between lo and hi
MSE_STEPS = 200  # candidate ranges α·(min, max), α = k / MSE_STEPS
ENTROPY_LEVELS = 128  # TensorRT: symmetric int8 has 128 levels on each side of 0
KL_EPS = 1e-4  # smoothing of Q's empty bins (MXNet's)
ENTROPY_THRESHOLDS = 128  # thresholds tried at most, evenly strided (pytorch-quantization's stride)


def _checked(stats: HistogramStats, method: str) -> np.ndarray:
    if stats.count == 0:
        raise CalibrationError(f"{method} of an empty histogram")
    return np.asarray(stats.counts, np.float64)


def _outer(stats: HistogramStats) -> tuple[float, float]:
    """``[min, max]`` widened to contain 0."""
    return min(stats.min, 0.0), max(stats.max, 0.0)


def bin_centres(stats: HistogramStats) -> np.ndarray:
    """``c_i = −R + (i + ½)·w``, ``w = 2R / B``."""
    edges = stats.bin_edges()
    return (edges[:-1] + edges[1:]) / 2.0


def expected_error(stats: HistogramStats, lo: np.ndarray | float, hi: np.ndarray | float,
                   levels: int = INT8_LEVELS) -> np.ndarray:
    """``E(lo, hi) = Σ_i n_i·e(c_i) / N`` with ``s = (hi − lo) / (levels − 1)`` and

    ``e(c) = (c − hi)²`` for ``c > hi``, ``(lo − c)²`` for ``c < lo`` (clipping), else
    ``s² / 12`` (rounding: uniform on ``[−s/2, s/2]``). Broadcasts over arrays of ranges.
    """
    counts = _checked(stats, "expected_error")
    keep = counts > 0
    c, n = bin_centres(stats)[keep], counts[keep]
    lo = np.asarray(lo, np.float64)[..., None]
    hi = np.asarray(hi, np.float64)[..., None]
    step = (hi - lo) / (levels - 1)
    clip = np.where(c > hi, (c - hi) ** 2, np.where(c < lo, (lo - c) ** 2, step ** 2 / 12.0))
    return (clip * n).sum(axis=-1) / n.sum()


def mse_range(stats: HistogramStats, levels: int = INT8_LEVELS,
              steps: int = MSE_STEPS) -> tuple[float, float]:
    """The range ``α·(min, max)`` minimising ``expected_error`` over ``α = k / steps``,
    ``k = 1 … steps`` (``min``, ``max`` widened to contain 0; the smallest ``α`` wins ties).

    ``α = 1`` is min/max, so the result's expected error is never above min/max's. One ``α``
    for both ends keeps the search one-dimensional; a one-signed tensor (ReLU) has one end.
    """
    _checked(stats, "mse_range")
    low, high = _outer(stats)
    if high - low <= 0.0:
        return low, high
    alphas = np.arange(1, steps + 1, dtype=np.float64) / steps
    errors = expected_error(stats, alphas * low, alphas * high, levels)
    best = alphas[int(np.argmin(errors))]
    return float(best * low), float(best * high)


def folded_counts(stats: HistogramStats) -> np.ndarray:
    """Counts of ``|x|`` in ``B/2`` bins of width ``w``: bin ``j`` holds ``[j·w, (j+1)·w)``
    and its mirror ``[−(j+1)·w, −j·w)``: ``a_j = n_{B/2 + j} + n_{B/2 − 1 − j}``."""
    counts = np.asarray(stats.counts, np.float64)
    half = len(counts) // 2
    return counts[half:] + counts[:half][::-1]


def _kl(p: np.ndarray, q: np.ndarray) -> float:
    """``KL(P‖Q) = Σ p_i·ln(p_i / q_i)`` over ``p_i > 0``, ``P`` and ``Q`` counts normalised
    to sum 1.

    Where ``P > 0 = Q`` (outliers piled onto an empty bin), ``Q``'s counts are smoothed first,
    as MXNet's open implementation of this calibration does: its zero bins get ``KL_EPS``
    and its nonzero bins (each ≥ 1) give that up evenly, so such a threshold costs much, not
    infinitely.
    """
    zero = q == 0
    if np.any(zero & (p > 0)):
        q = np.where(zero, KL_EPS, q - KL_EPS * zero.sum() / (~zero).sum())
    p, q = p / p.sum(), q / q.sum()
    nz = p > 0
    return float(np.sum(p[nz] * np.log(p[nz] / q[nz])))


def kl_at(a: np.ndarray, i: int, levels: int) -> float:
    """TensorRT's divergence for threshold bin ``i`` of the ``|x|`` counts ``a``.

    ``P = a[:i]`` with the outliers ``Σ a[i:]`` added to its last bin; ``Q``: ``a[:i]`` cut
    into ``levels`` consecutive chunks (``i // levels`` bins each, the last chunk takes the
    rest), each chunk's total spread evenly over its nonzero bins. Returns ``KL(P‖Q)``
    (``_kl``: smoothed where ``P > 0 = Q``).
    """
    p = a[:i].copy()
    p[-1] += a[i:].sum()
    q = np.zeros_like(p)
    size = i // levels
    for k in range(levels):
        start, stop = k * size, (i if k == levels - 1 else (k + 1) * size)
        nonzero = a[start:stop] > 0
        if nonzero.any():
            q[start:stop][nonzero] = a[start:stop].sum() / nonzero.sum()
    return _kl(p, q)


def divergences(a: np.ndarray, thresholds: np.ndarray, levels: int) -> np.ndarray:
    """``kl_at(a, i, levels)`` for every ``i`` in ``thresholds`` at once (one row per ``i``)."""
    i = np.asarray(thresholds, np.int64)[:, None]
    j = np.arange(int(i.max()))[None, :]
    inside = j < i
    chunk = np.minimum(j // (i // levels), levels - 1)
    a_j = np.broadcast_to(a[:j.shape[1]], inside.shape) * inside
    tail = np.cumsum(a[::-1])[::-1]  # tail[k] = Σ a[k:]
    p = a_j + np.where(j == i - 1, np.append(tail, 0.0)[i], 0.0)
    index = (np.arange(len(i))[:, None] * levels + chunk)[inside]
    sums = np.bincount(index, a_j[inside], len(i) * levels)
    nonzero = np.bincount(index, (a_j > 0)[inside], len(i) * levels)
    spread = sums / np.maximum(nonzero, 1)
    q = np.where(a_j > 0, spread[np.arange(len(i))[:, None] * levels + chunk], 0.0) * inside
    zero = (q == 0) & inside
    smooth = np.any(zero & (p > 0), axis=1, keepdims=True)
    n_zero, n_nonzero = zero.sum(axis=1, keepdims=True), (inside & ~zero).sum(axis=1, keepdims=True)
    q = np.where(smooth, np.where(zero, KL_EPS, q - KL_EPS * n_zero / np.maximum(n_nonzero, 1)),
                 q) * inside
    p, q = p / p.sum(axis=1, keepdims=True), q / q.sum(axis=1, keepdims=True)
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / np.where(q > 0, q, 1.0)), 0.0)
    return terms.sum(axis=1)


def entropy_range(stats: HistogramStats, levels: int = ENTROPY_LEVELS) -> tuple[float, float]:
    """TensorRT's entropy calibration: the threshold ``T = i·w`` on ``|x|`` that minimises
    ``kl_at(a, i, levels)`` over ``i = levels, levels + k, … ≤ top`` and ``top`` (the bin past
    the largest ``|x|``; stride ``k`` keeps it to ``ENTROPY_THRESHOLDS`` tries; the first ``i``
    wins ties); the range
    is ``(max(min, −T), min(max, T))``, with ``min``, ``max`` widened to contain 0.

    ``levels`` is for symmetric int8 (128 per side); a one-signed tensor (ReLU) uses all 256
    levels of asymmetric int8 on its one side, so it gets ``2·levels``.
    """
    _checked(stats, "entropy_range")
    low, high = _outer(stats)
    if high - low <= 0.0:
        return low, high
    if low == 0.0 or high == 0.0:
        levels *= 2
    a = folded_counts(stats)
    top = int(np.nonzero(a)[0][-1]) + 1  # thresholds above every value all cost 0 clipping
    if top <= levels:
        return low, high
    stride = max(1, (top - levels) // ENTROPY_THRESHOLDS)
    thresholds = np.unique(np.append(np.arange(levels, top + 1, stride), top))
    i = int(thresholds[np.argmin(divergences(a, thresholds, levels))])
    threshold = i * (stats.range_max / len(a))
    return max(low, -threshold), min(high, threshold)
