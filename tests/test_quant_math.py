"""Golden cases for the quantization math, each worked out by hand (in the comments), not by
the code under test. Scales are chosen as exact binary fractions where a tie is being tested,
so float32 rounding of the scale cannot hide the case."""

from __future__ import annotations

import numpy as np
import pytest

from quantkit.ops import BiasCorrection
from quantkit.quantize import math as qm
from quantkit.types import QuantParams


@pytest.mark.parametrize("x, expected", [
    (0.5, 1.0), (1.5, 2.0), (2.5, 3.0),  # ties go away from zero (np.round: 0, 2, 2)
    (-0.5, -1.0), (-2.5, -3.0),
    (0.49999997, 0.0), (2.4999998, 2.0), (-2.5000002, -3.0),
    (0.0, 0.0),
])
def test_round_half_away_from_zero(x, expected):
    assert qm.round_half_away(np.array([x]))[0] == expected


@pytest.mark.parametrize("rmin, rmax, scale, zero_point", [
    # [-1, 3]: s = 4/255; z = round(-128 + 1/s) = round(-128 + 63.75) = round(-64.25) = -64
    (-1.0, 3.0, 4 / 255, -64),
    # [2, 5] widened to [0, 5] so 0 is exact: s = 5/255, z = -128
    (2.0, 5.0, 5 / 255, -128),
    # [-6, -2] widened to [-6, 0]: s = 6/255, z = round(-128 + 255) = 127
    (-6.0, -2.0, 6 / 255, 127),
    # a constant tensor, min == max == 3: [0, 3], s = 3/255, z = -128
    (3.0, 3.0, 3 / 255, -128),
    # all zero: width 0 → s = 1, z = 0 (every value is 0, no division by zero)
    (0.0, 0.0, 1.0, 0),
    # tie in the zero point: s = 0.125 exactly (range 31.875 = 255·0.125),
    # z = -128 + 0.4375/0.125 = -128 + 3.5 = -124.5 → -125 (ties away; np.round gives -124)
    (-0.4375, 31.4375, 0.125, -125),
])
def test_activation_params(rmin, rmax, scale, zero_point):
    params = qm.activation_params(rmin, rmax)
    assert params.scales == (pytest.approx(scale, rel=1e-7),)
    assert params.zero_points == (zero_point,)
    assert params.axis is None


def test_activation_params_reject_non_finite_ranges():
    with pytest.raises(ValueError, match="not finite"):
        qm.activation_params(0.0, float("inf"))


def test_zero_is_exactly_representable():
    # [-1, 3] → s = 4/255, z = -64: q(0) = -64 and r(-64) = s·(−64 − (−64)) = 0 exactly
    params = qm.activation_params(-1.0, 3.0)
    q = qm.quantize_activation(np.array([0.0]), params)
    assert q[0] == -64
    assert qm.dequantize(q, params)[0] == 0.0


def test_quantize_activation_ties_and_saturation():
    # s = 0.5, z = 0: 0.25/0.5 = 0.5 → 1; -0.25 → -1; 0.75 → 1.5 → 2; 100 → 200 → 127;
    # -100 → -200 → -128
    params = QuantParams((0.5,), (0,))
    r = np.array([0.25, -0.25, 0.75, 100.0, -100.0])
    np.testing.assert_array_equal(qm.quantize_activation(r, params), [1, -1, 2, 127, -128])


def test_quantize_activation_with_zero_point():
    # s = 0.5, z = 10: q = round(r/0.5) + 10: 1.0 → 12, -5.25 → round(-10.5) + 10 = -11 + 10 = -1
    params = QuantParams((0.5,), (10,))
    np.testing.assert_array_equal(qm.quantize_activation(np.array([1.0, -5.25]), params), [12, -1])


def test_all_zero_tensor_quantizes_to_the_zero_point():
    params = qm.activation_params(0.0, 0.0)
    q = qm.quantize_activation(np.zeros(4), params)
    np.testing.assert_array_equal(q, [0, 0, 0, 0])
    np.testing.assert_array_equal(qm.dequantize(q, params), [0.0, 0.0, 0.0, 0.0])


def test_dequantize():
    # s = 0.5, z = -128: r = 0.5·(q + 128): -128 → 0, 0 → 64, 127 → 127.5
    q = np.array([-128, 0, 127], np.int8)
    np.testing.assert_array_equal(qm.dequantize(q, QuantParams((0.5,), (-128,))), [0, 64, 127.5])


