"""Every layer family of the zoo (``benchmarks/zoo/families.py``), quantkit vs tf.lite, float32
and int8 side by side in one table.

For each family both converters convert the same Keras model in float32 and in full-integer
int8 (INT8-only op set, float model IO, the same calibration samples); each model that
converts runs in LiteRT on held-out samples. Columns: op counts; float32's largest error
relative to the Keras output's largest magnitude; int8 output SQNR (dB) against Keras; a
conversion or run that fails shows its error, shortened.

    .venv/bin/python -m benchmarks.families                      # every family (≈ 2 min)
    .venv/bin/python -m benchmarks.families --families mha conv3d --samples 64
    .venv/bin/python -m benchmarks.families --int16x8        # int16x8 columns as well
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
from dataclasses import dataclass

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import quantkit  # noqa: E402
from quantkit.litert import run_float  # noqa: E402
from quantkit.metrics import sqnr_db  # noqa: E402
from quantkit.tflite_io.reader import op_types  # noqa: E402
from benchmarks.zoo import families as zoo  # noqa: E402

TEST_SAMPLES = 16


@dataclass(frozen=True)
class Result:
    """One converter's model in one mode: ops and score, or why there is none."""

    ops: int | None = None
    score: float | None = None  # float32: max |error| / max |reference|; int8: SQNR in dB
    error: str | None = None

    def cell(self, int8: bool) -> str:
        if self.error is not None:
            return f"✗ {self.error[:60]}"
        return f"{self.score:.1f} dB" if int8 else f"{self.score:.1e}"


@dataclass(frozen=True)
class Row:
    family: str
    float32: dict[str, Result]  # converter ("quantkit", "tf") → result
    int8: dict[str, Result]
    int16x8: dict[str, Result] | None = None


INT16X8 = "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"


def converter(module, model: keras.Model, int8: bool, calibration: np.ndarray,
              int16: bool = False):
    """float32, int8 or (``int16``) int16x8; quantized ops where LiteRT has the kernels."""
    conv = module.TFLiteConverter.from_keras_model(model)
    if int16:
        conv.optimizations = [module.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in calibration)
        conv.target_spec.supported_ops = [getattr(module.OpsSet, INT16X8),
                                          module.OpsSet.TFLITE_BUILTINS]
    elif int8:
        conv.optimizations = [module.Optimize.DEFAULT]
        conv.representative_dataset = lambda: ([x[None]] for x in calibration)
        # ops LiteRT has no int8 kernel for stay float (CONV_3D, POW, ...), as TF leaves them
        conv.target_spec.supported_ops = [module.OpsSet.TFLITE_BUILTINS_INT8,
                                          module.OpsSet.TFLITE_BUILTINS]
    if module is quantkit:
        conv.calibration = quantkit.CalibrationOptions(progress=False)
    return conv


def convert(module, model: keras.Model, int8: bool, calibration: np.ndarray,
            int16: bool = False) -> bytes:
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        return converter(module, model, int8, calibration, int16).convert()


def score(data: bytes, x: np.ndarray, reference: np.ndarray, int8: bool) -> float:
    """int8: SQNR (dB); float32: max |error| relative to the reference's max magnitude."""
    y = run_float(data, x)
    if int8:
        return sqnr_db(reference.ravel(), y.ravel())
    return float(np.abs(y - reference).max() / max(np.abs(reference).max(), 1e-6))


def measure(module, model: keras.Model, int8: bool, calibration: np.ndarray, x: np.ndarray,
            reference: np.ndarray, int16: bool = False) -> Result:
    try:
        data = convert(module, model, int8, calibration, int16)
    except Exception as e:  # noqa: BLE001 (a table cell)
        return Result(error="convert: " + str(e).strip().splitlines()[0])
    try:
        return Result(len(op_types(data)), score(data, x, reference, int8 or int16))
    except Exception as e:  # noqa: BLE001
        return Result(len(op_types(data)), error="run: " + str(e).strip().splitlines()[0])


def family_row(name: str, samples: int = 32, modules=None, int16x8: bool = False) -> Row:
    modules = modules or {"quantkit": quantkit, "tf": tf.lite}
    model = zoo.build(name)
    calibration, x = zoo.data(name, samples, 1), zoo.data(name, TEST_SAMPLES, 2)
    reference = keras.ops.convert_to_numpy(model(x, training=False))
    f32, i8 = ({k: measure(m, model, int8, calibration, x, reference)
                for k, m in modules.items()} for int8 in (False, True))
    i16 = {k: measure(m, model, False, calibration, x, reference, int16=True)
           for k, m in modules.items()} if int16x8 else None
    return Row(name, f32, i8, i16)


def markdown(rows: list[Row]) -> str:
    int16 = any(r.int16x8 for r in rows)
    head = ("| family | ops f32 qk / TF | f32 error qk | f32 error TF | ops int8 qk / TF "
            "| int8 SQNR qk | int8 SQNR TF |")
    if int16:
        head += " ops int16x8 qk / TF | int16x8 SQNR qk | int16x8 SQNR TF |"
    lines = [head, "|" + " --- |" * (10 if int16 else 7)]
    for r in rows:
        ops = lambda d: " / ".join("–" if d[k].ops is None else str(d[k].ops)  # noqa: E731
                                   for k in ("quantkit", "tf"))
        line = (f"| {r.family} | {ops(r.float32)} | {r.float32['quantkit'].cell(False)} | "
                f"{r.float32['tf'].cell(False)} | {ops(r.int8)} | "
                f"{r.int8['quantkit'].cell(True)} | {r.int8['tf'].cell(True)} |")
        if int16:
            line += (f" {ops(r.int16x8)} | {r.int16x8['quantkit'].cell(True)} | "
                     f"{r.int16x8['tf'].cell(True)} |")
        lines.append(line)
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--families", nargs="*", default=list(zoo.FAMILIES))
    parser.add_argument("--samples", type=int, default=32, help="calibration samples")
    parser.add_argument("--int16x8", action="store_true", help="int16x8 columns too")
    args = parser.parse_args()
    rows = []
    for name in args.families:
        rows.append(family_row(name, args.samples, int16x8=args.int16x8))
        print(markdown(rows[-1:]).splitlines()[-1], flush=True)
    print()
    print(markdown(rows))


if __name__ == "__main__":
    main()
