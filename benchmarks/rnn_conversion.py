"""RNNs (issue #12): quantkit in float32, int8, int16x8 and dynamic range, tf.lite's op count.

For each family of ``benchmarks.zoo.rnns`` (trained 2 epochs on 1,000 MNIST row-sequences,
14 steps of 14 features, 12 units): the float32 model's max error against Keras relative to
the output's max magnitude, the SQNR of each quantized mode against Keras on 200 test rows
(calibrated on 100 training rows), the int8 output bound (the float output itself rounded to
int8: no model with an int8 output scores above it), quantkit's float32 and int8 op counts
and tf.lite's float32 op count (all subgraphs; TF writes a WHILE loop with a condition and a
body subgraph). quantkit's float32 and dynamic-range models hold TFLite's fused sequence ops
for LSTM and SimpleRNN (``quantkit.frontend.tf_rnn``) and a WHILE loop for GRU
(``quantkit.frontend.tf_while``), its int8 models LiteRT's integer LSTM and, for GRU and
SimpleRNN, an integer WHILE whose body computes in int16; int16x8 unrolls. TF's float32
converter fails on a dynamic batch here (``TensorListReserve`` needs a static element shape),
so TF converts the same weights with batch 1; TF's int8 converter crashes the process on
these models, so it is not run. Prints a Markdown table.

    .venv/bin/python -m benchmarks.rnn_conversion [--families lstm gru ...]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import subprocess
import sys
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import quantkit  # noqa: E402
from benchmarks.zoo import rnns  # noqa: E402
from quantkit.litert import run_float  # noqa: E402
from quantkit.metrics import sqnr_db  # noqa: E402
from quantkit.quantize import math as qm  # noqa: E402
from quantkit.tflite_io.reader import read_model  # noqa: E402

MODES = (quantkit.Preset.INT8, quantkit.Preset.INT16X8, quantkit.Preset.DYNAMIC_RANGE)

# TF's converter in a child process (its int8 path segfaults on RNNs; float32 is safe, but a
# child keeps any crash out of the table): prints the op count of every subgraph.
_TF_OPS = """
import sys, keras, tensorflow as tf
from quantkit.tflite_io.reader import read_model
model = keras.models.load_model(sys.argv[1])
fixed = keras.Sequential([keras.Input(model.input_shape[1:], batch_size=1)]
                         + [keras.layers.deserialize(keras.layers.serialize(l))
                            for l in model.layers])
fixed.set_weights(model.get_weights())
flat = tf.lite.TFLiteConverter.from_keras_model(fixed).convert()
print("OPS", sum(len(s.ops) for s in read_model(flat).subgraphs))
"""


def _op_count(tflite: bytes) -> int:
    return sum(len(s.ops) for s in read_model(tflite).subgraphs)


def tf_float_ops(model: keras.Model) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.keras")
        model.save(path)
        done = subprocess.run([sys.executable, "-c", _TF_OPS, path], capture_output=True,
                              text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("OPS ")]
    return lines[-1].split()[1] if lines else f"failed ({done.returncode})"


def _convert(model: keras.Model, mode: quantkit.Preset, calibration: np.ndarray) -> bytes:
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    mode.configure(converter, lambda: ([x[None]] for x in calibration))
    converter.calibration = quantkit.CalibrationOptions(progress=False)
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def int8_output_bound(model: keras.Model, calibration: np.ndarray, x: np.ndarray,
                      reference: np.ndarray) -> float:
    """The SQNR of the float model's own output rounded to int8 with the parameters its
    calibrated range gives (``r = s·(q − z)``): no int8 model (int8 output tensor) scores above
    it, whatever happens inside."""
    seen = np.asarray(model(calibration, training=False))
    params = qm.activation_params(float(seen.min()), float(seen.max()))
    rounded = qm.dequantize(qm.quantize(reference, params, -128, 127, np.int8), params)
    return sqnr_db(reference.ravel(), rounded.ravel())


def row(family: str) -> dict:
    model = rnns.rnn_model(family)
    x_train, _, x_test, _ = rnns.sequences()
    calibration, x = x_train[-100:], x_test[:200]
    reference = np.asarray(model(x, training=False))
    result = {"family": family}
    flat = _convert(model, quantkit.Preset.FLOAT32, calibration)
    out = run_float(flat, x)
    result["float32 err"] = float(np.max(np.abs(out - reference)) / np.max(np.abs(reference)))
    result["ops"] = _op_count(flat)
    for mode in MODES:
        tflite = _convert(model, mode, calibration)
        result[mode.value] = sqnr_db(reference.ravel(), run_float(tflite, x).ravel())
        if mode is quantkit.Preset.INT8:
            result["int8 ops"] = _op_count(tflite)
    result["int8 bound"] = int8_output_bound(model, calibration, x, reference)
    result["tf ops"] = tf_float_ops(model)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", default=list(rnns.FAMILIES))
    args = parser.parse_args()
    print("| family | float32 err | int8 SQNR | int8 output bound | int16x8 SQNR | dynamic SQNR "
          "| ops quantkit float32 / int8 | ops TF float32 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for family in args.families:
        r = row(family)
        print(f"| {family} | {r['float32 err']:.1e} | {r['int8']:.1f} dB | "
              f"{r['int8 bound']:.1f} dB | {r['int16x8']:.1f} dB | {r['dynamic_range']:.1f} dB "
              f"| {r['ops']} / {r['int8 ops']} | {r['tf ops']} |", flush=True)


if __name__ == "__main__":
    main()