def test_weights_per_tensor_symmetric_ties_and_range():
    # max|w| = 127 → s = 1 exactly; -63.5 → -64 (tie away), 0.5 → 1 (tie away)
    w = np.array([127.0, -63.5, 0.5, -127.0], np.float32)
    params = qm.weight_params(w, axis=None)
    assert params == QuantParams((1.0,), (0,), None)
    np.testing.assert_array_equal(qm.quantize_weights(w, params), [127, -64, 1, -127])


def test_weights_never_use_minus_128():
    # symmetric range [-127, 127]: the most negative weight maps to -127
    w = np.array([-2.0, 1.0], np.float32)
    q = qm.quantize_weights(w, qm.weight_params(w, axis=None))
    assert q.min() == -127


def test_weights_per_channel_scales_and_zero_channel():
    # channel 0: max|w| = 254 → s = 2; channel 1 all zero → s = 1 (not 0: no division by zero);
    # channel 2: max|w| = 12.7 → s = 0.1 (as float32)
    w = np.array([[254.0, -3.0], [0.0, 0.0], [12.7, -12.7]], np.float32)
    params = qm.weight_params(w, axis=0)
    assert params.axis == 0 and params.zero_points == (0, 0, 0)
    assert params.scales[:2] == (2.0, 1.0)
    assert params.scales[2] == pytest.approx(0.1, rel=1e-7)
    # -3/2 = -1.5 → -2 (tie away)
    np.testing.assert_array_equal(qm.quantize_weights(w, params),
                                  [[127, -2], [0, 0], [127, -127]])


def test_weights_per_channel_on_the_last_axis():
    # depthwise filters [1, H, W, C]: channels on axis 3; channel 0 max 1.27, channel 1 max 254
    w = np.zeros((1, 1, 2, 2), np.float32)
    w[0, 0, :, 0] = [1.27, -0.5]
    w[0, 0, :, 1] = [254.0, 127.0]
    params = qm.weight_params(w, axis=3)
    assert len(params.scales) == 2 and params.axis == 3
    assert params.scales[1] == 2.0
    np.testing.assert_array_equal(qm.quantize_weights(w, params)[0, 0, :, 1], [127, 64])


def test_bias_scale_is_input_scale_times_weight_scale():
    # s_in = 0.5, s_w = (0.25, 2) → s_b = (0.125, 1); b = (1, -2.5) → (8, -3: tie away)
    b_params = qm.bias_params(QuantParams((0.5,), (3,)), QuantParams((0.25, 2.0), (0, 0), 0))
    assert b_params == QuantParams((0.125, 1.0), (0, 0), 0)
    np.testing.assert_array_equal(qm.quantize_bias(np.array([1.0, -2.5]), b_params), [8, -3])


def test_bias_saturates_at_int32():
    params = QuantParams((1e-6,), (0,))
    q = qm.quantize_bias(np.array([1e12, -1e12]), params)
    assert q.dtype == np.int32
    np.testing.assert_array_equal(q, [2**31 - 1, -(2**31)])


def test_uint8_is_int8_shifted_by_128():
    # the same real value: q_uint8 = q_int8 + 128, so z moves from -64 to 64
    params = QuantParams((4 / 255,), (-64,))
    assert qm.requantized(params, 128) == QuantParams((4 / 255,), (64,))


def test_scales_are_float32_values():
    # the scale written to the file is float32; quantizing must use that same value
    params = qm.activation_params(-1.0, 3.0)
    assert params.scales[0] == float(np.float32(4 / 255))


# Bias correction: e = Σ (Ŵ − W)·E[x]. Weights chosen so each channel's scale is exactly 1
# (max |w| = 127): 0.375 rounds to 0 (Ŵ − W = −0.375), −63.5 to −64 (Ŵ − W = −0.5), 127 is exact.
_CHANNELS = np.array([[127.0, 0.375], [-63.5, 127.0]], np.float32)


def test_weight_error_bias_fully_connected():
    # [O, I] = _CHANNELS, E[x] = (2, 5): e0 = 0·2 − 0.375·5 = −1.875, e1 = −0.5·2 + 0·5 = −1
    params = qm.weight_params(_CHANNELS, axis=0)
    e = qm.weight_error_bias(BiasCorrection.FC, _CHANNELS, params, np.array([2.0, 5.0]))
    np.testing.assert_allclose(e, [-1.875, -1.0])


