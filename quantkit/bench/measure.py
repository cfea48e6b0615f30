"""One benchmark row: convert a model in one mode (timed, peak memory), score the result in
LiteRT against the float model, and time it against the other converter's model.

Latency: each mode's models (quantkit's and tf.lite's) run in turn, invoke after invoke on the
same test sample (``Settings.threads`` LiteRT threads, warm-up invokes first), so both see the
same machine load, in ``ROUNDS`` rounds of fresh interpreters; a row's latency is the median
of its invokes, and quantkit's latency ratio is its median over tf.lite's, with the lowest and
highest ratio of a single round as the noise it carries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import io
import os
import statistics
import sys
import threading
import time
import warnings
from typing import Any, Callable, Iterator

import numpy as np

from quantkit.bench.source import SourceModel
from quantkit.bench.types import BenchError, Converter, Reference, Row, Settings, SourceKind
from quantkit.metrics import accuracy, sqnr_db, top1_agreement

ROUNDS = 5  # latency rounds the ratio's noise range is taken over


class PeakRSS:
    """Samples this process's RSS in a background thread; ``peak_increase_mb`` afterwards."""

    def __init__(self, interval_s: float = 0.002):
        import psutil  # deferred: only the peak-memory probe needs it

        self._process = psutil.Process()
        self._interval_s = interval_s
        self._stop = threading.Event()
        self.baseline = self.peak = 0

    def _sample(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRSS:
        gc.collect()
        self.baseline = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)

    @property
    def peak_increase_mb(self) -> float:
        return (self.peak - self.baseline) / 2**20


@contextlib.contextmanager
def quiet(fd_level: bool) -> Iterator[None]:
    """Silence stdout and Python warnings; with ``fd_level`` also file descriptors 1 and 2
    (TF's converter logs from C++). Errors still propagate as exceptions."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not fd_level:
            yield
            return
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in (*saved, devnull):
                os.close(fd)


def convert(source: SourceModel, converter: Converter, preset: Any,
            dataset: Callable | None) -> tuple[bytes, float, float | None, float]:
    """(model bytes, conversion s, calibration s or None, peak RSS increase MB)."""
    import quantkit

    conv = source.converter(converter)
    preset.configure(conv, dataset)
    if converter == Converter.QUANTKIT:
        conv.calibration = quantkit.CalibrationOptions(progress=False)
    calibrate_s = None
    with PeakRSS() as memory:
        start = time.perf_counter()
        if converter == Converter.QUANTKIT and preset.spec.calibrated:
            conv.calibration_statistics = conv.calibrate()
            calibrate_s = time.perf_counter() - start
        with quiet(converter == Converter.TF_LITE):
            blob = conv.convert()
        convert_s = time.perf_counter() - start
    return blob, convert_s, calibrate_s, memory.peak_increase_mb


def _fed(runner: Any, ref: Reference) -> list[np.ndarray]:
    """The test inputs in the runner's input order: by name where the names agree (TF's
    converter orders a Keras model's inputs its own way), else as they are."""
    if len(ref.inputs) > 1 and sorted(runner.input_names) == sorted(ref.input_names):
        by_name = dict(zip(ref.input_names, ref.inputs))
        return [by_name[n] for n in runner.input_names]
    return ref.inputs


def _aligned(ref: Reference, names: list[str], outputs: list[np.ndarray]) -> list[np.ndarray]:
    """``outputs`` in the reference's order: by name where the names agree, else as given
    where the shapes do, else each matched to the one output of the reference's shape."""
    if len(outputs) > 1 and sorted(names) == sorted(ref.output_names):
        by_name = dict(zip(names, outputs))
        return [by_name[n] for n in ref.output_names]
    if [o.shape for o in outputs] == [r.shape for r in ref.outputs]:
        return outputs
    by_shape = {o.shape: o for o in outputs}
    if len(outputs) != len(ref.outputs) or len(by_shape) != len(outputs) \
            or any(r.shape not in by_shape for r in ref.outputs):
        raise BenchError(f"outputs {[o.shape for o in outputs]} do not match the float "
                         f"model's {[r.shape for r in ref.outputs]}")
    return [by_shape[r.shape] for r in ref.outputs]


def score(blob: bytes, ref: Reference, threads: int) -> dict[str, float | None]:
    """The row's fields that compare its LiteRT outputs with the float model's."""
    from quantkit.litert import Runner

    runner = Runner(blob, threads)
    outputs = _aligned(ref, runner.output_names, runner.run_all(_fed(runner, ref)))
    first = outputs[0]
    truth = ref.labels if ref.labels is not None else ref.outputs[0]
    return {
        "sqnr_db": min(sqnr_db(r, o) for r, o in zip(ref.outputs, outputs)),
        "top1_agreement": top1_agreement(ref.outputs[0], first) if ref.classes else None,
        "accuracy": None if ref.labels is None else accuracy(first, ref.labels),
        "metric": None if ref.metric is None else float(ref.metric(truth, first)),
    }


