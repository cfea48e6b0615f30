"""``quantkit bench MODEL --data DATA``: every mode of a model side by side (``quantkit.bench``).

Prints a progress line per row, then the Markdown table; writes results.json, results.md and
accuracy_vs_size.png into ``-o DIR`` (default: MODEL's name + ``_bench`` beside it).
"""

from __future__ import annotations

import argparse
import os
import shlex
from typing import Any

from quantkit.cli._data import DATA_SYNTAX, CliError, ModelInput, make_source, parse_fraction
from quantkit.cli.convert import add_data_options

DEFAULT_SAMPLES = 100


def add_parser(subparsers: Any) -> None:
    from quantkit.presets import Preset

    modes = [p.value for p in Preset]
    p = subparsers.add_parser(
        "bench", help="every mode side by side: size, accuracy, SQNR, time, memory, latency",
        description="Convert a model in every mode (optionally with tf.lite too) and measure "
                    "each result in LiteRT: a table, JSON and an accuracy-vs-size plot.")
    p.add_argument("model", help="a SavedModel folder, a .keras/.h5 file or a float .tflite")
    p.add_argument("--data", required=True, metavar="DATA",
                   help=f"test inputs: {DATA_SYNTAX}")
    p.add_argument("--calibration", metavar="DATA",
                   help="calibration data for the calibrated modes (same forms)")
    score = p.add_mutually_exclusive_group()
    score.add_argument("--labels", metavar="LABELS",
                       help="class index per test sample (.npy, .npz, .txt or .csv): accuracy")
    score.add_argument("--metric", metavar="MODULE:FUNCTION",
                       help="score f(y_true, y_pred) -> float, y_true the float model's first "
                            "output (module:function or file.py:function)")
    p.add_argument("--modes", nargs="+", default=modes, metavar="MODE",
                   help=f"modes to run (default: all: {' '.join(modes)})")
    p.add_argument("--with-tf", action="store_true",
                   help="also convert with tf.lite.TFLiteConverter (and report the latency "
                        "ratio)")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="output folder (default: MODEL's name + _bench, beside it)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"calibrate on at most N samples (default {DEFAULT_SAMPLES})")
    p.add_argument("--test-samples", type=int, metavar="N",
                   help="test on at most N samples (default: all)")
    p.add_argument("--threads", type=int, default=1, help="LiteRT threads (default 1)")
    p.add_argument("--invokes", type=int, default=200,
                   help="timed single-sample invokes per model (default 200)")
    add_data_options(p)
    p.set_defaults(run=run)


def default_output(model: str) -> str:
    path = os.path.abspath(model).rstrip(os.sep)
    stem = path if os.path.isdir(path) else os.path.splitext(path)[0]
    return f"{stem}_bench"


def _check_args(args: argparse.Namespace) -> list[Any]:
    from quantkit.presets import Preset

    try:
        presets = [Preset(m) for m in args.modes]
    except ValueError as e:
        raise CliError(f"--modes: {e}; choose from {', '.join(p.value for p in Preset)}") \
            from None
    for flag, value in (("--threads", args.threads), ("--invokes", args.invokes)):
        if value < 1:
            raise CliError(f"{flag} {value}: must be at least 1")
    calibrated = [p.value for p in presets if p.spec.calibrated]
    if calibrated and not args.calibration:
        raise CliError(f"modes {', '.join(calibrated)} need calibration data: give "
                       f"--calibration ({DATA_SYNTAX}) or leave them out of --modes")
    return presets


def _command(args: argparse.Namespace) -> str:
    """The command line that gives these arguments (for the results' record)."""
    words = ["quantkit", "bench", args.model, "--data", args.data]
    for flag, value in (("--calibration", args.calibration), ("--labels", args.labels),
                        ("--metric", args.metric), ("--test-samples", args.test_samples),
                        ("--samples", args.samples if args.calibration else None),
                        ("--threads", args.threads), ("--invokes", args.invokes),
                        ("--scale", None if args.scale == "1" else args.scale)):
        if value is not None:
            words += [flag, str(value)]
    words += ["--modes", *args.modes] + (["--with-tf"] if args.with_tf else [])
    return " ".join(shlex.quote(w) for w in words)


def run(args: argparse.Namespace) -> int:
    from quantkit._tf_import import native_banners_filtered
    from quantkit.bench import BenchError, Settings, markdown_table, report, source
    from quantkit.bench.run import benchmark

    presets = _check_args(args)
    out_dir = os.path.abspath(args.output or default_output(args.model))
    if not os.path.isdir(os.path.dirname(out_dir)):
        raise CliError(f"output folder's parent does not exist: {os.path.dirname(out_dir)}")
    try:
        model = source.load(args.model)
        inputs = [ModelInput(i.name, i.shape, i.dtype) for i in model.inputs]
        data_options = dict(scale=parse_fraction(args.scale), tfds_data_dir=args.tfds_data_dir,
                            tfds_key=args.tfds_key)
        data = make_source(args.data, inputs, samples=args.test_samples, **data_options)
        calibration = None
        if args.calibration and any(p.spec.calibrated for p in presets):
            calibration = make_source(args.calibration, inputs, samples=args.samples,
                                      **data_options)
        command = _command(args)
        with native_banners_filtered():  # LiteRT announces its XNNPACK delegate
            result = benchmark(model, data, calibration=calibration, labels=args.labels,
                               metric=args.metric, modes=presets, with_tf=args.with_tf,
                               settings=Settings(threads=args.threads, invokes=args.invokes),
                               test_samples=args.test_samples, command=command,
                               progress=lambda line: print(line, flush=True))
    except BenchError as e:
        raise CliError(str(e)) from None
    print("\n" + markdown_table(result.rows) + "\n")
    for path in report.write_all(result, out_dir):
        print(f"wrote {path}")
    return 0
