"""``quantkit convert MODEL``: a SavedModel folder, a ``.keras``/``.h5`` file or a float
``.tflite`` → ``.tflite``.

The mode is a ``quantkit.Preset``; calibrated modes read ``--calibration`` (see ``_data``),
checked against the model's inputs before anything is converted. The model file's format and
the output folder are checked before TensorFlow starts. On a terminal, a status line precedes
each long silent phase (starting TF and loading, tracing). The output is written atomically,
and only when the conversion succeeded; the summary gives each input's calibrated range.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import warnings
import zipfile
from typing import Any

import numpy as np

from quantkit.cli._data import (DATA_SYNTAX, CliError, ModelInput, PixelRange, one_line,
                                make_source, parse_fraction)

IO_TYPES = ("float32", "int8", "uint8", "int16")
DEFAULT_MODE = "int8"
DEFAULT_SAMPLES = 100


def add_parser(subparsers: Any) -> None:
    from quantkit.presets import Preset

    modes = ", ".join(p.value for p in Preset)
    p = subparsers.add_parser(
        "convert", help="convert a SavedModel, a .keras/.h5 model or a float .tflite to .tflite",
        description="Convert a SavedModel folder, a .keras/.h5 file or a float .tflite to a "
                    "TFLite model.")
    p.add_argument("model", help="a SavedModel folder, a .keras/.h5 file or a float .tflite")
    p.add_argument("--mode", default=DEFAULT_MODE, metavar="MODE",
                   help=f"one of {modes} (default {DEFAULT_MODE})")
    p.add_argument("--calibration", metavar="DATA",
                   help=f"calibration data for int8, int8_per_tensor, int16x8, uint8_io: "
                        f"{DATA_SYNTAX}")
    p.add_argument("--calibration-stats", metavar="STATS.json",
                   help="or: statistics saved by `quantkit calibrate` (no data is read)")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"calibrate on at most N samples (default {DEFAULT_SAMPLES})")
    p.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor instead of per output channel")
    add_accuracy_options(p)
    p.add_argument("--input-type", choices=IO_TYPES, metavar="TYPE",
                   help=f"model input type, overriding the mode's ({', '.join(IO_TYPES)})")
    p.add_argument("--output-type", choices=IO_TYPES, metavar="TYPE",
                   help="model output type, overriding the mode's")
    p.add_argument("-o", "--output", metavar="OUT.tflite",
                   help="output file (default: MODEL's name + _MODE.tflite, beside it)")
    add_selection_options(p)
    add_data_options(p)
    p.add_argument("--no-progress", action="store_true", help="no calibration progress bar")
    p.set_defaults(run=run)


def add_selection_options(p: argparse.ArgumentParser) -> None:
    """Selective quantization: ops kept float or moved to int16x8 (a quantkit.Recipe)."""
    what = ("a TFLite op type (e.g. SOFTMAX), or a regex searched in the ops' TF node names "
            "and output tensor names (a Keras layer's name matches its ops)")
    p.add_argument("--keep-float", action="append", default=[], metavar="PATTERN",
                   help=f"keep the matching ops in float: {what}; repeatable")
    p.add_argument("--int16", action="append", default=[], metavar="PATTERN",
                   help="compute the matching ops on int16 activations (int8 weights) where "
                        "LiteRT has the kernel; repeatable")


def selection_recipe(args: argparse.Namespace) -> Any:
    """The recipe of ``--int16`` and ``--keep-float`` (float wins where both match)."""
    from quantkit.recipe import Precision, Recipe, Rule, Select, Settings
    from quantkit.types import OpType

    def select(pattern: str) -> Any:
        return Select(op_type=pattern) if pattern in OpType.__members__ else Select(
            regex=pattern)

    return Recipe(tuple(Rule(select(p), Settings(precision=Precision.INT16))
                        for p in getattr(args, "int16", []))
                  + tuple(Rule(select(p), Settings(precision=Precision.FLOAT))
                          for p in getattr(args, "keep_float", [])))
def add_accuracy_options(p: argparse.ArgumentParser) -> None:
    from quantkit.recipe import RangeMethod, WeightRounding

    methods = [m.value for m in RangeMethod]
    p.add_argument("--range-method", choices=methods, metavar="METHOD",
                   help=f"how calibrated statistics become each activation's range: "
                        f"{', '.join(methods)} (default: min/max; auto with --accuracy)")
    p.add_argument("--weight-rounding", choices=[r.value for r in WeightRounding],
                   metavar="ROUNDING", help="how weights become integers: nearest (default) "
                   "or adaround (each weight up or down by its layer's output error on the "
                   "calibration data; slower conversion)")
    p.add_argument("--accuracy", action="store_true",
                   help="Optimize.ACCURACY: equalization, clipped weights and ranges chosen by "
                        "the error at the outputs (same int8 format, slower conversion)")


def add_data_options(p: argparse.ArgumentParser) -> None:
    """Options shared by ``--calibration`` and ``--data``."""
    ranges = [r.value for r in PixelRange]
    scaling = p.add_mutually_exclusive_group()
    scaling.add_argument("--pixel-range", dest="scale", choices=ranges, metavar="RANGE",
                         help=f"the range the model takes image pixels (0..255) or other "
                              f"integer data in: {', '.join(ranges)}; needed for image data")
    scaling.add_argument("--scale", dest="scale", metavar="S",
                         help="or: multiply the data by S, e.g. 1/255")
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


def _is_hdf5(path: str) -> bool:
    """HDF5's signature sits at byte 0, or 512, 1024, ... after a user block."""
    with open(path, "rb") as f:
        for offset in (0, 512, 1024, 2048):
            f.seek(offset)
            if f.read(8) == b"\x89HDF\r\n\x1a\n":
                return True
    return False


