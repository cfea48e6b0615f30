"""The calibration stage: quantkit's side of the ``calibration`` engine's protocol.

The executor is ``quantkit.runtime.LiteRTExecutor``: LiteRT runs the float IR graph (after
passes, so every tensor the quantizer will see is observed, fused activations included), as
quantkit writes it, on each batch. The engine
streams the representative dataset through it into observers; ``ranges`` then turns the
statistics into the (min, max) per tensor that the quantizer plans from, and ``means`` gives
the per-channel input means that bias correction reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

import calibration
import calibration.ranges
from calibration import CalibrationStats, InputSpec, ObserverKind
from quantkit.ir.graph import Graph, Tensor
from quantkit.loop_runtime import loop_inputs, loop_values
from quantkit.ops import BiasCorrection, spec
from quantkit.quantize import Means, Ranges, lstm
from quantkit.recipe import RangeMethod, WeightRounding
from quantkit.runtime import LiteRTExecutor
from quantkit.types import ConversionError, Phase


@dataclass(frozen=True)
class CalibrationOptions:
    """How the converter calibrates (``converter.calibration``).

    ``observer``: the statistic collected (min/max, as TF, by default). ``batch_size``: rows per
    float forward pass (a model with a fixed batch dim is fed one sample at a time); None: as
    many rows as keep the batch's observed activations within ``batch_memory_mb``, from 1 to
    ``MAX_AUTO_BATCH`` (every activation of a batch is alive at once, so this bounds the
    memory calibration needs: ResNet50 at 224 holds 67 MB per row). ``progress``: a tqdm bar;
    None shows it only on a terminal. ``percentile``: the share of values the HISTOGRAM
    observer's range keeps (the rest are clipped as outliers). ``num_threads``: LiteRT's
    threads for the float runs; None: one per CPU this process may use (as TF's own runs).
    ``range_method``: how every tensor's statistics become its range (a recipe's
    ``range_method`` overrides it per op); None: the observer's own (min/max, or the
    percentile for histograms). Methods other than MIN_MAX collect histograms.
    ``weight_rounding``: how weights become integers (a recipe's ``weight_rounding``
    overrides it per op); ADAROUND learns each weight's rounding on the float inputs of the
    first ``ADAROUND_SAMPLES`` calibration samples (``quantize.adaround``).
    """

    observer: ObserverKind = ObserverKind.MIN_MAX
    batch_size: int | None = None
    progress: bool | None = None
    percentile: float = 99.99
    batch_memory_mb: float = 256.0
    num_threads: int | None = None
    range_method: RangeMethod | None = None
    weight_rounding: WeightRounding = WeightRounding.NEAREST

    def __post_init__(self) -> None:
        rounding = self.weight_rounding
        if not isinstance(rounding, WeightRounding):
            values = {r.value: r for r in WeightRounding} | WeightRounding.__members__
            if rounding not in values:
                raise ConversionError(Phase.OPTIONS, f"CalibrationOptions: weight_rounding="
                                      f"{rounding!r} is not one of {', '.join(values)}")
            object.__setattr__(self, "weight_rounding", values[rounding])


MAX_AUTO_BATCH = 32


def observed_tensors(graph: Graph) -> list[Tensor]:
    """The tensors calibration measures: every float activation (model inputs included; a
    fused RNN's variable states are not activations: their values over time are derived, see
    ``executors``)."""
    return [t for t in graph.tensors()
            if not t.is_const and not t.is_variable and np.dtype(t.dtype) == np.float32]


def weighted_inputs(graph: Graph) -> list[Tensor]:
    """The activation inputs of ops with weights: bias correction needs their channel means."""
    inputs = [op.inputs[spec(op.type).weights.activation_input] for op in graph.ops
              if spec(op.type).bias_correction is not BiasCorrection.NONE]
    return [t for t in inputs if not t.is_const and np.dtype(t.dtype) == np.float32]


def input_specs(graph: Graph) -> list[InputSpec]:
    """The graph's inputs; a dynamic batch dim is fixed to its states' (a fused RNN's
    variables are allocated for one batch size), so samples are fed in batches of that size."""
    batch = state_batch(graph)
    return [InputSpec(name, (batch, *t.shape[1:]) if batch and t.shape and t.shape[0] is None
                      else t.shape, t.dtype)
            for name, t in zip(graph.input_names, graph.inputs)]


def state_batch(graph: Graph) -> int | None:
    """The batch dim of the graph's 2-D variable tensors ([batch, units] states), when they
    agree on one; else None."""
    dims = {t.shape[0] for t in graph.tensors()
            if t.is_variable and t.shape is not None and len(t.shape) == 2}
    return dims.pop() if len(dims) == 1 else None


def executors(graphs: list[Graph], options: CalibrationOptions,
              derive: Mapping[str, Callable[[dict], dict]] | None = None
              ) -> dict[str, LiteRTExecutor]:
    """One LiteRT executor per signature, observing ``observed_tensors`` (kept by callers
    that calibrate several batches of samples, as quantkit.beam's workers), the values a
    fused LSTM keeps inside (its cell state over time: ``lstm.hidden_values``) and those of
    every step of a WHILE's condition and body (``loop_runtime.loop_values``). ``derive``:
    per signature, more values computed from each batch's (observed too)."""
    threads = options.num_threads or _cpus()

    def both(g: Graph) -> Callable[[dict], dict] | None:
        pair = [f for f in (lstm.hidden_values(g), loop_values(g, threads),
                            (derive or {}).get(g.signature_key)) if f]
        return None if not pair else pair[0] if len(pair) == 1 else (
            lambda values: {k: v for f in pair for k, v in f(values).items()})

    # Views, not copies: the runner has read a batch's values before it runs the next.
    return {g.signature_key: LiteRTExecutor(
        g, observed_tensors(g) + loop_inputs(g), num_threads=threads, copy=False,
        derive=both(g)) for g in graphs}


def calibrate_graphs(graphs: list[Graph], dataset: Any, options: CalibrationOptions,
                     runners: Mapping[str, LiteRTExecutor] | None = None) -> CalibrationStats:
    """Run ``dataset`` through the float ``graphs`` (one per signature); their statistics.
    ``runners``: the ``executors`` to use (default: new ones)."""
    if options.batch_size is not None and options.batch_size < 1:
        raise ConversionError(Phase.CALIBRATION, f"batch_size={options.batch_size}: must be ≥ 1")
    return calibration.calibrate(
        runners or executors(graphs, options), dataset,
        {g.signature_key: input_specs(g) for g in graphs},
        observer=options.observer, batch_size=batch_rows(graphs, options),
        progress=options.progress,
        channel_means={t.name for g in graphs for t in weighted_inputs(g)})


def _cpus() -> int:
    """The CPUs this process may run on (TF's own default thread count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def row_bytes(graph: Graph) -> int:
    """Bytes of the observed activations per batch row (dims unknown besides the batch: 1)."""
    def size(t: Tensor) -> int:
        dims = [d or 1 for d in (t.shape or ())[1:]]
        return int(np.prod(dims, dtype=np.int64)) * np.dtype(t.dtype).itemsize
    return sum(size(t) for t in observed_tensors(graph))


def batch_rows(graphs: list[Graph], options: CalibrationOptions) -> int:
    """``options.batch_size``, or the rows whose activations fit ``batch_memory_mb``."""
    if options.batch_size is not None:
        return options.batch_size
    largest = max((row_bytes(g) for g in graphs), default=0)
    fitting = int(options.batch_memory_mb * 2**20 // max(largest, 1))
    return max(1, min(MAX_AUTO_BATCH, fitting))


RangeSetter = Callable[[Any, CalibrationOptions], tuple[float, float]]

# How each observer's statistics become a range.
RANGE_SETTERS: dict[ObserverKind, RangeSetter] = {
    ObserverKind.MIN_MAX: lambda s, _: (s.min, s.max),
    ObserverKind.MOVING_AVERAGE_MIN_MAX: lambda s, _: (s.min, s.max),
    ObserverKind.HISTOGRAM: lambda s, o: calibration.percentile_range(s, o.percentile),
}


# How a tensor's range method (a recipe's setting) reads its statistics.
METHOD_SETTERS: dict[RangeMethod, RangeSetter] = {
    RangeMethod.MIN_MAX: lambda s, _: (s.min, s.max),
    RangeMethod.PERCENTILE: lambda s, o: calibration.percentile_range(s, o.percentile),
    RangeMethod.MSE: lambda s, _: calibration.ranges.mse_range(s),
    RangeMethod.ENTROPY: lambda s, _: calibration.ranges.entropy_range(s),
    # AUTO starts from min/max; quantkit.accuracy then picks a method per tensor by the error
    # at the model's outputs (it needs the model, not only the statistics)
    RangeMethod.AUTO: lambda s, _: (s.min, s.max),
}
# Methods that read histograms (calibration collects them when any tensor uses one).
HISTOGRAM_METHODS = frozenset({RangeMethod.PERCENTILE, RangeMethod.MSE, RangeMethod.ENTROPY,
                               RangeMethod.AUTO})


def ranges(stats: CalibrationStats, signature_key: str, options: CalibrationOptions,
           methods: Mapping[str, RangeMethod] | None = None,
           default: RangeMethod | None = None) -> Ranges:
    """(min, max) per tensor name of one signature: by the tensor's range method in
    ``methods``, else ``default``, else the statistics' own observer kind."""
    tensors = stats.for_signature(signature_key).tensors
    observer = ObserverKind(stats.observer)
    chosen = {name: (methods or {}).get(name, default) for name in tensors}
    for name, method in chosen.items():
        if method in HISTOGRAM_METHODS and observer is not ObserverKind.HISTOGRAM:
            raise ConversionError(
                Phase.CALIBRATION, f"tensor {name!r}: range method {method.name} needs histogram "
                f"statistics, these are {observer.name}; calibrate with "
                "CalibrationOptions(observer=ObserverKind.HISTOGRAM)")
    return {name: (METHOD_SETTERS[chosen[name]] if chosen[name] else RANGE_SETTERS[observer])(
        s, options) for name, s in tensors.items()}


def means(stats: CalibrationStats, signature_key: str) -> Means:
    """Per-channel means per tensor name of one signature (those calibration collected)."""
    return {name: m.mean for name, m in stats.for_signature(signature_key).channel_means.items()
            if m.count}
