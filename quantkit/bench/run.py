"""``quantkit.benchmark``: every mode of a user's model, side by side, in one call."""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from quantkit.bench import data as bench_data
from quantkit.bench import measure, report
from quantkit.bench.source import SourceModel, load
from quantkit.bench.types import (BenchError, Converter, ModelSummary, Reference, Result, Row,
                                  Settings, SourceKind)
from quantkit.metrics import accuracy

log = logging.getLogger(__name__)
Log = Callable[[str], None]


def machine_info() -> dict[str, object]:
    import datetime
    import importlib.metadata
    import platform

    import keras  # deferred: loads TF, which starts only when used
    import tensorflow as tf  # deferred: TF starts only when used (`quantkit --help` stays TF-free)

    from quantkit._version import __version__

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "quantkit": __version__,
        "ai_edge_litert": importlib.metadata.version("ai-edge-litert"),
    }


def _presets(modes: Iterable[Any] | None) -> list[Any]:
    from quantkit.presets import Preset

    if modes is None:
        return list(Preset)
    try:
        return [m if isinstance(m, Preset) else Preset(m) for m in modes]
    except ValueError:
        raise BenchError(f"modes {list(modes)}: choose from "
                         f"{', '.join(p.value for p in Preset)}") from None


def calibration_dataset(calibration: list[np.ndarray] | Callable | None,
                        ref: Reference) -> Callable | None:
    """The representative dataset of a benchmark's calibration data."""
    return (calibration if calibration is None or callable(calibration)
            else bench_data.representative(calibration, ref.input_names))


def summarize(source: SourceModel, dataset: Callable | None, ref: Reference,
              metric_name: str | None = None) -> ModelSummary:
    """The benchmarked model and its float reference (the table's header line)."""
    count = 0 if dataset is None else sum(1 for _ in dataset())
    first = ref.outputs[0]
    return ModelSummary(
        source.name, source.description, count, len(ref.inputs[0]), ref.labels is not None,
        None if ref.labels is None else accuracy(first, ref.labels), metric_name,
        None if ref.metric is None else float(ref.metric(
            ref.labels if ref.labels is not None else first, first)), ref.classes)


def converters_for(with_tf: bool) -> list[Converter]:
    return [Converter.QUANTKIT] + ([Converter.TF_LITE] if with_tf else [])


def measure_source(source: SourceModel, calibration: list[np.ndarray] | Callable | None,
                   ref: Reference, modes: Sequence[Any], with_tf: bool,
                   settings: Settings, progress: Log | None = None,
                   metric_name: str | None = None) -> tuple[ModelSummary, list[Row]]:
    """Every mode's rows for one model (and first, for a .tflite, the model itself)."""
    progress = progress or log.info
    dataset = calibration_dataset(calibration, ref)
    summary = summarize(source, dataset, ref, metric_name)
    converters = converters_for(with_tf)
    total = len(modes) * len(converters) + (source.kind == SourceKind.TFLITE)
    rows: list[Row] = []

    def emit(new: list[Row]) -> None:
        for row in new:
            rows.append(row)
            progress(f"[{len(rows)}/{total}] {report.progress_line(row)}")

    progress(f"== {source.name}: {summary.test_samples} test samples, "
             f"{summary.calibration_samples} calibration samples, {len(modes)} mode(s) × "
             f"{', '.join(c.value for c in converters)}")
    if source.kind == SourceKind.TFLITE:
        emit([measure.input_row(source, ref, settings)])
    for preset in modes:
        emit(measure.measure_mode(source, preset, converters, dataset, ref, settings))
    return summary, rows


def benchmark(model: Any, data: Any, *, calibration: Any = None, labels: Any = None,
              metric: Any = None, modes: Iterable[Any] | None = None, with_tf: bool = False,
              out_dir: str | os.PathLike | None = None, settings: Settings = Settings(),
              test_samples: int | None = None, calibration_samples: int | None = None,
              name: str | None = None, progress: Log | None = None,
              command: str = "quantkit.benchmark(...)") -> Result:
    """Convert ``model`` in every mode (optionally with tf.lite too) and measure each result.

    Args:
        model: a keras.Model, a ``.keras``/``.h5`` file, a SavedModel folder or a float
            ``.tflite`` file (its converted rows fail until ``from_tflite`` exists, issue #13).
        data: test inputs: an array, a dict by input name, a list in input order, an
            ``.npy``/``.npz`` file or a representative dataset (``quantkit.datasets``).
        calibration: calibration samples, same forms (needed by the calibrated modes).
        labels: class indices for ``data`` (array or ``.npy``/``.npz``/``.txt``/``.csv``):
            accuracy of each model's first output.
        metric: ``f(y_true, y_pred) -> float`` or ``"module:function"``; ``y_true`` is the
            labels, or without labels the float model's first output.
        modes: ``quantkit.Preset`` members or values (default: all).
        with_tf: add a row per mode from ``tf.lite.TFLiteConverter`` (and the latency ratio).
        out_dir: write results.json, results.md and accuracy_vs_size.png there.
        settings: threads, timed invokes per model and the latency budget.
        test_samples / calibration_samples: use at most this many.
        progress: called with one line per measured row (default: logging at INFO).

    Returns:
        The ``Result``: ``quantkit.bench.markdown(result)``, ``figure(result)``.

    Raises:
        BenchError: a model, data, labels or metric that cannot be used (one line); a row
        that fails (a conversion error, a model LiteRT cannot run) is a row with its error.
    """
    source = load(model, name)
    presets = _presets(modes)
    inputs = bench_data.load_inputs(data, source.inputs, "data", test_samples)
    calib = None
    if calibration is not None:
        calib = bench_data.load_inputs(calibration, source.inputs, "calibration",
                                       calibration_samples)
    elif any(p.spec.calibrated for p in presets):
        raise BenchError(f"modes {', '.join(p.value for p in presets if p.spec.calibrated)} "
                         f"need calibration data")
    truncated = test_samples is not None
    metric_name, function = (None, None) if metric is None else bench_data.load_metric(metric)
    ref = source.reference(
        inputs, None if labels is None else bench_data.load_labels(labels, len(inputs[0]),
                                                                   truncated), function)
    summary, rows = measure_source(source, calib, ref, presets, with_tf, settings, progress,
                                   metric_name)
    result = Result(machine_info(), command, settings, (summary,), tuple(rows))
    if out_dir is not None:
        report.write_all(result, os.fspath(out_dir))
    return result
