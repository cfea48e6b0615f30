"""Calibration and rounding beyond min/max: every range method, CLE and ``Optimize.ACCURACY``,
per-channel and per-tensor weights, side by side with tf.lite.TFLiteConverter (issue #15).

Models (all trained here or with BatchNorm statistics from data; nothing downloaded):
``mnist_cnn`` and ``digits_cnn`` (benchmarks.models), ``dsconv_cnn`` (a depthwise-separable
MobileNet-style CNN, benchmarks.zoo.dsconv) and a keras.applications architecture with
BatchNorm statistics measured on natural-image crops (``--applications``, default
MobileNetV2 at 96×96; its rows have no accuracy, there are no labels).

Every converter gets the same calibration samples and writes int8 (TFLITE_BUILTINS_INT8 ops,
float model IO); each row is the output SQNR (dB) against the Keras model and the accuracy on
the test inputs (distinct from the calibration samples), and the conversion time.
Rows: ``tf.lite`` (TF's converter: min/max ranges), quantkit ``DEFAULT`` (min/max, bias
correction), quantkit with ``CalibrationOptions(range_method=...)`` for each method, ``CLE``
(DEFAULT with cross-layer equalization) and ``ACCURACY`` (``Optimize.ACCURACY``); ``+ABSORB``
adds high-bias absorption (``converter.high_bias_absorption``), ``+RELU6`` equalization
through ReLU6 (``converter.equalize_relu6``), ``ADAROUND`` / ``+ADAROUND`` AdaRound weights
(``CalibrationOptions(weight_rounding=WeightRounding.ADAROUND)``). ``dsconv_relu6_cnn`` is
``dsconv_cnn`` with ReLU6 activations.

    .venv/bin/python -m benchmarks.accuracy_methods                 # ≈ 6 min on 2 cores
    .venv/bin/python -m benchmarks.accuracy_methods --models mnist_cnn --granularity per_channel

``--time-ratio`` times ACCURACY against DEFAULT only (warmed-up medians). The run
writes ``results.json``, ``results.md`` and ``accuracy_methods.png`` into ``-o`` (default
``benchmarks/results/accuracy_methods``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import os
import pathlib
import time
from dataclasses import asdict, dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import quantkit  # noqa: E402
from quantkit.litert import run_float  # noqa: E402
from quantkit.metrics import accuracy, sqnr_db  # noqa: E402
from quantkit.recipe import RangeMethod  # noqa: E402

OUT = pathlib.Path(__file__).parent / "results" / "accuracy_methods"
METHODS = ("tf.lite", "DEFAULT", "MOVING_AVERAGE", "PERCENTILE", "MSE", "ENTROPY", "AUTO",
           "CLE", "CLE+ABSORB", "CLE+RELU6", "ADAROUND", "ACCURACY", "ACCURACY+ABSORB", "ACCURACY+RELU6",
           "ACCURACY+ADAROUND")
GRANULARITIES = ("per_channel", "per_tensor")
TRAINED = ("mnist_cnn", "digits_cnn", "dsconv_cnn")


@dataclass(frozen=True)
class Row:
    model: str
    granularity: str
    method: str
    sqnr_db: float
    accuracy: float | None
    float_accuracy: float | None
    convert_s: float
    size: int


def _data(name: str, samples: int):
    """(keras model, calibration samples, test inputs, test labels or None)."""
    if name in ("dsconv_cnn", "dsconv_relu6_cnn"):
        from benchmarks.zoo.dsconv import trained_dsconv_cnn
        from benchmarks.zoo.mnist import load_mnist

        x_train, _, x_test, y_test = load_mnist()
        model = trained_dsconv_cnn(relu6=name == "dsconv_relu6_cnn")
        return model, x_train[:samples], x_test, y_test
    if name in ("mnist_cnn", "digits_cnn"):
        from benchmarks.models import BY_NAME

        built = BY_NAME[name].build(samples)
        return built.model, built.calibration, built.test_inputs, built.test_labels
    from benchmarks.zoo.applications import application
    from benchmarks.zoo.images import application_inputs

    app, size = name.split("_") if "_" in name else (name, "96")
    images = application_inputs(app, samples + 32, int(size))
    return application(app, int(size)), images[:samples], images[samples:], None


def _convert(model, calibration: np.ndarray, method: str, per_tensor: bool) -> bytes:
    module = tf.lite if method == "tf.lite" else quantkit
    converter = module.TFLiteConverter.from_keras_model(model)
    base, _, extra = method.partition("+")
    converter.optimizations = [quantkit.Optimize.ACCURACY if base == "ACCURACY"
                               else module.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None]] for x in calibration)
    converter.target_spec.supported_ops = [module.OpsSet.TFLITE_BUILTINS_INT8]
    if per_tensor:
        converter._experimental_disable_per_channel = True
    if module is quantkit:
        options = quantkit.CalibrationOptions(progress=False)
        if method == "MOVING_AVERAGE":
            options = quantkit.CalibrationOptions(
                progress=False, observer=quantkit.ObserverKind.MOVING_AVERAGE_MIN_MAX)
        elif method in RangeMethod.__members__:
            options = quantkit.CalibrationOptions(progress=False,
                                                  range_method=RangeMethod[method])
        if method == "ADAROUND" or extra == "ADAROUND":
            options = dataclasses.replace(options,
                                          weight_rounding=quantkit.WeightRounding.ADAROUND)
        converter.calibration = options
        converter.cross_layer_equalization = True if base == "CLE" else None
        converter.high_bias_absorption = True if extra == "ABSORB" else None
        converter.equalize_relu6 = extra == "RELU6"
    with contextlib.redirect_stdout(io.StringIO()):  # TF's converter prints its export
        return converter.convert()


def measure(name: str, methods: list[str], granularities: list[str],
            samples: int) -> list[Row]:
    model, calibration, x_test, y_test = _data(name, samples)
    reference = model.predict(x_test, verbose=0, batch_size=64)
    float_acc = accuracy(reference, y_test) if y_test is not None else None
    rows = []
    for granularity in granularities:
        for method in methods:
            start = time.perf_counter()
            tflite = _convert(model, calibration, method, granularity == "per_tensor")
            elapsed = time.perf_counter() - start
            out = run_float(tflite, x_test)
            row = Row(name, granularity, method, round(sqnr_db(reference, out), 2),
                      None if y_test is None else round(accuracy(out, y_test), 4), float_acc,
                      round(elapsed, 2), len(tflite))
            print(f"{name:18s} {granularity:11s} {method:15s} SQNR {row.sqnr_db:6.2f} dB  "
                  f"acc {row.accuracy}  (float {float_acc})  {row.convert_s:.2f} s", flush=True)
            rows.append(row)
    return rows


def time_ratio(name: str, samples: int, repeats: int = 3, method: str = "ACCURACY"
               ) -> tuple[float, float]:
    """Median conversion time (s) of Optimize.DEFAULT and ``method`` (per-channel),
    alternating, after a warm-up conversion (the first conversion in a process pays TF's
    start-up: the table's times are not for ratios)."""
    model, calibration, _, _ = _data(name, samples)
    _convert(model, calibration, "DEFAULT", False)
    times: dict[str, list[float]] = {"DEFAULT": [], method: []}
    for _ in range(repeats):
        for timed in times:
            start = time.perf_counter()
            _convert(model, calibration, timed, False)
            times[timed].append(time.perf_counter() - start)
    return float(np.median(times["DEFAULT"])), float(np.median(times[method]))


def markdown(rows: list[Row]) -> str:
    lines = ["| model | weights | method | SQNR (dB) | accuracy | float acc. | convert (s) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: |"]
    for r in rows:
        acc = "" if r.accuracy is None else f"{100 * r.accuracy:.1f} %"
        facc = "" if r.float_accuracy is None else f"{100 * r.float_accuracy:.1f} %"
        lines.append(f"| {r.model} | {r.granularity} | {r.method} | {r.sqnr_db:.2f} | {acc} | "
                     f"{facc} | {r.convert_s:.2f} |")
    return "\n".join(lines)


def summary(rows: list[Row]) -> str:
    """The issue's criteria: ACCURACY vs tf.lite per model, and per-tensor vs per-channel."""
    by = {(r.model, r.granularity, r.method): r for r in rows}
    lines, gains = [], []
    for model in dict.fromkeys(r.model for r in rows):
        ours, theirs = by.get((model, "per_channel", "ACCURACY")), by.get(
            (model, "per_channel", "tf.lite"))
        if ours and theirs:
            gains.append(ours.sqnr_db - theirs.sqnr_db)
            default = by.get((model, "per_channel", "DEFAULT"))
            ratio = ours.convert_s / default.convert_s if default else float("nan")
            lines.append(f"{model}: ACCURACY {ours.sqnr_db:.2f} dB vs tf.lite "
                         f"{theirs.sqnr_db:.2f} dB ({gains[-1]:+.2f} dB), time {ratio:.1f}× "
                         "DEFAULT's")
        for method in ("DEFAULT", "CLE", "ACCURACY"):
            pc, pt = by.get((model, "per_channel", method)), by.get((model, "per_tensor", method))
            if pc and pt and method != "DEFAULT":
                base = by.get((model, "per_channel", "DEFAULT"))
                lines.append(f"{model}: per-tensor {method} {pt.sqnr_db:.2f} dB vs per-channel "
                             f"DEFAULT {base.sqnr_db:.2f} dB ({pt.sqnr_db - base.sqnr_db:+.2f})")
        for base, extra in (("DEFAULT", "ADAROUND"), ("ACCURACY", "ACCURACY+ADAROUND"),
                            ("ACCURACY", "ACCURACY+ABSORB"), ("CLE", "CLE+RELU6"),
                            ("ACCURACY", "ACCURACY+RELU6")):
            for granularity in GRANULARITIES:
                a, b = by.get((model, granularity, base)), by.get((model, granularity, extra))
                if a and b:
                    lines.append(f"{model}: {granularity} {extra} {b.sqnr_db:.2f} dB vs {base} "
                                 f"{a.sqnr_db:.2f} dB ({b.sqnr_db - a.sqnr_db:+.2f})")
    if gains:
        lines.append(f"mean ACCURACY − tf.lite over {len(gains)} models: "
                     f"{np.mean(gains):+.2f} dB (min {min(gains):+.2f} dB)")
    return "\n".join(lines)


def plot(rows: list[Row], path: pathlib.Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r.model for r in rows))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 4.2), squeeze=False)
    for ax, model in zip(axes[0], models):
        for k, granularity in enumerate(GRANULARITIES):
            chosen = [r for r in rows if r.model == model and r.granularity == granularity]
            if not chosen:
                continue
            y = np.arange(len(chosen)) + (0.2 if k else -0.2)
            ax.barh(y, [r.sqnr_db for r in chosen], height=0.4, label=granularity.replace("_", "-"))
            ax.set_yticks(np.arange(len(chosen)), [r.method for r in chosen])
        ax.set_title(model)
        ax.set_xlabel("output SQNR vs float (dB)")
        ax.invert_yaxis()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> list[Row]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[*TRAINED, "MobileNetV2_96"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--granularity", nargs="+", default=list(GRANULARITIES),
                        choices=GRANULARITIES)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("-o", "--out", type=pathlib.Path, default=OUT)
    parser.add_argument("--replot", type=pathlib.Path, metavar="RESULTS_JSON",
                        help="re-render the table and plot of an earlier run, convert nothing")
    parser.add_argument("--time-ratio", action="store_true",
                        help="only time ACCURACY (or --time-method) against DEFAULT "
                             "(medians of 3, warmed up)")
    parser.add_argument("--time-method", default="ACCURACY", choices=METHODS[1:],
                        help="the method --time-ratio times (default ACCURACY)")
    args = parser.parse_args(argv)
    if args.time_ratio:
        for name in args.models:
            default, timed = time_ratio(name, args.samples, method=args.time_method)
            print(f"{name}: DEFAULT {default:.2f} s, {args.time_method} {timed:.2f} s, "
                  f"ratio {timed / default:.1f}×")
        return []
    if args.replot:
        rows = [Row(**r) for r in json.loads(args.replot.read_text())]
    else:
        rows = [row for name in args.models
                for row in measure(name, args.methods, args.granularity, args.samples)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    text = markdown(rows) + "\n\n" + summary(rows) + "\n"
    (args.out / "results.md").write_text(text)
    plot(rows, args.out / "accuracy_methods.png")
    print(text)
    return rows


if __name__ == "__main__":
    main()