def latencies(blobs: list[bytes], ref: Reference,
              settings: Settings) -> list[list[list[float]]]:
    """Seconds per invoke of each model in each of ``ROUNDS`` rounds: per round fresh
    interpreters (a model's speed moves by a few % with where its buffers land), the models
    taking turns invoke by invoke, who goes first rotating from round to round."""
    from quantkit.litert import Runner

    per_round = max(1, -(-settings.invokes // ROUNDS))
    deadline = time.perf_counter() + settings.latency_budget_s
    times: list[list[list[float]]] = [[] for _ in blobs]
    for round_ in range(ROUNDS):
        order = [(i + round_) % len(blobs) for i in range(len(blobs))]
        runners = {i: Runner(blobs[i], settings.threads) for i in order}
        for runner in runners.values():
            runner.feed([x[:1] for x in _fed(runner, ref)])  # the first test sample
            for _ in range(settings.warmup_invokes):
                runner.interpreter.invoke()
        spent: dict[int, list[float]] = {i: [] for i in order}
        while len(spent[order[0]]) < per_round and (
                not spent[order[0]] or time.perf_counter() < deadline):
            for i in order:
                start = time.perf_counter()
                runners[i].interpreter.invoke()
                spent[i].append(time.perf_counter() - start)
        for i in order:
            times[i].append(spent[i])
    return times


def latency_ratio(ours: list[list[float]],
                  theirs: list[list[float]]) -> tuple[float, tuple[float, float]]:
    """``median(ours) / median(theirs)`` over every invoke, and the lowest and highest ratio
    of a single round (the noise the ratio carries)."""
    rounds = [statistics.median(a) / statistics.median(b) for a, b in zip(ours, theirs)]
    pooled = [statistics.median(sum(x, [])) for x in (ours, theirs)]
    return pooled[0] / pooled[1], (min(rounds), max(rounds))


def _error_text(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}"[:300]


def convert_row(source: SourceModel, preset: Any, converter: Converter,
                dataset: Callable | None, threads: int) -> tuple[Row, bytes | None]:
    """A row with its conversion measured (or its error), and the model bytes."""
    row = Row(source.name, preset.value, converter.value, threads=threads)
    try:
        if converter == Converter.INPUT:
            blob, times = source.model, (None, None, None)
        else:
            blob, *times = convert(source, converter, preset, dataset)
    except BenchError as error:  # a converter that cannot read this kind of model
        return dataclasses.replace(row, error=f"conversion: {error}"), None
    except Exception as error:  # noqa: BLE001 - the row records it
        return dataclasses.replace(row, error=f"conversion: {_error_text(error)}"), None
    from quantkit.tflite_io.reader import op_types

    convert_s, calibrate_s, peak_mb = times
    return dataclasses.replace(row, size_bytes=len(blob), op_count=len(op_types(blob)),
                               convert_s=convert_s, calibrate_s=calibrate_s,
                               peak_mem_mb=peak_mb), blob


def scored_row(source: SourceModel, preset: Any, converter: Converter,
               dataset: Callable | None, ref: Reference,
               settings: Settings) -> tuple[Row, bytes | None]:
    """One converter's row for the mode, converted and scored (not yet timed), and its
    model bytes (None when it failed)."""
    row, blob = convert_row(source, preset, converter, dataset, settings.threads)
    if blob is not None:
        try:
            row = dataclasses.replace(row, **score(blob, ref, settings.threads))
        except Exception as error:  # noqa: BLE001 - e.g. a model LiteRT cannot run
            row, blob = dataclasses.replace(row, error=f"LiteRT: {_error_text(error)}"), None
    return row, blob


def timed_rows(rows: list[Row], blobs: list[bytes | None], ref: Reference,
               settings: Settings) -> list[Row]:
    """The mode's rows (one per converter) with their latency, the models timed side by
    side, and quantkit's latency ratio over tf.lite's."""
    rows = list(rows)
    timed = [i for i, blob in enumerate(blobs) if blob is not None]
    if not timed:
        return rows
    times = latencies([blobs[i] for i in timed], ref, settings)
    for i, spent in zip(timed, times):
        pooled = sum(spent, [])
        rows[i] = dataclasses.replace(rows[i], latency_ms=1e3 * statistics.median(pooled),
                                      latency_invokes=len(pooled))
    by_converter = {rows[i].converter: spent for i, spent in zip(timed, times)}
    ours, theirs = (by_converter.get(c.value) for c in (Converter.QUANTKIT, Converter.TF_LITE))
    if ours and theirs:
        ratio, spread = latency_ratio(ours, theirs)
        i = next(i for i in timed if rows[i].converter == Converter.QUANTKIT.value)
        rows[i] = dataclasses.replace(rows[i], latency_ratio=ratio, latency_ratio_range=spread)
    return rows


def measure_mode(source: SourceModel, preset: Any, converters: list[Converter],
                 dataset: Callable | None, ref: Reference, settings: Settings) -> list[Row]:
    """The mode's row for each converter: converted, scored, then timed side by side."""
    scored = [scored_row(source, preset, converter, dataset, ref, settings)
              for converter in converters]
    return timed_rows([row for row, _ in scored], [blob for _, blob in scored], ref, settings)


def input_row(source: SourceModel, ref: Reference, settings: Settings) -> Row:
    """The given float .tflite itself (no conversion), scored and timed like the others."""
    if source.kind != SourceKind.TFLITE:
        raise ValueError("only a .tflite source has an input row")
    from quantkit.presets import Preset

    return measure_mode(source, Preset.FLOAT32, [Converter.INPUT], None, ref, settings)[0]
