"""``Optimize.ACCURACY``'s range search: each tensor's range method chosen by the error it
causes at the model's outputs (``RangeMethod.AUTO``).

``Optimize.ACCURACY`` is ``Optimize.DEFAULT`` plus cross-layer equalization of the float graph
(``passes.equalize``), MSE-clipped weight scales (``quantize.clipping``) and this search; the
model is the same int8 format, only weights and ranges move.

The histogram setters (``calibration.ranges``) each minimise an error at the tensor itself;
which of them serves a tensor best depends on what reads it downstream (a clipped outlier
feeding a softmax matters less than one feeding a residual sum). So the search measures:
on up to ``AUTO_SAMPLES`` calibration samples (a ``Probe``) it runs the quantized model in
LiteRT and compares its outputs with the float graph's, ``e = Σ_outputs ‖ŷ − y‖² / ‖y‖²``
(the inverse of the output SQNR). It first tries one method for every AUTO tensor
(``CANDIDATES``), keeps the best, then tries the other methods tensor by tensor (those whose
candidate ranges differ most first), keeping a change only when ``e`` drops by
``AUTO_MARGIN``, until every tensor was tried or ``AUTO_TRIALS`` trials were run. The budget
is a count of trials, not seconds, so the same model and data give the same model on any
machine under any load (a time budget made the digits CNN 0.8 dB worse under load). Last,
on the next ``AUTO_CHECK_SAMPLES`` calibration samples (held out from the search), the
per-tensor choice must beat min/max everywhere and the best single method, else the better
of those two is kept: 32 samples are few, and the search can fit them.

Equalization is decided first, per signature, by the same error (``choose_start``): the
equalized graph with clipped weights and min/max ranges against Optimize.DEFAULT's model (the
graph before CLE, min/max ranges and weights). CLE gains 6 dB on the depthwise-separable CNN
but costs 0.9 dB per-tensor on the MNIST CNN; where it loses, ACCURACY returns DEFAULT's
model, else the search starts from the equalized graph (its first trial is that error, and
the budget is one trial less). One calibration pass measures both graphs: the tensors CLE
scales are derived as they were before it, ``t · S`` (``derive_before``), the others are the
same in both.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np

import calibration
from calibration import CalibrationStats
from quantkit.calibrate import (METHOD_SETTERS, CalibrationOptions, calibrate_graphs,
                                executors, input_specs)
from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.quantize import Means, Ranges, WeightRounder, quantize_integer
from quantkit.recipe import OpSettings, RangeMethod
from quantkit.runtime import LiteRTExecutor
from quantkit.types import ConversionMode, TensorType

log = logging.getLogger(__name__)

AUTO_SAMPLES = 32  # calibration samples the output error is measured on
AUTO_CHECK_SAMPLES = 32  # the calibration samples after those, that check the search's result
# quantized models tried per signature, at most: each costs about a fifth of a default
# conversion (MobileNetV2 at 96 px: 0.5 s of 2.3 s), and ACCURACY's bound is 5× the default
AUTO_TRIALS = 12
# A change is kept only when it lowers the output error by this share: smaller drops on 32
# samples are mostly noise, and chasing them fits the probe (measured: digits CNN, −1 dB).
AUTO_MARGIN = 0.05
BEFORE = "@before_equalization"  # suffix of the derived statistics of the graph without CLE
CHUNK = 64  # samples per LiteRT call when measuring channel minima or layer inputs
ADAROUND_SAMPLES = 64  # calibration samples whose float layer inputs AdaRound learns on
CANDIDATES = (RangeMethod.MIN_MAX, RangeMethod.MSE, RangeMethod.ENTROPY,
              RangeMethod.PERCENTILE)


@dataclass(frozen=True)
class Probe:
    """Samples of one signature (batches as the graph takes them) and the float outputs."""

    batches: tuple[dict[str, np.ndarray], ...]
    reference: tuple[np.ndarray, ...]  # per output, every batch's rows concatenated


@dataclass(frozen=True)
class Candidate:
    """A start for one signature: a float graph as calibrated (its min/max ``ranges``,
    min/max for the AUTO tensors too; its ``means``), its ops' ``settings``, the ``mode`` it
    quantizes in (``mode.accuracy``: MSE-clipped weights) and whether CLE ran on it."""

    graph: Graph
    ranges: Ranges
    means: Means | None
    settings: OpSettings | None
    mode: ConversionMode
    equalized: bool


@dataclass(frozen=True)
class StartChoice:
    """``Optimize.ACCURACY``'s start for one signature: ``equalized`` (the equalized graph,
    MSE-clipped weights, then the range search) or not (Optimize.DEFAULT's model as it is),
    and the probe's output errors ``e`` of both with min/max ranges it decided by."""

    signature_key: str
    equalized: bool
    default_error: float
    equalized_error: float


def choose_start(default: Candidate, equalized: Candidate, probe: Probe
                 ) -> tuple[Candidate, StartChoice]:
    """The candidate with the lower output error ``e`` on ``probe`` (min/max ranges, no
    AdaRound); ``default`` on a tie."""
    errors = [trial_error(c.graph, c.ranges, c.mode, c.means, c.settings, probe)
              for c in (default, equalized)]
    keep = errors[1] < errors[0]
    choice = StartChoice(default.graph.signature_key, keep, errors[0], errors[1])
    log.info("signature %r: cross-layer equalization %s (output error %.3e with it and "
             "clipped weights, %.3e as Optimize.DEFAULT)", choice.signature_key,
             "kept" if keep else "dropped", errors[1], errors[0])
    return (equalized if keep else default), choice


def derive_before(factors: Mapping[str, np.ndarray]) -> Callable[[dict], dict]:
    """For calibrating the equalized graph: each tensor of ``factors`` as it is in the graph
    before equalization, ``t · S`` (``passes.equalize.undo_factors``), named ``t + BEFORE``.
    One pass then measures both graphs: the others' values are the same in both."""
    def derive(values: dict) -> dict:
        return {name + BEFORE: np.asarray(values[name]) * factor
                for name, factor in factors.items() if name in values}
    return derive


def split_before(stats: CalibrationStats, factors: Mapping[str, Mapping[str, np.ndarray]]
                 ) -> tuple[CalibrationStats, CalibrationStats]:
    """(the equalized graphs' statistics, the graphs' before equalization) from a pass with
    ``derive_before`` (``factors`` per signature); the channel means of the latter are the
    equalized graph's times ``S`` (a mean is linear)."""
    equalized, before = {}, {}
    for key, signature in stats.signatures.items():
        undo = factors.get(key, {})
        tensors = {n: t for n, t in signature.tensors.items() if not n.endswith(BEFORE)}
        equalized[key] = dataclasses.replace(signature, tensors=tensors)
        means = {n: dataclasses.replace(m, sums=tuple(
            tuple(float(x) * float(f) for x in partials)
            for partials, f in zip(m.sums, undo[n]))) if n in undo else m
            for n, m in signature.channel_means.items()}
        before[key] = dataclasses.replace(signature, tensors={
            n: signature.tensors.get(n + BEFORE, t) for n, t in tensors.items()},
            channel_means=means)
    return (dataclasses.replace(stats, signatures=equalized),
            dataclasses.replace(stats, signatures=before))


def calibrate_before(graphs: list[Graph], factors: Mapping[str, Mapping[str, np.ndarray]],
                     dataset: Any, options: CalibrationOptions
                     ) -> tuple[CalibrationStats, CalibrationStats]:
    """One calibration of the equalized ``graphs`` that measures them as they were before
    CLE too (``factors`` per signature): (their statistics, the ones before)."""
    runners = executors(graphs, options, {k: derive_before(f) for k, f in factors.items()})
    return split_before(calibrate_graphs(graphs, dataset, options, runners), factors)


def make_probe(graph: Graph, dataset: Any, others: Sequence[Graph] = (),
               samples: int = AUTO_SAMPLES, skip: int = 0) -> Probe | None:
    """``samples`` samples of ``dataset`` for ``graph``'s signature after its first ``skip``,
    and the float graph's outputs on them (LiteRT); None when the dataset has none there.
    ``others``: the model's other signatures, whose samples the dataset may hold too (they
    are skipped)."""
    rows = _rows(graph, dataset, others, samples, skip)
    if not rows:
        return None
    executor = LiteRTExecutor(graph, graph.outputs)
    batches = _batches(rows, executor.batch_size)
    outputs = [executor(b) for b in batches]
    reference = tuple(np.concatenate([o[t.name] for o in outputs]).astype(np.float64)
                      for t in graph.outputs)
    return Probe(tuple(batches), reference)


def _rows(graph: Graph, dataset: Any, others: Sequence[Graph], samples: int | None,
          skip: int = 0) -> list[dict[str, np.ndarray]]:
    """Up to ``samples`` (None: all) samples of ``dataset`` for ``graph``'s signature."""
    specs = {g.signature_key: input_specs(g) for g in [*others, graph]}
    dataset = getattr(dataset, "input_gen", dataset)
    rows: list[dict[str, np.ndarray]] = []
    for sample in calibration.iter_samples(dataset, specs):
        if sample.signature_key == graph.signature_key:
            if skip > 0:
                skip -= 1
                continue
            rows.append(sample.inputs)
        if samples is not None and len(rows) >= samples:
            break
    return rows


def channel_minima(graph: Graph, tensors: Sequence[Tensor], dataset: Any,
                   others: Sequence[Graph] = ()) -> dict[str, np.ndarray]:
    """Per tensor of ``tensors``, its per-channel (last axis) minimum over every sample of
    ``dataset`` for ``graph``'s signature (the float graph in LiteRT); empty without
    samples. High-bias absorption (``passes.absorb``) shifts by these."""
    rows = _rows(graph, dataset, others, None) if tensors else []
    if not rows:
        return {}
    executor = LiteRTExecutor(graph, list(tensors))
    minima: dict[str, np.ndarray] = {}
    for batch in _batches(rows, executor.batch_size, CHUNK):
        for name, value in executor(batch).items():
            low = value.reshape(-1, value.shape[-1]).min(axis=0)
            minima[name] = low if name not in minima else np.minimum(minima[name], low)
    return minima


def layer_inputs(graph: Graph, ops: Sequence[Op], dataset: Any, others: Sequence[Graph] = (),
                 samples: int = ADAROUND_SAMPLES) -> dict[str, np.ndarray]:
    """The float values of ``ops``' activation inputs on the first ``samples`` samples of
    ``dataset`` for ``graph``'s signature (rows concatenated), by tensor name: what AdaRound
    (``quantize.adaround``) learns the weights' rounding on. Empty without samples."""
    tensors = list(dict.fromkeys(op.inputs[0] for op in ops if not op.inputs[0].is_const))
    rows = _rows(graph, dataset, others, samples) if tensors else []
    if not rows:
        return {}
    executor = LiteRTExecutor(graph, tensors)
    outputs = [executor(b) for b in _batches(rows, executor.batch_size, CHUNK)]
    return {t.name: np.concatenate([o[t.name] for o in outputs]) for t in tensors}


def _batches(rows: list[dict[str, np.ndarray]], fixed: int | None, chunk: int | None = None
             ) -> list[dict[str, np.ndarray]]:
    """The rows as the graph takes them: one at a time when its batch is fixed, else in
    batches of ``chunk`` rows (None: all in one)."""
    if fixed is not None:
        return rows
    chunk = chunk or len(rows)
    return [{name: np.concatenate([r[name] for r in rows[i:i + chunk]]) for name in rows[0]}
            for i in range(0, len(rows), chunk)]


def output_error(quantized: Graph, probe: Probe) -> float:
    """``e = Σ_outputs ‖ŷ − y‖² / ‖y‖²`` of ``quantized`` (float IO) against the reference."""
    executor = LiteRTExecutor(quantized, quantized.outputs)
    outputs = [executor(b) for b in probe.batches]
    error = 0.0
    for t, y in zip(quantized.outputs, probe.reference):
        y_hat = np.concatenate([o[t.name] for o in outputs]).astype(np.float64)
        error += float(np.sum((y_hat - y) ** 2) / max(np.sum(y ** 2), 1e-30))
    return error


def trial_error(graph: Graph, ranges: Ranges, mode: ConversionMode, means: Means | None,
                settings: OpSettings | None, probe: Probe,
                rounding: WeightRounder | None = None) -> float:
    """``output_error`` of ``graph`` quantized from ``ranges`` (model IO kept float)."""
    float_io = dataclasses.replace(mode, input_type=TensorType.FLOAT32,
                                   output_type=TensorType.FLOAT32)
    quantized, _ = quantize_integer(graph, ranges, float_io, means, settings, rounding)
    return output_error(quantized, probe)


def _spread(candidates: dict[RangeMethod, dict[str, tuple]], name: str,
            current: tuple[float, float]) -> float:
    """How far the candidates' widths are from the current one (relative, largest)."""
    width = max(current[1] - current[0], 1e-30)
    return max(abs((c[name][1] - c[name][0]) - width) / width for c in candidates.values())


def auto_ranges(graph: Graph, tensors: Mapping[str, Any], ranges: Ranges, auto: list[str],
                mode: ConversionMode, means: Means | None, settings: OpSettings | None,
                probe: Probe, options: CalibrationOptions, check: Probe | None = None,
                rounding: WeightRounder | None = None, start_error: float | None = None,
                budget: int = AUTO_TRIALS) -> Ranges:
    """``ranges`` (min/max for the ``auto`` tensors) with each tensor in ``auto`` set by the
    method that gives the least output error (module docstring); ``tensors`` are the
    signature's histogram statistics. ``check``: other samples on which the search's result
    must beat min/max and the best single method, else the better of those is returned (the
    search fits its 32 samples: on the MNIST CNN it cost 1.8 dB on the test digits).
    ``rounding``: the weights' rounding the trials quantize with (``quantize_integer``).
    ``start_error``: ``e`` of ``ranges`` on ``probe`` if already measured (the first trial's,
    still counted); ``budget``: the trials the search may run."""
    found = _search(graph, tensors, ranges, auto, mode, means, settings, probe, options,
                    rounding, start_error, budget)
    if check is None:
        return found[-1]
    distinct = [r for i, r in enumerate(found) if r not in found[:i]]
    if len(distinct) == 1:
        return distinct[0]
    errors = [trial_error(graph, r, mode, means, settings, check, rounding) for r in distinct]
    log.info("AUTO ranges on held-out samples: output errors %s", errors)
    return distinct[int(np.argmin(errors))]


def _search(graph: Graph, tensors: Mapping[str, Any], ranges: Ranges, auto: list[str],
            mode: ConversionMode, means: Means | None, settings: OpSettings | None,
            probe: Probe, options: CalibrationOptions, rounding: WeightRounder | None,
            start_error: float | None = None, budget: int = AUTO_TRIALS
            ) -> tuple[Ranges, Ranges, Ranges]:
    """The search on ``probe``: (min/max, the best single method, the per-tensor choice)."""

    def error(trial: Ranges) -> float:
        if start_error is not None and trial == ranges:
            return start_error
        return trial_error(graph, trial, mode, means, settings, probe, rounding)

    candidates: dict[RangeMethod, dict[str, tuple]] = {}
    best, best_error, trials = dict(ranges), np.inf, 0
    chosen: dict[str, RangeMethod] = {}
    for method in CANDIDATES:  # each method's ranges are computed only when tried
        if trials >= budget:
            break
        candidates[method] = {n: METHOD_SETTERS[method](tensors[n], options) for n in auto}
        trial = {**ranges, **candidates[method]}
        e, trials = error(trial), trials + 1
        log.info("range method %s for every AUTO tensor: output error %.3e", method.name, e)
        if e < best_error * (1.0 - AUTO_MARGIN):
            best, best_error = trial, e
            chosen = dict.fromkeys(auto, method)
    one_method = best
    order = sorted(auto, key=lambda n: -_spread(candidates, n, best[n])) if candidates else []
    for name in order:
        for method, ranges_of in candidates.items():
            if trials >= budget:
                return dict(ranges), one_method, _done(best, chosen, best_error)
            if method is chosen.get(name) or ranges_of[name] == best[name]:
                continue
            trial = {**best, name: ranges_of[name]}
            e, trials = error(trial), trials + 1
            if e < best_error * (1.0 - AUTO_MARGIN):
                best, best_error, chosen[name] = trial, e, method
    return dict(ranges), one_method, _done(best, chosen, best_error)


def _done(best: Ranges, chosen: dict[str, RangeMethod], error: float) -> Ranges:
    counts: dict[str, int] = {}
    for method in chosen.values():
        counts[method.name] = counts.get(method.name, 0) + 1
    log.info("AUTO ranges: output error %.3e, methods %s", error, counts)
    return best
