"""Float32 conversion, quantkit vs tf.lite.TFLiteConverter, side by side in one run.

For each keras.applications architecture (weights=None, trained-looking BatchNorm statistics):
op count, model size, conversion wall time and the max LiteRT-vs-Keras error relative to the
output's max magnitude. Prints a Markdown table.

    .venv/bin/python -m benchmarks.float32_conversion [--models MobileNetV2 ResNet50 ...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import quantkit  # noqa: E402
from quantkit.litert import run  # noqa: E402
from quantkit.tflite_io.reader import op_types  # noqa: E402
from benchmarks.zoo.applications import randomize_batchnorm  # noqa: E402

MODELS = ["MobileNetV2", "ResNet50", "EfficientNetB0", "MobileNetV3Small"]


def timed(convert) -> tuple[bytes, float]:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # TF's converter prints its export
        result = convert()
    return result, time.perf_counter() - start


def measure(name: str) -> list[tuple]:
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, classifier_activation=None)
    randomize_batchnorm(model)
    x = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    reference = model(x, training=False).numpy()
    rows = []
    for label, convert in (
            ("quantkit", lambda: quantkit.TFLiteConverter.from_keras_model(model).convert()),
            ("tf.lite", lambda: tf.lite.TFLiteConverter.from_keras_model(model).convert())):
        blob, seconds = timed(convert)
        err = np.abs(run(blob, x) - reference).max() / np.abs(reference).max()
        rows.append((name, label, len(op_types(blob)), len(blob), seconds, err))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    args = parser.parse_args()
    print("| model | converter | ops | size (bytes) | convert (s) | max rel. error |")
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name in args.models:
        for row in measure(name):
            print("| {} | {} | {} | {:,} | {:.2f} | {:.1e} |".format(*row), flush=True)


if __name__ == "__main__":
    main()
