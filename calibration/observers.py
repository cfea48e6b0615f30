"""Observers: turn a tensor's values, batch after batch, into mergeable statistics.

An observer has ``observe(values)`` and ``result()``; its result is a frozen dataclass of
numbers and tuples (JSON-serialisable via ``to_json``/``from_json``) with an exact
``merge``: ``a.merge(b)`` equals the statistics of both data sets observed together, so
calibration can be sharded, and no statistic depends on the batch size.

- ``MIN_MAX``: global min and max of every value seen (what TF's calibrator records).
- ``MOVING_AVERAGE_MIN_MAX``: the mean over rows (slices along axis 0, i.e. per sample
  row) of each row's min and max. TF uses an exponential moving average, which depends on
  order and batch size; a plain mean does not, and its sums are kept exactly (Shewchuk
  partials, as ``math.fsum``), so merging is exact too.
- ``HISTOGRAM``: counts in ``num_bins`` equal bins over ``[-R, R)``, ``R = 2**exponent``,
  plus the exact min, max and count. Bin ``i`` holds ``x`` with ``floor(x / w) = i - B/2``,
  ``w = 2R / B``; ``R`` only grows by doubling, and a doubled bin is the union of two old
  ones (edges nest), so rebinning and merging are exact. Range setters (percentile, MSE,
  entropy) read it; ``percentile_range`` is the first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Protocol

import numpy as np

from calibration.types import CalibrationError, ObserverKind

DEFAULT_NUM_BINS = 2048


class Stats(Protocol):
    def merge(self, other: Any) -> Any: ...

    def to_json(self) -> dict[str, Any]: ...


class Observer(Protocol):
    # False once a value seen was NaN or ±inf; read from the reductions the observer makes
    # anyway (NaN propagates through min/max), so the runner scans a batch only when it is.
    finite: bool

    def observe(self, values: np.ndarray) -> None: ...

    def result(self) -> Stats: ...


def _as_float64(values: np.ndarray) -> np.ndarray:
    return np.asarray(values).astype(np.float64, copy=False)


def _extremes(values: np.ndarray) -> tuple[float, float]:
    """``(min, max)`` of a non-empty array, a zero always as ``+0.0``.

    numpy returns whichever of ``-0.0``/``0.0`` it meets first and Python's ``min`` keeps the
    first of equal values, so without this the sign of a zero extreme (and its JSON) would
    depend on the batching and the merge order; ``x + 0.0`` is ``x`` except that ``-0.0``
    becomes ``0.0``.
    """
    return float(values.min()) + 0.0, float(values.max()) + 0.0


# ----------------------------------------------------------------------------- min / max

@dataclass(frozen=True)
class MinMaxStats:
    """Global ``min`` and ``max`` over ``count`` values (``inf``, ``-inf`` when empty)."""

    min: float = math.inf
    max: float = -math.inf
    count: int = 0

    def merge(self, other: MinMaxStats) -> MinMaxStats:
        return MinMaxStats(min(self.min, other.min), max(self.max, other.max),
                           self.count + other.count)

    def to_json(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max, "count": self.count}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MinMaxStats:
        return cls(float(data["min"]), float(data["max"]), int(data["count"]))


class MinMaxObserver:
    def __init__(self) -> None:
        self._stats = MinMaxStats()
        self.finite = True

    def observe(self, values: np.ndarray) -> None:
        values = np.asarray(values)
        if values.size:
            low, high = _extremes(values)
            self.finite = self.finite and math.isfinite(low) and math.isfinite(high)
            self._stats = self._stats.merge(MinMaxStats(low, high, int(values.size)))

    def result(self) -> MinMaxStats:
        return self._stats


# ------------------------------------------------------------------ moving-average min / max

def _exact_sum(partials: Iterable[float], values: Iterable[float]) -> tuple[float, ...]:
    """``partials`` plus ``values``, exactly, as non-overlapping partials (Shewchuk's msum).

    Invariant: the real-number sum of the result equals that of the arguments. The result
    is canonical (greedy correctly rounded terms), so equal sums give equal tuples whatever
    the order and grouping of the additions.
    """
    parts = list(partials)
    for x in values:
        i = 0
        for y in parts:
            if abs(x) < abs(y):
                x, y = y, x
            high = x + y
            low = y - (high - x)
            if low:
                parts[i] = low
                i += 1
            x = high
        parts[i:] = [x]
    canonical: list[float] = []
    while (term := math.fsum(parts)) != 0.0:  # exact sums are multiples of 2**-1074
        canonical.append(term)
        parts.append(-term)
    return tuple(canonical)


@dataclass(frozen=True)
class MovingAverageStats:
    """Exact sums (as partials) of each row's min and max, over ``num_rows`` rows."""

    min_sum: tuple[float, ...] = ()
    max_sum: tuple[float, ...] = ()
    num_rows: int = 0

    @property
    def min(self) -> float:
        """Mean of the rows' minima (``inf`` when no row was seen)."""
        return math.fsum(self.min_sum) / self.num_rows if self.num_rows else math.inf

    @property
    def max(self) -> float:
        """Mean of the rows' maxima (``-inf`` when no row was seen)."""
        return math.fsum(self.max_sum) / self.num_rows if self.num_rows else -math.inf

    def merge(self, other: MovingAverageStats) -> MovingAverageStats:
        return MovingAverageStats(_exact_sum(self.min_sum, other.min_sum),
                                  _exact_sum(self.max_sum, other.max_sum),
                                  self.num_rows + other.num_rows)

    def to_json(self) -> dict[str, Any]:
        return {"min_sum": list(self.min_sum), "max_sum": list(self.max_sum),
                "num_rows": self.num_rows}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MovingAverageStats:
        return cls(tuple(float(x) for x in data["min_sum"]),
                   tuple(float(x) for x in data["max_sum"]), int(data["num_rows"]))


class MovingAverageObserver:
    """A row is a slice along axis 0 (a scalar tensor is one row); empty rows are skipped."""

    def __init__(self) -> None:
        self._stats = MovingAverageStats()
        self.finite = True

    def observe(self, values: np.ndarray) -> None:
        values = np.asarray(values)
        rows = values.reshape(values.shape[0] if values.ndim else 1, -1)
        if rows.size:
            mins = _as_float64(rows.min(axis=1)).tolist()
            maxs = _as_float64(rows.max(axis=1)).tolist()
            self.finite = self.finite and all(map(math.isfinite, mins + maxs))
            if not self.finite:
                return  # the runner reports it; exact sums need finite values
            self._stats = MovingAverageStats(_exact_sum(self._stats.min_sum, mins),
                                             _exact_sum(self._stats.max_sum, maxs),
                                             self._stats.num_rows + len(mins))

    def result(self) -> MovingAverageStats:
        return self._stats


# ------------------------------------------------------------------------------ histogram

def _exponent(magnitude: float) -> int | None:
    """Smallest ``e`` with ``magnitude < 2**e`` (None for 0: every value is in the 0 bin)."""
    return math.frexp(magnitude)[1] if magnitude else None


def _grow(counts: np.ndarray, doublings: int) -> np.ndarray:
    """Counts after doubling ``R`` ``doublings`` times: old bin i → (i + B/2·(2^d − 1)) // 2^d."""
    half = len(counts) // 2
    d = min(doublings, len(counts).bit_length() - 1)  # beyond log2(B) nothing changes
    target = (np.arange(len(counts)) + half * ((1 << d) - 1)) >> d
    grown = np.zeros_like(counts)
    np.add.at(grown, target, counts)
    return grown


def _bin_counts(values: np.ndarray, exponent: int, num_bins: int) -> np.ndarray:
    """Counts of ``values`` (all in [-2**exponent, 2**exponent)) in the bins of that range."""
    # x / w with w = 2**(exponent + 1) / B: scaling by a power of two is exact.
    shift = num_bins.bit_length() - 2 - exponent
    index = np.floor(np.ldexp(values, shift)).astype(np.int64) + num_bins // 2
    return np.bincount(index, minlength=num_bins).astype(np.int64)


@dataclass(frozen=True)
class HistogramStats:
    """Counts over ``[-2**exponent, 2**exponent)`` (``exponent`` None: only zeros so far)."""

    exponent: int | None
    counts: tuple[int, ...] = field(repr=False)
    min: float = math.inf
    max: float = -math.inf
    count: int = 0

    @property
    def num_bins(self) -> int:
        return len(self.counts)

    @property
    def range_max(self) -> float:
        """``R``: the bins cover ``[-R, R)``; 0.0 while only zeros were seen."""
        return 0.0 if self.exponent is None else math.ldexp(1.0, self.exponent)

    def bin_edges(self) -> np.ndarray:
        """The ``num_bins + 1`` bin edges, from ``-R`` to ``R``."""
        return np.linspace(-self.range_max, self.range_max, self.num_bins + 1)

    def grown_to(self, exponent: int | None) -> np.ndarray:
        """The counts rebinned to ``R = 2**exponent`` (≥ the current range), exactly."""
        counts = np.asarray(self.counts, np.int64)
        if exponent is None or self.exponent is None or exponent == self.exponent:
            return counts  # zeros stay in bin B/2 at every range
        return _grow(counts, exponent - self.exponent)

    def merge(self, other: HistogramStats) -> HistogramStats:
        if other.num_bins != self.num_bins:
            raise CalibrationError(f"cannot merge histograms of {self.num_bins} and "
                                   f"{other.num_bins} bins")
        exponent = max((e for e in (self.exponent, other.exponent) if e is not None),
                       default=None)
        counts = self.grown_to(exponent) + other.grown_to(exponent)
        return HistogramStats(exponent, tuple(counts.tolist()), min(self.min, other.min),
                              max(self.max, other.max), self.count + other.count)

    def to_json(self) -> dict[str, Any]:
        # Sparse counts: bin index (as a string key) → count.
        return {"exponent": self.exponent, "num_bins": self.num_bins,
                "counts": {str(i): c for i, c in enumerate(self.counts) if c},
                "min": self.min, "max": self.max, "count": self.count}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HistogramStats:
        counts = [0] * int(data["num_bins"])
        for index, value in data["counts"].items():
            counts[int(index)] = int(value)
        exponent = None if data["exponent"] is None else int(data["exponent"])
        return cls(exponent, tuple(counts), float(data["min"]), float(data["max"]),
                   int(data["count"]))


class HistogramObserver:
    def __init__(self, num_bins: int = DEFAULT_NUM_BINS) -> None:
        if num_bins < 2 or num_bins & (num_bins - 1):
            raise CalibrationError(f"num_bins must be a power of two ≥ 2, got {num_bins}")
        self._stats = HistogramStats(None, (0,) * num_bins)
        self.finite = True

    def observe(self, values: np.ndarray) -> None:
        values = _as_float64(values).ravel()
        if values.size:
            low, high = _extremes(values)
            self.finite = self.finite and math.isfinite(low) and math.isfinite(high)
            if not self.finite:
                return  # the runner reports it; the bins need finite values
            exponent = _exponent(max(-low, high))
            counts = (_bin_counts(values, exponent, self._stats.num_bins) if exponent
                      is not None else np.bincount([self._stats.num_bins // 2], [values.size],
                                                   self._stats.num_bins).astype(np.int64))
            self._stats = self._stats.merge(HistogramStats(
                exponent, tuple(counts.tolist()), low, high, int(values.size)))

    def result(self) -> HistogramStats:
        return self._stats


def percentile_range(stats: HistogramStats, percentile: float) -> tuple[float, float]:
    """The range keeping ``percentile`` % of the values, cutting half the rest on each side.

    With ``cut = N·(100 − p)/200``: ``lo`` is the left edge of the first bin where the
    cumulative count from the left exceeds ``cut`` (at most ``cut`` values lie below ``lo``),
    ``hi`` the right edge of the first bin where the count from the right does; both are
    clamped to the exact ``[min, max]``, so ``p = 100`` gives exactly ``(min, max)``.
    Resolution is one bin (``2R / num_bins``).
    """
    if not 0.0 < percentile <= 100.0:
        raise CalibrationError(f"percentile must be in (0, 100], got {percentile}")
    if stats.count == 0:
        raise CalibrationError("percentile_range of an empty histogram")
    counts = np.asarray(stats.counts, np.int64)
    cut = stats.count * (100.0 - percentile) / 200.0
    edges = stats.bin_edges()
    first = int(np.argmax(np.cumsum(counts) > cut))
    last = len(counts) - 1 - int(np.argmax(np.cumsum(counts[::-1]) > cut))
    return max(float(edges[first]), stats.min), min(float(edges[last + 1]), stats.max)


# ------------------------------------------------------------------------ channel means

@dataclass(frozen=True)
class ChannelMeanStats:
    """Per-channel (last axis) exact sums of ``count`` values each: ``mean = Σ / count``.

    Not a range: the quantizer reads it to correct the bias of ops whose weights' rounding
    error meets inputs with a nonzero mean (bias correction). Each channel's sum is kept
    exactly, as canonical partials (``_exact_sum``) of the per-batch float64 sums, so
    ``merge`` is exact and order-free: shards merged in any grouping give the same partials,
    hence the same JSON, as one pass over the same batches.
    """

    sums: tuple[tuple[float, ...], ...] = ()
    count: int = 0

    @property
    def mean(self) -> np.ndarray:
        """``fsum(partials) / count`` per channel (the correctly rounded sum's mean)."""
        return np.asarray([math.fsum(p) for p in self.sums], np.float64) / max(self.count, 1)

    def merge(self, other: ChannelMeanStats) -> ChannelMeanStats:
        if not self.count or not other.count:
            return self if other.count == 0 else other
        if len(self.sums) != len(other.sums):
            raise CalibrationError(f"cannot merge channel means over {len(self.sums)} and "
                                   f"{len(other.sums)} channels")
        return ChannelMeanStats(tuple(_exact_sum(a, b) for a, b in zip(self.sums, other.sums)),
                                self.count + other.count)

    def to_json(self) -> dict[str, Any]:
        return {"sums": [list(p) for p in self.sums], "count": self.count}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChannelMeanStats:
        # A channel is a list of partials; a bare float (files before exact sums) is one.
        return cls(tuple(_exact_sum((), [float(v)] if isinstance(v, (int, float)) else
                                    [float(x) for x in v]) for v in data["sums"]),
                   int(data["count"]))


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``s + e = a + b`` exactly, ``s = fl(a + b)`` (Knuth's TwoSum, elementwise)."""
    s = a + b
    b_virtual = s - a
    return s, (a - (s - b_virtual)) + (b - b_virtual)


class ChannelMeanObserver:
    """Sums each batch's values per channel in float64 (``einsum``), and adds the batch sums
    exactly: the rows of ``_levels`` hold an expansion whose elementwise total is the exact sum
    of every batch sum so far (a TwoSum cascade; a row is added when the last one's rounding
    error is nonzero), made canonical once, in ``result``."""

    def __init__(self) -> None:
        self._levels: list[np.ndarray] = []
        self._count = 0

    def observe(self, values: np.ndarray) -> None:
        values = np.asarray(values)
        if values.ndim == 0 or values.size == 0:
            return
        channels = values.reshape(-1, values.shape[-1])
        # Σ over rows per channel, in float64. einsum gives the same sums as
        # ``sum(axis=0, dtype=float64)`` 1.5–3× faster (no buffered cast of the whole array):
        # it is a third of calibration's time on MobileNetV2 otherwise.
        carry = np.einsum("ij->j", channels, dtype=np.float64)
        if self._levels and len(self._levels[0]) != len(carry):
            raise CalibrationError(f"channel means over {len(self._levels[0])} channels, then "
                                   f"a batch of {len(carry)}")
        for i, level in enumerate(self._levels):
            self._levels[i], carry = _two_sum(level, carry)
            if not carry.any():
                break
        else:
            self._levels.append(carry)
        self._count += channels.shape[0]

    def result(self) -> ChannelMeanStats:
        if not self._levels:
            return ChannelMeanStats()
        levels = np.stack(self._levels, axis=1).tolist()  # channel → its expansion
        return ChannelMeanStats(tuple(_exact_sum((), terms) for terms in levels), self._count)


@dataclass(frozen=True)
class ObserverEntry:
    """How to make an observer of one kind, the type of its statistics, and whether their
    ``merge`` is exact and order-free (sharded calibration refuses a kind whose is not)."""

    factory: Callable[[], Observer]
    stats_type: Any
    exact_merge: bool = True


# Each kind's merge is exact (see the module docstring); a kind added with an approximate
# merge (TF's exponential moving average, say) says so with exact_merge=False.
OBSERVERS: dict[ObserverKind, ObserverEntry] = {
    ObserverKind.MIN_MAX: ObserverEntry(MinMaxObserver, MinMaxStats),
    ObserverKind.MOVING_AVERAGE_MIN_MAX: ObserverEntry(MovingAverageObserver,
                                                       MovingAverageStats),
    ObserverKind.HISTOGRAM: ObserverEntry(HistogramObserver, HistogramStats),
}


def make_observer(kind: ObserverKind) -> Observer:
    """A fresh observer of ``kind``."""
    return OBSERVERS[kind].factory()