def _is_tflite(path: str) -> bool:
    """A TFLite flatbuffer carries the identifier ``TFL3`` at byte 4."""
    with open(path, "rb") as f:
        return f.read(8)[4:8] == b"TFL3"


# Model file suffix → (its container format's test, what a file of that suffix is).
_KERAS_FORMATS = {
    ".keras": (zipfile.is_zipfile, "a .keras file is a zip archive"),
    ".h5": (_is_hdf5, "a .h5 file is HDF5"),
    ".tflite": (_is_tflite, "a .tflite file is a TFLite flatbuffer"),
}


def check_model_path(path: str) -> None:
    """What can be checked before TF starts: the path exists, is readable and has the form
    of a SavedModel folder or a Keras file."""
    if not os.path.exists(path):
        raise CliError(f"model not found: {path}")
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise CliError(f"{path}: not a SavedModel folder (no saved_model.pb)")
        return
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in _KERAS_FORMATS:
        raise CliError(f"{path}: expected a SavedModel folder, a .keras/.h5 file or a .tflite")
    test, what = _KERAS_FORMATS[suffix]
    try:
        valid = test(path)
    except OSError as e:
        raise CliError(f"{path}: cannot read it ({e.strerror or e})") from None
    if not valid:
        kind = "TFLite model" if suffix == ".tflite" else "Keras model file"
        raise CliError(f"{path}: not a {kind} ({what}, this one is not)")


def load_model(path: str) -> tuple[Any, list[ModelInput]]:
    """A converter for ``path`` (checked by ``check_model_path``) and the model's inputs (as
    the converter names them)."""
    import tensorflow as tf  # deferred: TF starts only when used (`quantkit --help` stays TF-free)

    import quantkit

    if path.lower().endswith(".tflite"):
        return _load_tflite(path)
    if os.path.isdir(path):
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
    import keras  # deferred: loads TF, which starts only when used

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = keras.models.load_model(path, compile=False)
    except Exception as e:
        raise CliError(f"could not load Keras model {path}: {one_line(e)}") from None
    inputs = [ModelInput(t.name, tuple(t.shape), np.dtype(t.dtype)) for t in model.inputs]
    return quantkit.TFLiteConverter.from_keras_model(model), inputs


