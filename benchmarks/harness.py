"""The benchmark harness: models × modes × {quantkit, tf.lite.TFLiteConverter}, in one run.

Every mode of ``quantkit.Preset`` (float32, dynamic range, float16, int8 per channel, int8 per
tensor, int16x8, uint8 IO) is set on both converters by ``Preset.configure``, with the same
calibration samples. Per row: model size, op count, accuracy (where the test data has labels),
SQNR and top-1 agreement of the LiteRT outputs against the Keras float model, conversion wall
time, calibration time, peak memory during the conversion, and LiteRT latency. Writes
``results.json``, ``results.md`` and ``accuracy_vs_size.png`` (see ``benchmarks.report``).

    .venv/bin/python -m benchmarks.harness                # the quick subset (`make bench`)
    .venv/bin/python -m benchmarks.harness --all --out benchmarks/results/all
    .venv/bin/python -m benchmarks.harness --models digits_cnn --modes float32 int8

Methods. Conversion time: wall time of ``convert()`` (quantkit: ``calibrate()`` + ``convert()``
reusing its statistics), TF's stdout silenced. Calibration time: quantkit's ``calibrate()``;
"n/a" for tf.lite, whose public API does not run calibration on its own. Peak memory: the
process RSS sampled every 2 ms by a background thread during the conversion, reported as the
peak increase over the RSS just before it (after ``gc.collect()``). Latency: one test sample,
``--threads`` LiteRT threads, 3 warm-up invokes, then the median of ``--invokes`` invokes
(fewer when they pass ``--latency-budget`` seconds; the count is in the JSON).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import io
import os
import shlex
import statistics
import sys
import threading
import time
import warnings

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import psutil  # noqa: E402
import tensorflow as tf  # noqa: E402
from ai_edge_litert.interpreter import Interpreter  # noqa: E402

import quantkit  # noqa: E402
from benchmarks import report  # noqa: E402
from benchmarks.models import ALL, BY_NAME, QUICK, BenchModel, ModelData  # noqa: E402
from quantkit.litert import quantize_input, run_float  # noqa: E402
from quantkit.metrics import accuracy, sqnr_db, top1_agreement  # noqa: E402
from quantkit.tflite_io.reader import op_types  # noqa: E402

CONVERTERS = ("quantkit", "tf.lite")
DEFAULT_OUT = os.path.join("benchmarks", "results")
WARMUP_INVOKES = 3


@dataclasses.dataclass(frozen=True)
class Settings:
    threads: int = 1                 # LiteRT num_threads for every run
    invokes: int = 50                # timed single-sample invokes per row
    latency_budget_s: float = 10.0   # stop timing a row's invokes after this long
    samples: int | None = None       # calibration samples; None: each model's default


@dataclasses.dataclass(frozen=True)
class Row:
    """One (model, mode, converter) measurement; None where not measured or not applicable."""

    model: str
    mode: str
    converter: str
    size_bytes: int | None = None
    op_count: int | None = None
    accuracy: float | None = None        # on the labelled test set
    sqnr_db: float | None = None         # LiteRT vs Keras float outputs; inf when equal
    top1_agreement: float | None = None  # share of test inputs with Keras' arg-max
    convert_s: float | None = None       # calibration included
    calibrate_s: float | None = None     # quantkit's calibrate(); None for tf.lite
    peak_mem_mb: float | None = None     # peak RSS increase during the conversion
    latency_ms: float | None = None      # median single-sample invoke
    latency_invokes: int = 0
    threads: int = 1
    error: str | None = None             # why a conversion or a LiteRT run failed


@dataclasses.dataclass(frozen=True)
class ModelSummary:
    name: str
    description: str
    calibration_samples: int
    test_samples: int
    labelled: bool
    keras_accuracy: float | None         # the float Keras model's, for reference


@dataclasses.dataclass(frozen=True)
class Result:
    machine: dict[str, object]
    command: str
    settings: Settings
    models: tuple[ModelSummary, ...]
    rows: tuple[Row, ...]


class PeakRSS:
    """Samples this process's RSS in a background thread; ``peak_increase_mb`` afterwards."""

    def __init__(self, interval_s: float = 0.002):
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


def make_converter(converter: str, model, preset: quantkit.Preset, calibration: np.ndarray):
    """quantkit's or tf.lite's converter for ``model``, set to ``preset`` by the shared table."""
    module = quantkit if converter == "quantkit" else tf.lite
    conv = module.TFLiteConverter.from_keras_model(model)
    preset.configure(conv, lambda: ([x[None]] for x in calibration))  # unread if uncalibrated
    if module is quantkit:
        conv.calibration = quantkit.CalibrationOptions(progress=False)
    return conv


@contextlib.contextmanager
def _quiet(fd_level: bool):
    """Silence stdout and Python warnings; with ``fd_level`` also file descriptors 1 and 2
    (TF's C++ logging). Errors still propagate as exceptions with their messages."""
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


def convert(converter: str, model, preset: quantkit.Preset,
            calibration: np.ndarray) -> tuple[bytes, float, float | None, float]:
    """(model bytes, conversion s, calibration s or None, peak RSS increase MB)."""
    conv = make_converter(converter, model, preset, calibration)
    calibrate_s = None
    with PeakRSS() as memory:
        start = time.perf_counter()
        if converter == "quantkit" and preset.spec.calibrated:
            conv.calibration_statistics = conv.calibrate()
            calibrate_s = time.perf_counter() - start
        with _quiet(converter == "tf.lite"):  # TF's converter prints its export and logs
            blob = conv.convert()
        convert_s = time.perf_counter() - start
    return blob, convert_s, calibrate_s, memory.peak_increase_mb


