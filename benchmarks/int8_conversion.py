"""Quantized conversion, quantkit vs tf.lite.TFLiteConverter, side by side in one run.

``--mode`` picks int8 (the default) or another mode (dynamic_range, float16, int16x8, uint8).

For each keras.applications architecture (weights=None, trained-looking BatchNorm statistics,
logits heads): both converters get the same calibration images (crops of the photos
scikit-learn ships, preprocessed as the architecture expects); in int8 mode int8-only ops and
int8 model IO, in the others what ``quantkit.Preset`` sets.
Reports conversion wall time (calibration included), op count, model size and the output SQNR
against Keras on held-out crops, and prints a Markdown table.

    .venv/bin/python -m benchmarks.int8_conversion                  # MobileNetV2, 200 samples
    .venv/bin/python -m benchmarks.int8_conversion --models ResNet50 --samples 50 \
        --no-bias-correction
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import quantkit  # noqa: E402
from quantkit.litert import run_float  # noqa: E402
from quantkit.metrics import sqnr_db  # noqa: E402
from quantkit.tflite_io.reader import op_types  # noqa: E402
from benchmarks.float32_conversion import timed  # noqa: E402
from benchmarks.zoo.applications import randomize_batchnorm  # noqa: E402
from benchmarks.zoo.images import application_inputs  # noqa: E402

MODELS = ["MobileNetV2"]
TEST_IMAGES = 8


# This script's --mode → the shared mode table (quantkit.Preset); "uint8" is quantkit's
# legacy_uint8, which has no Preset (TF's converter no longer writes uint8 models).
PRESETS = {"int8": quantkit.Preset.INT8, "dynamic_range": quantkit.Preset.DYNAMIC_RANGE,
           "float16": quantkit.Preset.FLOAT16, "int16x8": quantkit.Preset.INT16X8}
MODES = [*PRESETS, "uint8"]


def _converter(module, model, images, bias_correction: bool = True, mode: str = "int8"):
    """``mode``: int8 (INT8-only ops, int8 IO), dynamic_range, float16, int16x8 (with float
    fallback: the int16 kernels lack some ops), or uint8 (quantkit's legacy_uint8)."""
    converter = module.TFLiteConverter.from_keras_model(model)
    dataset = lambda: ([x[None]] for x in images)  # noqa: E731
    if mode == "uint8":
        converter.optimizations = [module.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        converter.legacy_uint8 = True
    else:
        PRESETS[mode].configure(converter, dataset)  # the dataset is unread if uncalibrated
    if mode == "int8":  # this benchmark's int8 has int8 model IO (Preset.INT8 keeps float IO)
        converter.inference_input_type = converter.inference_output_type = tf.int8
    if module is quantkit:
        converter.calibration = quantkit.CalibrationOptions(progress=False)
        converter.bias_correction = bias_correction
    return converter


def measure(name: str, samples: int, size: int, also_without_correction: bool,
            mode: str = "int8") -> list[tuple]:
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classifier_activation=None)
    randomize_batchnorm(model)
    images = application_inputs(name, samples + TEST_IMAGES, size)
    calibration, test = images[:samples], images[samples:]
    reference = model(test, training=False).numpy()  # also warms Keras up for both
    runs = [("quantkit", lambda: _converter(quantkit, model, calibration, True, mode).convert())]
    if also_without_correction:
        runs.append(("quantkit, no bias corr.",
                     lambda: _converter(quantkit, model, calibration, False, mode).convert()))
    if mode != "uint8":  # TF's converter no longer writes uint8 models
        runs.append(("tf.lite", lambda: _converter(tf.lite, model, calibration, True,
                                                   mode).convert()))
    rows = []
    for label, convert in runs:
        blob, seconds = timed(convert)
        try:
            sqnr = sqnr_db(reference, run_float(blob, test))
        except RuntimeError:  # a model LiteRT cannot run (TF's int16x8 ConvNeXtTiny)
            sqnr = float("nan")
        rows.append((name, label, samples, len(op_types(blob)), len(blob), seconds, sqnr))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--samples", type=int, default=200, help="calibration samples")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels")
    parser.add_argument("--mode", choices=MODES, default="int8")
    parser.add_argument("--no-bias-correction", action="store_true",
                        help="also convert with quantkit's bias correction off")
    args = parser.parse_args()
    print(f"mode: {args.mode}\n")
    print("| model | converter | samples | ops | size (bytes) | convert (s) | SQNR (dB) |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for name in args.models:
        rows = measure(name, args.samples, args.size, args.no_bias_correction, args.mode)
        for row in rows:
            print("| {} | {} | {} | {} | {:,} | {:.2f} | {:.2f} |".format(*row), flush=True)
        if rows[-1][1] == "tf.lite":
            print(f"| {name} | time ratio quantkit / tf.lite | | | | "
                  f"{rows[0][5] / rows[-1][5]:.2f} | |", flush=True)


if __name__ == "__main__":
    main()