def _load_tflite(path: str) -> tuple[Any, list[ModelInput]]:
    import quantkit
    from quantkit.frontend import tflite_frontend

    try:
        source = tflite_frontend.load(path)
        converter = quantkit.TFLiteConverter.from_tflite(path)
    except ValueError as e:  # a malformed file, named with its field and byte
        raise CliError(one_line(e)) from None
    return converter, [ModelInput(*spec) for spec in tflite_frontend.model_inputs(source)]


def default_output(model: str, mode: Any) -> str:
    path = os.path.abspath(model).rstrip(os.sep)
    stem = path if os.path.isdir(path) else os.path.splitext(path)[0]
    return f"{stem}_{mode.value}.tflite"


def check_output(output: str) -> None:
    """The output can be written: its folder exists and is writable, it is not a folder."""
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise CliError(f"output folder does not exist: {out_dir}")
    if os.path.isdir(output):
        raise CliError(f"-o {output}: is a folder; give a file name")
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise CliError(f"cannot write {output}: the folder {out_dir} is not writable")


def input_ranges(blob: bytes) -> dict[str, tuple[float, float]]:
    """Each quantized input's float range, ``s·(qmin − z) .. s·(qmax − z)``, from its own
    parameters (integer IO) or those of the QUANTIZE op that reads it (float IO)."""
    from quantkit.tflite_io.reader import read_model
    from quantkit.types import OpType

    info = read_model(blob)
    sg = info.subgraphs[0]
    names = {i: n for n, i in info.signatures[0].inputs.items()} if info.signatures else {}
    quantizers = {op.inputs[0]: op.outputs[0] for op in sg.ops if op.type == OpType.QUANTIZE}
    ranges = {}
    for index in sg.inputs:
        tensor = sg.tensors[index]
        if tensor.quant is None and index in quantizers:
            tensor = sg.tensors[quantizers[index]]
        q = tensor.quant
        if q is None or len(q.scales) != 1 or tensor.dtype is None or tensor.dtype.kind != "i" \
                and tensor.dtype.kind != "u":
            continue
        limits = np.iinfo(tensor.dtype)
        zero = q.zero_points[0] if q.zero_points else 0
        ranges[names.get(index, tensor.name)] = (q.scales[0] * (limits.min - zero),
                                                 q.scales[0] * (limits.max - zero))
    return ranges


def start_and_load(args: argparse.Namespace) -> tuple[Any, list[ModelInput]]:
    """TensorFlow started and ``args.model`` loaded (a status line first): ``load_model``'s
    converter and inputs. Every command that converts calls it after its own checks."""
    from quantkit._tf_import import start_tensorflow_for_cli

    _status(args, f"starting TensorFlow and loading {args.model}")
    start_tensorflow_for_cli()
    return load_model(args.model)


