"""Calibration cost, quantkit vs tf.lite.TFLiteConverter: the two targets of issue #11, one run.

* time: MobileNetV2 at 224, int8 (int8-only ops, int8 model IO), 200 calibration samples;
  quantkit's conversion wall time (calibration included) over TF's. Target ≤ 0.25.
* memory: ResNet50 at 224, the same mode, 16 calibration samples; the peak RSS increase during
  the conversion (``quantkit.bench.measure.PeakRSS``: sampled every 2 ms in a thread, over the
  RSS just before it), quantkit's over TF's. Target ≤ 1.

The models are built once (``benchmarks.models``) and saved with their calibration crops into
a temporary folder; each conversion runs in a fresh process that loads them, so no converter
reuses memory another one freed (nor memory building the model used), and each pays its own
warm-up. On a shared machine the load moves both figures, so the converters take turns
``--repeats`` times and each one's lowest figure is compared (every run is printed).

    .venv/bin/python -m benchmarks.calibration            # both targets (≈ 8 min on 2 cores)
    .venv/bin/python -m benchmarks.calibration --time-samples 50 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CONVERTERS = ("quantkit", "tf.lite")


@dataclass(frozen=True)
class Target:
    """One ratio: quantkit's figure over TF's, for a model, samples and figure name."""

    model: str
    samples: int
    figure: str      # "seconds" or "peak_mb"
    limit: float     # the ratio the issue asks for at most


def _save(model_name: str, samples: int, folder: Path) -> Path:
    """Build ``model_name`` with ``samples`` calibration crops; save both under ``folder``."""
    from benchmarks.models import BY_NAME

    data = BY_NAME[model_name].build(samples)
    path = folder / f"{model_name}_{samples}"
    data.model.save(f"{path}.keras")
    np.save(f"{path}.npy", data.calibration)
    return path


def _child(path: str, converter: str) -> dict:
    """Load a saved model, convert it once with ``converter``; time and peak RSS increase."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras  # in the child only: the parent process never starts TF
    import tensorflow as tf

    import quantkit
    from quantkit.bench.measure import PeakRSS, quiet

    model = keras.models.load_model(f"{path}.keras")
    calibration = np.load(f"{path}.npy")
    module = quantkit if converter == "quantkit" else tf.lite
    conv = module.TFLiteConverter.from_keras_model(model)
    quantkit.Preset.INT8.configure(conv, lambda: ([x[None]] for x in calibration))
    conv.inference_input_type = conv.inference_output_type = tf.int8
    if module is quantkit:
        conv.calibration = quantkit.CalibrationOptions(progress=False)
    with PeakRSS() as memory:
        start = time.perf_counter()
        with quiet(fd_level=module is not quantkit):
            blob = conv.convert()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": memory.peak_increase_mb, "bytes": len(blob)}


def _run(path: Path, converter: str) -> dict:
    """``_child`` in a fresh interpreter process; its JSON line."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.calibration", "--child", str(path), converter],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _measure(target: Target, folder: Path, repeats: int) -> dict[str, dict]:
    """Each converter's lowest figures over ``repeats`` turns (each run printed)."""
    path = _save(target.model, target.samples, folder)
    best: dict[str, dict] = {}
    for turn in range(repeats):
        for c in CONVERTERS if turn % 2 == 0 else CONVERTERS[::-1]:
            row = _run(path, c)
            print(f"| {target.model} | {target.samples} | {c} | {row['seconds']:.2f} | "
                  f"{row['peak_mb']:.1f} | {row['bytes']:,} |", flush=True)
            best[c] = {k: min(v, best.get(c, row)[k]) for k, v in row.items()}
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-samples", type=int, default=200)
    parser.add_argument("--memory-samples", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2, help="turns per converter")
    parser.add_argument("--child", nargs=2, metavar=("PATH", "CONVERTER"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(*args.child)))
        return
    targets = [Target("MobileNetV2", args.time_samples, "seconds", 0.25),
               Target("ResNet50", args.memory_samples, "peak_mb", 1.0)]
    print("| model | samples | converter | convert (s) | peak RSS increase (MB) | size (bytes) |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    ratios = []
    with tempfile.TemporaryDirectory(prefix="quantkit-bench-") as folder:
        for target in targets:
            best = _measure(target, Path(folder), args.repeats)
            ratios.append((target, best))
    print()
    for target, best in ratios:
        ours, theirs = best["quantkit"][target.figure], best["tf.lite"][target.figure]
        ratio = ours / theirs
        verdict = "met" if ratio <= target.limit else "MISSED"
        print(f"{target.model} {target.figure} (lowest of each): quantkit {ours:.2f} / tf.lite "
              f"{theirs:.2f} = {ratio:.2f} (target ≤ {target.limit:g}: {verdict})")


if __name__ == "__main__":
    main()
