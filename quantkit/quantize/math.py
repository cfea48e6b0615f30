"""The quantization arithmetic of the TFLite quantization specs, in numpy.

Every quantized value ``q`` stands for the real value ``r = s·(q − z)`` (scale ``s > 0``, zero
point ``z``). In the int8 spec, activations are asymmetric per-tensor int8 in [−128, 127];
weights are symmetric int8 in [−127, 127] with ``z = 0``, per output channel by default; biases
are int32 with ``s = s_input·s_weight`` and ``z = 0``. The int16x8 spec stores activations as
symmetric int16 (``z = 0``) and biases as int64; legacy uint8 models store activations and
weights as asymmetric uint8 in [0, 255]. A ``Storage`` names each of these integer ranges.
Scales are stored as float32, so each scale is rounded to float32 *before* values are quantized
with it: the file and the data always agree.

This module knows nothing about graphs; ``quantize.plan`` calls it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from quantkit.ops.spec import BiasCorrection
from quantkit.types import QuantParams, TensorType

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
WEIGHT_QMAX = 127  # symmetric weights use [−127, 127]: −128 is never produced


@dataclass(frozen=True)
class Storage:
    """An integer range values are stored in: ``qmin ≤ q ≤ qmax`` in ``dtype``; symmetric
    storage always has ``z = 0``. ``headroom``: how much wider than the calibrated range an
    activation's representable range is made."""

    dtype: np.dtype
    qmin: int
    qmax: int
    symmetric: bool
    headroom: float = 1.0


INT8 = Storage(np.dtype(np.int8), -128, 127, symmetric=False)
# int16 activations keep one bit of headroom: values beyond what the calibration data reached
# then saturate far less often (on the small test CNNs, tested on other data, +3…+16 dB), and
# the step it costs (2 / 32767 of the range) stays far below int8 weights' rounding error.
INT16 = Storage(np.dtype(np.int16), -32767, 32767, symmetric=True, headroom=2.0)  # z = 0
UINT8 = Storage(np.dtype(np.uint8), 0, 255, symmetric=False)
INT8_WEIGHTS = Storage(np.dtype(np.int8), -WEIGHT_QMAX, WEIGHT_QMAX, symmetric=True)
UINT8_WEIGHTS = Storage(np.dtype(np.uint8), 0, 255, symmetric=False)
INT32_BIAS = Storage(np.dtype(np.int32), INT32_MIN, INT32_MAX, symmetric=True)
INT64_BIAS = Storage(np.dtype(np.int64), -(2**63), 2**63 - 1, symmetric=True)
BIAS_STORAGE = {TensorType.INT32: INT32_BIAS, TensorType.INT64: INT64_BIAS}