def test_weight_error_bias_grouped_conv():
    # OHWI [2, 1, 2, 1]: two taps per output channel, one input channel per group, two groups
    # (the input has 2 channels): e0 = (0 − 0.375)·4 = −1.5, e1 = (−0.5 + 0)·6 = −3
    w = _CHANNELS.reshape(2, 1, 2, 1)
    e = qm.weight_error_bias(BiasCorrection.CONV, w, qm.weight_params(w, axis=0), np.array([4.0, 6.0]))
    np.testing.assert_allclose(e, [-1.5, -3.0])


def test_weight_error_bias_depthwise():
    # [1, 1, 2, C]: channel c's taps are _CHANNELS[c]; multiplier 1: e = (−0.375·4, −0.5·6);
    # one input channel with multiplier 2: both outputs read E[x] = 4: (−1.5, −2)
    w = _CHANNELS.T.reshape(1, 1, 2, 2)
    params = qm.weight_params(w, axis=3)
    np.testing.assert_allclose(qm.weight_error_bias(BiasCorrection.DEPTHWISE, w, params,
                                                    np.array([4.0, 6.0])), [-1.5, -3.0])
    np.testing.assert_allclose(qm.weight_error_bias(BiasCorrection.DEPTHWISE, w, params, np.array([4.0])),
                               [-1.5, -2.0])


def test_weight_error_bias_refuses_shapes_that_do_not_fit():
    params = qm.weight_params(_CHANNELS, axis=0)
    assert qm.weight_error_bias(BiasCorrection.FC, _CHANNELS, params, np.array([1.0, 2.0, 3.0])) is None


def test_tiny_ranges_keep_their_scale_unless_floored():
    # [0, 2.55e-10]: s = 1e-12 (as float32); with a floor of 2^-28 (what a fused RELU6 needs
    # so that 6/s fits int32) the scale is the floor
    assert qm.activation_params(0.0, 2.55e-10).scales == (pytest.approx(1e-12, rel=1e-6),)
    assert qm.activation_params(0.0, 2.55e-10, min_scale=2.0 ** -28).scales == (2.0 ** -28,)
    assert qm.activation_params(-1e-12, 1e-12, qm.INT16, 2.0 ** -28).scales == (2.0 ** -28,)


@pytest.mark.parametrize("rmin, rmax, scale", [
    (-3.0, 1.0, 6 / 32767),  # symmetric, headroom 2: s = 2·max(|min|, |max|) / 32767, z = 0
    (0.0, 6.0, 12 / 32767),
    (0.0, 0.0, 1.0),
])
def test_int16_activations_are_symmetric(rmin, rmax, scale):
    params = qm.activation_params(rmin, rmax, qm.INT16)
    assert params.zero_points == (0,) and params.scales == (pytest.approx(scale, rel=1e-7),)


def test_legacy_uint8_weights_are_asymmetric_per_tensor():
    # w in [-1, 3]: s = 4/255, z = round(0 + 1/s) = round(63.75) = 64; -1 → 0, 3 → 255
    w = np.array([-1.0, 0.0, 3.0], np.float32)
    params = qm.weight_params(w, axis=None, storage=qm.UINT8_WEIGHTS)
    assert params.zero_points == (64,)
    assert params.scales == (pytest.approx(4 / 255, rel=1e-7),)
    np.testing.assert_array_equal(qm.quantize_weights(w, params, qm.UINT8_WEIGHTS), [0, 64, 255])


def test_int64_bias():
    # s = 2^-20 exactly: 1000 → 1000·2^20 = 1048576000 (beyond int16, fine in int64);
    # 2.5·2^-20 → 2.5 → 3 (tie away); 2^50 → 2^70, saturated just below 2^63 (no wrap-around)
    params = QuantParams((2.0 ** -20,), (0,))
    q = qm.quantize_bias(np.array([1000.0, 2.5 * 2.0 ** -20, 2.0 ** 50, -(2.0 ** 50)]), params,
                         qm.INT64_BIAS)
    assert q.dtype == np.int64
    assert list(q[:2]) == [1048576000, 3]
    assert q[2] > 2**62 and q[3] == -(2**63)