def latency(blob: bytes, sample: np.ndarray, settings: Settings) -> tuple[float, int]:
    """(median ms of single-sample invokes, how many were timed)."""
    interpreter = Interpreter(model_content=blob, num_threads=settings.threads)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], [1, *sample.shape])
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], quantize_input(sample[None], detail))
    for _ in range(WARMUP_INVOKES):
        interpreter.invoke()
    times: list[float] = []
    deadline = time.perf_counter() + settings.latency_budget_s
    while len(times) < settings.invokes and (len(times) < 3 or time.perf_counter() < deadline):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times), len(times)


def _print(message: str) -> None:
    print(message, flush=True)  # progress shows as it goes, also when piped to a file


def _error_text(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def measure(name: str, data: ModelData, reference: np.ndarray, preset: quantkit.Preset,
            converter: str, settings: Settings) -> Row:
    """One row; a failed conversion or LiteRT run is recorded in ``error``, not raised."""
    row = Row(name, preset.value, converter, threads=settings.threads)
    try:
        blob, convert_s, calibrate_s, peak_mb = convert(converter, data.model, preset,
                                                         data.calibration)
    except Exception as error:  # noqa: BLE001 - the row records it
        return dataclasses.replace(row, error=f"conversion: {_error_text(error)}")
    row = dataclasses.replace(row, size_bytes=len(blob), op_count=len(op_types(blob)),
                              convert_s=convert_s, calibrate_s=calibrate_s,
                              peak_mem_mb=peak_mb)
    try:
        outputs = run_float(blob, data.test_inputs, settings.threads)
        sqnr = sqnr_db(reference, outputs)
        row = dataclasses.replace(
            row, sqnr_db=sqnr,
            top1_agreement=top1_agreement(reference, outputs),
            accuracy=(None if data.test_labels is None
                      else accuracy(outputs, data.test_labels)))
        ms, invokes = latency(blob, data.test_inputs[0], settings)
        return dataclasses.replace(row, latency_ms=ms, latency_invokes=invokes)
    except Exception as error:  # noqa: BLE001 - e.g. a model LiteRT cannot run
        return dataclasses.replace(row, error=f"LiteRT: {_error_text(error)}")


def benchmark_model(entry: BenchModel, presets: list[quantkit.Preset], settings: Settings,
                    log=None) -> tuple[ModelSummary, list[Row]]:
    log = log or _print
    samples = settings.samples or entry.default_samples
    log(f"== {entry.name}: building ({samples} calibration samples) ...")
    data = entry.build(samples)
    reference = np.asarray(data.model.predict(data.test_inputs, batch_size=64, verbose=0))
    keras_accuracy = (None if data.test_labels is None else
                      accuracy(reference, data.test_labels))
    summary = ModelSummary(entry.name, entry.description, len(data.calibration),
                           len(data.test_inputs), data.test_labels is not None, keras_accuracy)
    rows = []
    for preset in presets:
        for converter in CONVERTERS:
            row = measure(entry.name, data, reference, preset, converter, settings)
            rows.append(row)
            log("  " + report.progress_line(row))
    return summary, rows


def machine_info() -> dict[str, object]:
    import datetime
    import importlib.metadata
    import platform

    import keras

    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "quantkit": quantkit.__version__,
        "ai_edge_litert": importlib.metadata.version("ai-edge-litert"),
    }


def run(entries: list[BenchModel], presets: list[quantkit.Preset], settings: Settings,
        out_dir: str, command: str, log=None) -> Result:
    """Benchmark every entry × preset × converter; write the three outputs into ``out_dir``."""
    log = log or _print
    summaries, rows = [], []
    for entry in entries:
        summary, model_rows = benchmark_model(entry, presets, settings, log)
        summaries.append(summary)
        rows.extend(model_rows)
    result = Result(machine_info(), command, settings, tuple(summaries), tuple(rows))
    for path in report.write_all(result, out_dir):
        log(f"wrote {path}")
    return result


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true",
                        help=f"the whole matrix: {', '.join(ALL)}")
    parser.add_argument("--models", nargs="+", choices=ALL, metavar="MODEL",
                        help=f"models to run (default: {' '.join(QUICK)}; one of {ALL})")
    parser.add_argument("--modes", nargs="+", choices=[p.value for p in quantkit.Preset],
                        default=[p.value for p in quantkit.Preset], metavar="MODE",
                        help="quantkit.Preset values (default: all seven)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=Settings.threads,
                        help="LiteRT threads (default: %(default)s)")
    parser.add_argument("--invokes", type=int, default=Settings.invokes,
                        help="timed single-sample invokes per row (default: %(default)s)")
    parser.add_argument("--latency-budget", type=float, default=Settings.latency_budget_s,
                        help="seconds of timed invokes per row at most (default: %(default)s)")
    parser.add_argument("--samples", type=int,
                        help="calibration samples (default: per model, 200 for the digit "
                             "CNNs, 16 for keras.applications)")
    args = parser.parse_args(argv)
    names = args.models or (ALL if args.all else QUICK)
    settings = Settings(args.threads, args.invokes, args.latency_budget, args.samples)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m benchmarks.harness", *(shlex.quote(a) for a in given)])
    return run([BY_NAME[n] for n in names], [quantkit.Preset(m) for m in args.modes], settings,
               args.out, command)


if __name__ == "__main__":
    main()
