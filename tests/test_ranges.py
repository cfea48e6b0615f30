"""Range setters over the histogram (``calibration.ranges``) and MSE weight clipping
(``quantkit.quantize.clipping``): hand-computed golden cases.

These run no quantkit-written model (numbers in, numbers out), so the mutation plugin has
nothing to feed noise to; the end-to-end checks are in ``tests/test_accuracy.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from calibration import HistogramObserver, HistogramStats, percentile_range
from calibration.ranges import (bin_centres, entropy_range, expected_error, folded_counts,
                                kl_at, mse_range)
from calibration.types import CalibrationError
from quantkit.quantize.clipping import clipping_error, mse_scales


def hist(counts, exponent=2, lo=0.2, hi=3.9):
    """8 bins of width 1 over [-4, 4): centres −3.5 … 3.5."""
    return HistogramStats(exponent, tuple(counts), lo, hi, int(sum(counts)))


# 3 values in [0, 1) (centre 0.5), 1 in [3, 4) (centre 3.5); min 0.2, max 3.9.
SMALL = hist([0, 0, 0, 0, 3, 0, 0, 1])
# the same with 30 values in [0, 1)
CROWDED = hist([0, 0, 0, 0, 30, 0, 0, 1])


def test_bin_centres():
    assert bin_centres(SMALL).tolist() == [-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5]


def test_expected_error_by_hand():
    # [0, 3] in 4 levels: s = 1; three values round (1/12 each), 3.5 is clipped to 3 (0.25)
    assert expected_error(SMALL, 0.0, 3.0, levels=4) == pytest.approx((3 / 12 + 0.25) / 4)
    # [0, 4]: s = 4/3, nothing clipped: 4 · (16/9) / 12 / 4
    assert expected_error(SMALL, 0.0, 4.0, levels=4) == pytest.approx(16 / 9 / 12)


def test_mse_range_by_hand():
    # α ∈ {¼, ½, ¾, 1} of [0, 3.9], 4 levels. SMALL: α = 1 costs (4·1.3²/12)/4 = 0.1408,
    # α = ¾ (hi 2.925, s 0.975) costs (3·0.975²/12 + 0.575²)/4 = 0.1421: min/max wins.
    assert mse_range(SMALL, levels=4, steps=4) == (0.0, 3.9)
    # CROWDED: α = ¾ costs (30·0.975²/12 + 0.575²)/31 = 0.0873, α = 1: 31·1.3²/12/31 = 0.1408,
    # α = ½ (hi 1.95, s 0.65): (30·0.65²/12 + 1.55²)/31 = 0.1116
    lo, hi = mse_range(CROWDED, levels=4, steps=4)
    assert lo == 0.0 and hi == pytest.approx(0.75 * 3.9)


def test_mse_range_two_sided_and_degenerate():
    # symmetric data: both ends shrink by the same α
    both = HistogramStats(2, (1, 0, 0, 30, 30, 0, 0, 1), -3.9, 3.9, 62)
    lo, hi = mse_range(both, levels=4, steps=4)
    assert lo == pytest.approx(-hi) and hi < 3.9
    zeros = HistogramObserver(8)
    zeros.observe(np.zeros(5))
    assert mse_range(zeros.result()) == (0.0, 0.0)
    with pytest.raises(CalibrationError, match="empty"):
        mse_range(HistogramStats(None, (0,) * 8))


def test_folded_counts():
    # |x| bins: [0,1) gets bins 4 and 3, [1,2) bins 5 and 2, ...
    stats = hist([1, 2, 3, 4, 10, 20, 30, 40], lo=-3.9)
    assert folded_counts(stats).tolist() == [14, 23, 32, 41]


def test_kl_by_hand():
    a = np.array([3.0, 1.0, 2.0, 2.0])
    # i = 4, 2 levels: P = [3,1,2,2]/8, Q = [2,2,2,2]/8: 3/8·ln(3/2) + 1/8·ln(1/2)
    assert kl_at(a, 4, 2) == pytest.approx(3 / 8 * math.log(1.5) + 1 / 8 * math.log(0.5))
    # i = 2: P = [3, 1 + 4]/8 (outliers on the last bin), Q = [3, 1]/4
    assert kl_at(a, 2, 2) == pytest.approx(3 / 8 * math.log(0.5) + 5 / 8 * math.log(2.5))
    # i = 3: P = [3, 1, 4]/8; chunks [3] and [1, 2] → Q = [3, 1.5, 1.5]/6
    assert kl_at(a, 3, 2) == pytest.approx(
        3 / 8 * math.log(0.75) + 1 / 8 * math.log(0.5) + 4 / 8 * math.log(2))
    # outliers piled onto an empty bin: P = [6, 2, 1]/9, Q = [6, 2, 0] smoothed to
    # [6 − ε/2, 2 − ε/2, ε] (sum 8), ε = 1e-4
    eps = 1e-4
    assert kl_at(np.array([6.0, 2.0, 0.0, 1.0]), 3, 2) == pytest.approx(
        6 / 9 * math.log((6 / 9) / ((6 - eps / 2) / 8))
        + 2 / 9 * math.log((2 / 9) / ((2 - eps / 2) / 8)) + 1 / 9 * math.log((1 / 9) / (eps / 8)))


def test_entropy_range_by_hand():
    # |x| counts [6, 2, 0, 0, 0, 0, 0, 1] (16 bins of width 1 over [-8, 8)), one-signed:
    # 2·1 = 2 levels per the one side. KL at i = 2: P = [6, 3]/9, Q = [6, 2]/8 → 0.01737;
    # i = 3…7 pile the outlier on an empty bin (≥ 1/9·ln(8/9 / 1e-4) = 1.0);
    # i = 8: Q = [4, 4, 0, 0, 0, 0, 0, 1]/9
    # → 6/9·ln(3/2) + 2/9·ln(1/2) = 0.1163. So T = 2.
    counts = [0] * 8 + [6, 2, 0, 0, 0, 0, 0, 1]
    stats = HistogramStats(3, tuple(counts), 0.1, 7.5, 9)
    assert kl_at(folded_counts(stats), 2, 2) == pytest.approx(
        6 / 9 * math.log((6 / 9) / (6 / 8)) + 3 / 9 * math.log((3 / 9) / (2 / 8)))
    assert entropy_range(stats, levels=1) == (0.0, 2.0)
    # with 8 levels every bin up to the last value fits: min/max (widened to 0)
    assert entropy_range(stats, levels=4) == (0.0, 7.5)


def test_entropy_range_clips_a_long_tail():
    rng = np.random.default_rng(0)
    observer = HistogramObserver()
    observer.observe(np.concatenate([rng.normal(0, 1, 100_000), [40.0, -35.0]]))
    lo, hi = entropy_range(observer.result())
    assert 2.0 < hi < 20.0 and -20.0 < lo < -2.0
    lo_p, hi_p = percentile_range(observer.result(), 100.0)
    assert (lo_p, hi_p) == (-35.0, 40.0)


def test_mse_range_beats_min_max_on_a_long_tail():
    rng = np.random.default_rng(1)
    observer = HistogramObserver()
    observer.observe(rng.standard_t(2, 100_000))  # heavy tails: |x| up to ≈ 180
    stats = observer.result()
    lo, hi = mse_range(stats)
    assert stats.min < lo < 0.0 < hi < stats.max
    assert expected_error(stats, lo, hi) < 0.9 * expected_error(stats, stats.min, stats.max)
    # a lone far outlier costs more clipped than its share of rounding noise: kept
    single = HistogramObserver()
    single.observe(np.concatenate([rng.exponential(1.0, 10_000), [60.0]]))
    assert mse_range(single.result())[1] > 50.0


def test_clipping_error_by_hand():
    w = np.array([[0.1, 0.25, -1.0]])
    # s = 0.5, qmax 1: q = [0, 0 or 1 (a tie: 0.25 from either), -1] → errors 0.1², 0.25², 0.5²
    assert clipping_error(w, np.array([0.5]), 1) == pytest.approx([0.01 + 0.0625 + 0.25])


def test_mse_scales_by_hand():
    # one channel [0.1, 0.2, 1.0], qmax 1, α ∈ {0.5, 0.75, 1}:
    # α = 1 (s 1): error 0.1² + 0.2² = 0.05; α = 0.75: q = [0, 0, 1], (0.25)² + 0.05 = 0.1125;
    # α = 0.5: 0.1² + 0.2² + 0.5² = 0.3. Second channel [0.4, 0.45, 1.0]: α = 1: 0.4² + 0.45²
    # = 0.3625 (0.45 → 0); α = 0.5 (s 0.5): q = [1, 1, 1]: 0.1² + 0.05² + 0.5² = 0.2625;
    # α = 0.75: q = [1, 1, 1]: 0.35² + 0.3² + 0.25² = 0.275. Per channel along axis 0:
    w = np.array([[0.1, 0.2, 1.0], [0.4, 0.45, 1.0]])
    assert mse_scales(w, 0, qmax=1, steps=2, lowest=0.5).tolist() == [1.0, 0.5]
    # per tensor: α = 1: 0.05 + 0.3625 = 0.4125; 0.75: 0.1125 + 0.275 = 0.3875;
    # 0.5: 0.3 + 0.2625 = 0.5625
    assert mse_scales(w, None, qmax=1, steps=2, lowest=0.5).tolist() == [0.75]
    # an all-zero channel keeps s = 1
    assert mse_scales(np.zeros((2, 3)), 0).tolist() == [1.0, 1.0]
