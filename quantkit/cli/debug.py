"""``quantkit debug MODEL --calibration DATA``: which layers lose accuracy when quantized.

Converts the model in the mode (int8 by default) and runs ``--data`` (default: the
calibration data) through the float and the quantized model side by side; prints the
quantized tensors worst first by the error each layer adds on its own (the debugger's
``ranking()``), or all of them as JSON (``--json``), and plots them (``--plot out.png``).
``--keep-float`` / ``--int16`` (as for ``convert``) show what a fix would change.
"""

from __future__ import annotations

import argparse
import math
from typing import Any

from quantkit.cli._data import DATA_SYNTAX, CliError, one_line, make_source, parse_fraction
from quantkit.cli.convert import (DEFAULT_SAMPLES, add_data_options, add_selection_options,
                                  check_model_path, check_output, configure, start_and_load,
                                  resolve_mode)

DEFAULT_ROWS = 10
DEBUG_MODES = ("int8", "int8_per_tensor", "int16x8", "uint8_io")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "debug", help="rank the layers of a quantized model by the error each adds",
        description="Quantize a SavedModel or .keras/.h5 model and rank its quantized layers "
                    "by the error each adds on its own, worst first.")
    p.add_argument("model", help="a SavedModel folder or a .keras/.h5 file")
    p.add_argument("--calibration", metavar="DATA", required=True,
                   help=f"calibration data: {DATA_SYNTAX}")
    p.add_argument("--data", metavar="DATA",
                   help="the data to measure the errors on (default: the calibration data)")
    p.add_argument("--mode", default="int8", metavar="MODE",
                   help=f"one of {', '.join(DEBUG_MODES)} (default int8)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"calibrate and measure on at most N samples (default {DEFAULT_SAMPLES})")
    p.add_argument("--rows", type=int, default=DEFAULT_ROWS,
                   help=f"print the N worst tensors (default {DEFAULT_ROWS})")
    p.add_argument("--json", action="store_true", help="print every row as JSON")
    p.add_argument("--plot", metavar="OUT.png", help="save a bar chart of the errors")
    add_selection_options(p)
    add_data_options(p)
    p.set_defaults(run=run, per_tensor=False, input_type=None, output_type=None,
                   no_progress=True)


def run(args: argparse.Namespace) -> int:
    if args.mode not in DEBUG_MODES:
        raise CliError(f"mode {args.mode!r} cannot be debugged; choose from "
                       f"{', '.join(DEBUG_MODES)}")
    if args.rows < 1 or args.samples < 1:
        raise CliError("--rows and --samples must be at least 1")
    mode = resolve_mode(args.mode, False)
    if args.plot:
        if not args.plot.lower().endswith(".png"):
            raise CliError(f"--plot {args.plot}: give a .png file name")
        check_output(args.plot)
    check_model_path(args.model)
    scale = parse_fraction(args.scale)
    converter, inputs = start_and_load(args)
    source = dict(samples=args.samples, scale=scale, tfds_data_dir=args.tfds_data_dir,
                  tfds_key=args.tfds_key)
    calibration = make_source(args.calibration, inputs, **source)
    data = make_source(args.data, inputs, **source) if args.data else calibration
    configure(converter, mode, args, calibration)
    import quantkit

    try:
        debugger = quantkit.QuantizationDebugger(converter=converter, debug_dataset=data)
        ranking = debugger.ranking()
    except ValueError as e:  # ConversionError, CalibrationError: they name phase and culprit
        raise CliError(f"{args.model}: {one_line(e)}") from None
    if args.json:
        print(ranking.to_json())
    else:
        print(f"{args.model}, mode {mode.value}: {len(ranking)} quantized tensors, worst first "
              f"(channel SQNR in dB; lower is worse)")
        print(ranking.table(args.rows))
        worst = ranking[0]
        if not math.isinf(worst.added_db):
            pattern = _pattern(debugger, worst.tensor)
            print(f"worst: {worst.layer!r} ({worst.op_type}). To keep it and the ops reading "
                  f"it off int8: --int16 {pattern} (or --keep-float)")
    if args.plot:
        ranking.plot(args.plot, title=f"{args.model} ({mode.value})")
        print(f"wrote {args.plot}")
    return 0


def _pattern(debugger: Any, tensor: str) -> str:
    """A regex selecting the op writing ``tensor`` and the ops reading it (an op kept off
    int8 alone would have its output rounded back onto the int8 grid by its readers)."""
    import re
    import shlex

    from quantkit.debug.accuracy import promotion
    from quantkit.recipe import Precision

    rules = promotion(debugger._conversion.float_graphs[0], tensor, Precision.FLOAT)
    return shlex.quote("|".join(f"^{re.escape(r.select.tensor)}$" for r in rules))