def _status(args: argparse.Namespace, text: str) -> None:
    """A line on stderr before a long silent phase, on a terminal (as the progress bar)."""
    if not args.no_progress and sys.stderr.isatty():
        print(f"quantkit: {text} …", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from quantkit.tflite_io.reader import op_types

    mode = resolve_mode(args.mode, args.per_tensor)
    if args.calibration and args.calibration_stats:
        raise CliError("give --calibration or --calibration-stats, not both")
    if mode.spec.calibrated and not (args.calibration or args.calibration_stats):
        raise CliError(f"mode {mode.value} needs calibration data: give --calibration "
                       f"({DATA_SYNTAX}) or --calibration-stats, or choose float32, "
                       f"dynamic_range or float16")
    stats = load_stats(args.calibration_stats) if args.calibration_stats else None
    output = args.output or default_output(args.model, mode)
    check_output(output)
    check_model_path(args.model)
    scale = parse_fraction(args.scale)
    start = time.perf_counter()
    converter, inputs = start_and_load(args)
    dataset = None
    if mode.spec.calibrated and stats is None:
        dataset = make_source(args.calibration, inputs, samples=args.samples, scale=scale,
                              tfds_data_dir=args.tfds_data_dir, tfds_key=args.tfds_key)
    elif mode.spec.calibrated:
        dataset = _statistics_only(args.calibration_stats)
    configure(converter, mode, args, dataset)
    if stats is not None and mode.spec.calibrated:
        converter.calibration_statistics = stats
        converter.calibration = dataclasses.replace(converter.calibration,
                                                    observer=stats.observer)
    _status(args, f"tracing the model and converting it to {mode.value}"
            + (f", calibrating on {len(dataset())} samples" if args.calibration and dataset
               else ""))
    try:
        blob = converter.convert()
    except ValueError as e:  # ConversionError, CalibrationError: they name phase and culprit
        raise CliError(f"{args.model}: {one_line(e)}") from None
    write_output(output, blob)
    print(f"wrote {output}: {len(blob):,} bytes, {len(op_types(blob))} ops, mode "
          f"{mode.value}, in {time.perf_counter() - start:.1f} s")
    if mode.spec.calibrated:
        stated = f", {scale.text}" if scale else ""
        for name, (low, high) in input_ranges(blob).items():
            print(f"input {name!r} calibrated for {low:.4g}..{high:.4g} "
                  f"({args.calibration or args.calibration_stats}{stated})")
    return 0


def load_stats(path: str) -> Any:
    """``--calibration-stats``: the statistics ``quantkit calibrate`` saved."""
    from calibration import CalibrationError, CalibrationStats

    if not os.path.isfile(path):
        raise CliError(f"calibration statistics not found: {path}")
    try:
        return CalibrationStats.load(path)
    except CalibrationError as e:  # names the file
        raise CliError(one_line(e)) from None


def _statistics_only(path: str) -> Any:
    """The representative dataset of a conversion from saved statistics: it selects the
    calibrated mode (as TF's converter, the mode follows from a dataset being set) and is
    never read (``calibration_statistics`` is set)."""
    def no_samples() -> Any:
        raise CliError(f"{path}: statistics given, no samples to read")
    return no_samples


def configure(converter: Any, mode: Any, args: argparse.Namespace, dataset: Any) -> None:
    """The converter's settings from the mode and the command line."""
    import tensorflow as tf  # deferred: TF starts only when used (`quantkit --help` stays TF-free)

    import quantkit

    mode.configure(converter, representative_dataset=dataset)
    recipe = selection_recipe(args)
    if recipe.rules:
        if not mode.spec.calibrated:
            raise CliError(f"--keep-float/--int16 choose what is quantized; mode {mode.value} "
                           "quantizes no activations (choose int8, int16x8 or uint8_io)")
        converter.recipe = recipe
        if getattr(args, "keep_float", None):  # float ops need the float builtins in the op set
            converter.target_spec.supported_ops = {*converter.target_spec.supported_ops,
                                                   quantkit.OpsSet.TFLITE_BUILTINS}
    if args.per_tensor:
        converter._experimental_disable_per_channel = True
    if args.input_type:
        converter.inference_input_type = tf.as_dtype(args.input_type)
    if args.output_type:
        converter.inference_output_type = tf.as_dtype(args.output_type)
    if getattr(args, "accuracy", False) and converter.optimizations:
        converter.optimizations = [quantkit.Optimize.ACCURACY]
    method = getattr(args, "range_method", None)
    converter.calibration = quantkit.CalibrationOptions(
        progress=False if args.no_progress else None,
        range_method=quantkit.RangeMethod(method) if method else None,
        weight_rounding=quantkit.WeightRounding(getattr(args, "weight_rounding", None)
                                                or "nearest"))


def write_output(output: str, blob: bytes) -> None:
    from quantkit.fileio import write_atomically

    try:
        write_atomically(output, blob)
    except OSError as e:
        raise CliError(f"cannot write {output}: {e.strerror or e}") from None
