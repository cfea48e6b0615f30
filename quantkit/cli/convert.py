"""``quantkit convert MODEL``: a SavedModel folder or a ``.keras``/``.h5`` file → ``.tflite``.

The mode is a ``quantkit.Preset``; calibrated modes read ``--calibration`` (see ``_data``),
checked against the model's inputs before anything is converted. The output is written
atomically, and only when the conversion succeeded.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from typing import Any

from quantkit.cli._data import (DATA_SYNTAX, CliError, ModelInput, one_line, make_source,
                                parse_fraction)

IO_TYPES = ("float32", "int8", "uint8", "int16")
DEFAULT_MODE = "int8"
DEFAULT_SAMPLES = 100


def add_parser(subparsers: Any) -> None:
    from quantkit.presets import Preset

    modes = ", ".join(p.value for p in Preset)
    p = subparsers.add_parser(
        "convert", help="convert a SavedModel or a .keras/.h5 model to .tflite",
        description="Convert a SavedModel folder or a .keras/.h5 file to a TFLite model.")
    p.add_argument("model", help="a SavedModel folder or a .keras/.h5 file")
    p.add_argument("--mode", default=DEFAULT_MODE, metavar="MODE",
                   help=f"one of {modes} (default {DEFAULT_MODE})")
    p.add_argument("--calibration", metavar="DATA",
                   help=f"calibration data for int8, int8_per_tensor, int16x8, uint8_io: "
                        f"{DATA_SYNTAX}")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"calibrate on at most N samples (default {DEFAULT_SAMPLES})")
    p.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor instead of per output channel")
    p.add_argument("--input-type", choices=IO_TYPES, metavar="TYPE",
                   help=f"model input type, overriding the mode's ({', '.join(IO_TYPES)})")
    p.add_argument("--output-type", choices=IO_TYPES, metavar="TYPE",
                   help="model output type, overriding the mode's")
    p.add_argument("-o", "--output", metavar="OUT.tflite",
                   help="output file (default: MODEL's name + _MODE.tflite, beside it)")
    add_data_options(p)
    p.add_argument("--no-progress", action="store_true", help="no calibration progress bar")
    p.set_defaults(run=run)


def add_data_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``--calibration`` and ``--data``."""
    p.add_argument("--scale", default="1", metavar="S",
                   help="multiply image pixels (0..255) by S, e.g. 1/255 (image folder, tfds)")
    p.add_argument("--tfds-data-dir", metavar="DIR",
                   help="where tfds datasets are prepared (never downloaded)")
    p.add_argument("--tfds-key", default="image", metavar="FEATURE",
                   help="the tfds feature fed to the model (default image)")


def resolve_mode(name: str, per_tensor: bool) -> Any:
    from quantkit.presets import Preset

    try:
        mode = Preset(name)
    except ValueError:
        raise CliError(f"unknown mode {name!r}; choose from "
                       f"{', '.join(p.value for p in Preset)}") from None
    if per_tensor:
        if mode == Preset.INT8:
            return Preset.INT8_PER_TENSOR
        if mode in (Preset.FLOAT32, Preset.FLOAT16):
            raise CliError(f"--per-tensor: mode {mode.value} has no int8 weights")
    return mode


def load_model(path: str) -> tuple[Any, list[ModelInput]]:
    """A converter for ``path`` and the model's inputs (as the converter names them)."""
    import numpy as np
    import tensorflow as tf

    import quantkit

    if not os.path.exists(path):
        raise CliError(f"model not found: {path}")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise CliError(f"{path}: not a SavedModel folder (no saved_model.pb)")
        try:
            signature = tf.saved_model.load(path).signatures["serving_default"]
        except KeyError:
            raise CliError(f"{path}: the SavedModel has no serving_default signature") from None
        except Exception as e:
            raise CliError(f"could not load SavedModel {path}: {one_line(e)}") from None
        kwargs = signature.structured_input_signature[1]
        inputs = [ModelInput(name, tuple(kwargs[name].shape.as_list()),
                             np.dtype(kwargs[name].dtype.as_numpy_dtype))
                  for name in sorted(kwargs)]  # the converter's order
        return quantkit.TFLiteConverter.from_saved_model(path), inputs
    if not path.lower().endswith((".keras", ".h5")):
        raise CliError(f"{path}: expected a SavedModel folder or a .keras/.h5 file")
    import keras

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.models.load_model(path, compile=False)
    except Exception as e:
        raise CliError(f"could not load Keras model {path}: {one_line(e)}") from None
    inputs = [ModelInput(t.name, tuple(t.shape), np.dtype(t.dtype)) for t in model.inputs]
    return quantkit.TFLiteConverter.from_keras_model(model), inputs


def default_output(model: str, mode: Any) -> str:
    path = os.path.abspath(model).rstrip(os.sep)
    stem = path if os.path.isdir(path) else os.path.splitext(path)[0]
    return f"{stem}_{mode.value}.tflite"


def run(args: argparse.Namespace) -> int:
    import tensorflow as tf

    import quantkit
    from quantkit.fileio import write_atomically
    from quantkit.tflite_io.reader import op_types

    mode = resolve_mode(args.mode, args.per_tensor)
    if mode.spec.calibrated and not args.calibration:
        raise CliError(f"mode {mode.value} needs calibration data: give --calibration "
                       f"({DATA_SYNTAX}), or choose float32, dynamic_range or float16")
    output = args.output or default_output(args.model, mode)
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise CliError(f"output folder does not exist: {out_dir}")
    start = time.perf_counter()
    converter, inputs = load_model(args.model)
    dataset = None
    if mode.spec.calibrated:
        dataset = make_source(args.calibration, inputs, samples=args.samples,
                              scale=parse_fraction(args.scale),
                              tfds_data_dir=args.tfds_data_dir, tfds_key=args.tfds_key)
    mode.configure(converter, representative_dataset=dataset)
    if args.per_tensor:
        converter._experimental_disable_per_channel = True
    if args.input_type:
        converter.inference_input_type = tf.as_dtype(args.input_type)
    if args.output_type:
        converter.inference_output_type = tf.as_dtype(args.output_type)
    converter.calibration = quantkit.CalibrationOptions(
        progress=False if args.no_progress else None)
    blob = converter.convert()
    write_atomically(output, blob)
    print(f"wrote {output}: {len(blob):,} bytes, {len(op_types(blob))} ops, mode "
          f"{mode.value}, in {time.perf_counter() - start:.1f} s")
    return 0
