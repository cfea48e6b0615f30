"""MSE-optimal weight clipping: per-channel (or per-tensor) scales that trade clipping for
rounding error, for ``Optimize.ACCURACY`` (``quantize.rewire`` calls it for symmetric weights).

Min/max scales ``s = max|w| / qmax`` never clip but waste levels on a channel's few largest
weights; a slightly smaller scale clips those and rounds every other weight more finely.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import numpy as np

from quantkit.quantize import math as qm
from quantkit.types import QuantParams

CLIP_STEPS = 20  # candidate scales α·max|w| / qmax, α from CLIP_LOWEST to 1
CLIP_LOWEST = 0.5
CACHE_SIZE = 4096  # weights whose scales are kept (Optimize.ACCURACY quantizes many times)
_cache: OrderedDict[tuple, np.ndarray] = OrderedDict()


def clipping_error(w: np.ndarray, scales: np.ndarray, qmax: int) -> np.ndarray:
    """``Σ_j (w_cj − s_c·clamp(round(w_cj / s_c), −qmax, qmax))²`` per row ``c`` of ``w``
    (``[C, K]``) for scales ``s`` (``[C]``; float32 values, as stored), in float32.

    ``round`` here breaks exact ties to even (``np.rint``, 10× faster than the quantizer's
    ties-away ``math.round_half_away``): the two differ only on weights exactly halfway
    between levels, which moves the error by less than any scale choice does.
    """
    w = np.asarray(w, np.float32)
    s = np.asarray(scales, np.float32)[:, None]
    q = np.clip(np.rint(w / s), -qmax, qmax)
    return np.einsum("ij,ij->i", w - s * q, w - s * q, dtype=np.float64)


def mse_scales(w: np.ndarray, axis: int | None, qmax: int = qm.WEIGHT_QMAX,
               steps: int = CLIP_STEPS, lowest: float = CLIP_LOWEST) -> np.ndarray:
    """Per-channel (along ``axis``) or per-tensor scales ``s_c = α_c·max|w_c| / qmax``, with
    ``α_c`` minimising ``clipping_error`` over ``α = lowest + (1 − lowest)·k / steps``,
    ``k = 0 … steps`` (``α = 1``, min/max, wins ties, so the error is never above
    min/max's). All-zero channels keep ``s = 1``, as ``math.symmetric_scales``. float32."""
    w = np.asarray(w, np.float32)
    rows = (w.reshape(1, -1) if axis is None
            else np.moveaxis(w, axis % w.ndim, 0).reshape(w.shape[axis], -1))
    peak = np.abs(rows).max(axis=1, initial=0.0)
    alphas = lowest + (1.0 - lowest) * np.arange(steps, -1, -1) / steps  # 1 first: ties → 1
    best_err = np.full(len(rows), np.inf)
    best = np.ones(len(rows), np.float32)
    for alpha in alphas:
        s = (alpha * peak / qmax).astype(np.float32)
        s = np.where(s > 0, s, np.float32(1.0))
        err = clipping_error(rows, s, qmax)
        better = err < best_err
        best_err, best = np.where(better, err, best_err), np.where(better, s, best)
    return best.astype(np.float32)


def mse_weight_params(w: np.ndarray, axis: int | None,
                      storage: qm.Storage = qm.INT8_WEIGHTS) -> QuantParams:
    """Symmetric weight parameters (``z = 0``) with ``mse_scales`` (kept per weights' bytes,
    axis and storage: Optimize.ACCURACY's range search quantizes the same weights often)."""
    data = np.ascontiguousarray(w)
    key = (hashlib.blake2b(data.tobytes(), digest_size=16).digest(), data.shape,
           data.dtype.str, axis, storage.qmax)
    if key in _cache:
        _cache.move_to_end(key)
        scales = _cache[key]
    else:
        scales = _cache[key] = mse_scales(data, axis, storage.qmax)
        if len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return QuantParams(tuple(float(s) for s in scales), (0,) * len(scales), axis)