def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, ties away from zero (``std::round``, what TFLite's kernels use).

    ``round(2.5) = 3``, ``round(−2.5) = −3`` (numpy's ``np.round`` would give 2 and −2).
    """
    x = np.asarray(x, np.float64)
    magnitude = np.abs(x)
    floor = np.floor(magnitude)
    return np.copysign(floor + (magnitude - floor >= 0.5), x)


def affine_params(rmin: float, rmax: float, qmin: int = INT8_MIN, qmax: int = INT8_MAX,
                  min_scale: float = 0.0) -> tuple[float, int]:
    """Scale and zero point that map ``[rmin, rmax]`` onto ``[qmin, qmax]``.

    The range is first widened to contain 0 (``rmin ≤ 0 ≤ rmax``) so that 0 is exactly
    representable; then ``s = (rmax − rmin) / (qmax − qmin)`` and
    ``z = clamp(round(qmin − rmin / s), qmin, qmax)``. A range of width 0 (an all-zero tensor)
    gets ``s = 1, z = 0`` clamped into ``[qmin, qmax]``: every value quantizes to ``z`` and
    dequantizes to 0. ``min_scale`` floors the scale of a nonzero range.
    """
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    if not (np.isfinite(rmin) and np.isfinite(rmax)):
        raise ValueError(f"range [{rmin}, {rmax}] is not finite")
    if rmax - rmin <= 0.0:
        return 1.0, int(min(max(0, qmin), qmax))
    scale = float(np.float32((rmax - rmin) / (qmax - qmin)))
    if scale == 0.0:  # a range too narrow for float32 behaves as all-zero
        return 1.0, int(min(max(0, qmin), qmax))
    scale = max(scale, min_scale)
    zero_point = round_half_away(qmin - rmin / scale)
    return scale, int(np.clip(zero_point, qmin, qmax))


def symmetric_scales(w: np.ndarray, axis: int | None, qmax: int = WEIGHT_QMAX) -> np.ndarray:
    """Per-channel (along ``axis``) or per-tensor (``axis=None``) scales ``s = max|w| / qmax``.

    A channel whose weights are all zero gets ``s = 1`` (any positive scale represents it
    exactly, and 1 keeps the bias scale ``s_input·s`` usable). Returned as float32.
    """
    w = np.asarray(w, np.float32)
    if axis is None:
        peak = np.array([np.abs(w).max(initial=0.0)])
    else:
        others = tuple(d for d in range(w.ndim) if d != axis % w.ndim)
        peak = np.abs(w).max(axis=others, initial=0.0)
    scales = (peak.astype(np.float64) / qmax).astype(np.float32)
    return np.where(scales > 0, scales, np.float32(1.0))


def _broadcastable(params: QuantParams, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Scales (the stored float32 values, as float64) and zero points, shaped to broadcast
    along ``params.axis`` of an ``ndim``-d tensor (scalars-like for per-tensor params)."""
    scales = np.asarray(params.scales, np.float32).astype(np.float64)
    zeros = np.asarray(params.zero_points, np.float64)
    if params.axis is not None:
        shape = [1] * ndim
        shape[params.axis] = -1
        scales, zeros = scales.reshape(shape), zeros.reshape(shape)
    return scales, zeros


def _as_float(bound: int) -> float:
    """``bound`` as a float64 no farther from zero than it (int64's 2^63 − 1 is not a float64:
    it would round up to 2^63 and overflow the cast back)."""
    value = float(bound)
    return value if abs(value) <= abs(bound) else float(np.nextafter(value, 0.0))


def quantize(r: np.ndarray, params: QuantParams, qmin: int, qmax: int,
             dtype: np.dtype) -> np.ndarray:
    """``q = clamp(round(r / s) + z, qmin, qmax)``, per-tensor or along ``params.axis``."""
    r = np.asarray(r, np.float64)
    scales, zeros = _broadcastable(params, r.ndim)
    q = round_half_away(r / scales) + zeros
    return np.asarray(np.clip(q, _as_float(qmin), _as_float(qmax)), dtype).reshape(r.shape)


def dequantize(q: np.ndarray, params: QuantParams) -> np.ndarray:
    """``r = s·(q − z)`` (float32), per-tensor or along ``params.axis``."""
    q = np.asarray(q, np.float64)
    scales, zeros = _broadcastable(params, q.ndim)
    return np.asarray(scales * (q - zeros), np.float32).reshape(q.shape)


def activation_params(rmin: float, rmax: float, storage: Storage = INT8,
                      min_scale: float = 0.0) -> QuantParams:
    """Per-tensor parameters for an activation observed in ``[rmin, rmax]``, widened by the
    storage's headroom ``h``: asymmetric (``affine_params`` of ``[h·rmin, h·rmax]``), or for
    symmetric storage ``s = h·max(|rmin|, |rmax|) / qmax, z = 0`` (1 for an all-zero range);
    never below ``min_scale`` otherwise."""
    if storage.symmetric:
        peak = storage.headroom * max(abs(float(rmin)), abs(float(rmax)))
        if not np.isfinite(peak):
            raise ValueError(f"range [{rmin}, {rmax}] is not finite")
        scale = float(np.float32(peak / storage.qmax))
        return QuantParams((max(scale, min_scale) if scale > 0 else 1.0,), (0,))
    rmin, rmax = storage.headroom * rmin, storage.headroom * rmax
    scale, zero_point = affine_params(rmin, rmax, storage.qmin, storage.qmax, min_scale)
    return QuantParams((scale,), (zero_point,))


def weight_params(w: np.ndarray, axis: int | None,
                  storage: Storage = INT8_WEIGHTS) -> QuantParams:
    """Weight parameters per channel along ``axis`` or per tensor: symmetric
    (``s = max|w| / qmax``, ``z = 0``), or asymmetric over ``[min(w), max(w)]`` (legacy uint8,
    per tensor)."""
    if storage.symmetric:
        scales = symmetric_scales(w, axis, storage.qmax)
        return QuantParams(tuple(float(s) for s in scales), (0,) * len(scales), axis)
    w = np.asarray(w, np.float32)
    scale, zero_point = affine_params(w.min(initial=0.0), w.max(initial=0.0), storage.qmin,
                                      storage.qmax)
    return QuantParams((scale,), (zero_point,))


def quantize_weights(w: np.ndarray, params: QuantParams,
                     storage: Storage = INT8_WEIGHTS) -> np.ndarray:
    """``q = clamp(round(w / s) + z, qmin, qmax)`` (int8 weights: [−127, 127], z = 0)."""
    return quantize(w, params, storage.qmin, storage.qmax, storage.dtype)


def bias_params(input_params: QuantParams, weight: QuantParams) -> QuantParams:
    """``s_bias[c] = s_input · s_weight[c]``, ``z = 0``, on the weights' channel axis.

    The product is taken in float64 and then rounded to float32, as TFLite's kernels recompute
    and compare it (they allow a relative difference of 1e-6).
    """
    (s_in,) = input_params.scales
    scales = tuple(float(np.float32(np.float64(np.float32(s_in)) * np.float64(np.float32(s))))
                   for s in weight.scales)
    return QuantParams(scales, (0,) * len(scales), 0 if weight.axis is not None else None)


def quantize_bias(b: np.ndarray, params: QuantParams,
                  storage: Storage = INT32_BIAS) -> np.ndarray:
    """``q = clamp(round(b / s), qmin, qmax)``: int32, or int64 for int16x8 models."""
    return quantize(b, params, storage.qmin, storage.qmax, storage.dtype)


def requantized(params: QuantParams, zero_point_shift: int) -> QuantParams:
    """The same scales with the zero point moved by ``zero_point_shift``: int8 ↔ uint8 is +128,
    so ``q_uint8 = q_int8 + 128`` stands for the same real value."""
    return QuantParams(params.scales, tuple(z + zero_point_shift for z in params.zero_points),
                       params.axis)


def quantize_activation(r: np.ndarray, params: QuantParams,
                        storage: Storage = INT8) -> np.ndarray:
    """``q = clamp(round(r / s) + z, qmin, qmax)`` (a constant read as an activation)."""
    return quantize(r, params, storage.qmin, storage.qmax, storage.dtype)


def _fc_error(delta: np.ndarray, mean: np.ndarray) -> np.ndarray | None:
    """``Σ_i ΔW[o, i]·E[x_i]`` for ``[O, I]`` weights."""
    return delta @ mean if delta.shape[1] == mean.size else None


def _conv_error(delta: np.ndarray, mean: np.ndarray) -> np.ndarray | None:
    """``Σ_{h,w,i} ΔW[o, h, w, i]·E[x_{g·I + i}]`` for OHWI weights in ``G`` groups."""
    if mean.size % delta.shape[3]:
        return None
    groups = mean.size // delta.shape[3]
    if delta.shape[0] % groups:
        return None
    per_tap = delta.sum(axis=(1, 2)).reshape(groups, -1, delta.shape[3])  # [G, O/G, I]
    return np.einsum("goi,gi->go", per_tap, mean.reshape(groups, -1)).reshape(-1)


def _depthwise_error(delta: np.ndarray, mean: np.ndarray) -> np.ndarray | None:
    """``Σ_{h,w} ΔW[0, h, w, c·m + k]·E[x_c]`` for ``[1, H, W, C·m]`` weights."""
    if delta.shape[3] % mean.size:
        return None
    multiplier = delta.shape[3] // mean.size
    return delta.sum(axis=(0, 1, 2)) * np.repeat(mean, multiplier)


_WEIGHT_ERRORS = {BiasCorrection.FC: _fc_error, BiasCorrection.CONV: _conv_error,
                  BiasCorrection.DEPTHWISE: _depthwise_error}


def weight_error_bias(kind: BiasCorrection, w: np.ndarray, w_params: QuantParams,
                      input_mean: np.ndarray,
                      storage: Storage = INT8_WEIGHTS,
                      quantized: np.ndarray | None = None) -> np.ndarray | None:
    """The mean error the weights' rounding adds to each output channel (bias correction).

    ``E[ŷ − y] = Σ (Ŵ − W)·E[x]`` with ``Ŵ = s·q`` the dequantized weights and ``E[x]`` the
    per-channel mean of the input, taken as constant over space. Subtracting it from the
    float bias before quantizing removes the systematic part of the error (it matters where
    inputs are far from zero-mean, e.g. a normalization folded into the first convolution).
    ``kind``: how the op's weights are laid out (its spec's ``bias_correction``: CONV is OHWI,
    grouped when the input has a multiple of I channels; DEPTHWISE ``[1, H, W, C·m]``; FC
    ``[O, I]``). None when the shapes do not fit or the kind has no correction (the bias is
    then left as it is). ``quantized``: ``quantize_weights(w, w_params, storage)`` where the
    caller already has it (computed here when None).
    """
    error = _WEIGHT_ERRORS.get(kind)
    if error is None:
        return None
    if quantized is None:
        quantized = quantize_weights(w, w_params, storage)
    delta = dequantize(quantized, w_params).astype(np.float64) - w
    return error(delta, np.asarray(input_mean, np.float64))
