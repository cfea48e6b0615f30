"""Calibration cost, quantkit vs tf.lite.TFLiteConverter: the two targets of issue #11, one run.

* time: MobileNetV2 at 224, int8 (int8-only ops, int8 model IO), 200 calibration samples;
  quantkit's conversion wall time (calibration included) over TF's. Target ≤ 0.25.
* memory: ResNet50 at 224, the same mode, 16 calibration samples; the peak RSS increase during
  the conversion (``quantkit.bench.measure.PeakRSS``: sampled every 2 ms in a thread, over the
  RSS just before it), quantkit's over TF's. Target ≤ 1.

Each conversion runs in a fresh process that builds the model (``benchmarks.models``) first,
so no converter reuses memory another one freed, and each pays its own warm-up.

    .venv/bin/python -m benchmarks.calibration            # both targets (≈ 3 min on 2 cores)
    .venv/bin/python -m benchmarks.calibration --time-samples 50 --memory-samples 16
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass

CONVERTERS = ("quantkit", "tf.lite")


@dataclass(frozen=True)
class Target:
    """One ratio: quantkit's figure over TF's, for a model, samples and figure name."""

    model: str
    samples: int
    figure: str      # "seconds" or "peak_mb"
    limit: float     # the ratio the issue asks for at most


def _child(model_name: str, samples: int, converter: str) -> dict:
    """Build the model, convert it once with ``converter``; time and peak RSS increase."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    import quantkit
    from benchmarks.models import BY_NAME
    from quantkit.bench.measure import PeakRSS, quiet

    data = BY_NAME[model_name].build(samples)
    module = quantkit if converter == "quantkit" else tf.lite
    conv = module.TFLiteConverter.from_keras_model(data.model)
    quantkit.Preset.INT8.configure(conv, lambda: ([x[None]] for x in data.calibration))
    conv.inference_input_type = conv.inference_output_type = tf.int8
    if module is quantkit:
        conv.calibration = quantkit.CalibrationOptions(progress=False)
    with PeakRSS() as memory:
        start = time.perf_counter()
        with quiet(fd_level=module is not quantkit):
            blob = conv.convert()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": memory.peak_increase_mb, "bytes": len(blob)}


def _run(model_name: str, samples: int, converter: str) -> dict:
    """``_child`` in a fresh interpreter process; its JSON line."""
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.calibration", "--child", model_name, str(samples),
         converter], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-samples", type=int, default=200)
    parser.add_argument("--memory-samples", type=int, default=16)
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "SAMPLES", "CONVERTER"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(args.child[0], int(args.child[1]), args.child[2])))
        return
    targets = [Target("MobileNetV2", args.time_samples, "seconds", 0.25),
               Target("ResNet50", args.memory_samples, "peak_mb", 1.0)]
    print("| model | samples | converter | convert (s) | peak RSS increase (MB) | size (bytes) |")
    print("| --- | ---: | --- | ---: | ---: | ---: |")
    ratios = []
    for target in targets:
        rows = {c: _run(target.model, target.samples, c) for c in CONVERTERS}
        for c, row in rows.items():
            print(f"| {target.model} | {target.samples} | {c} | {row['seconds']:.2f} | "
                  f"{row['peak_mb']:.1f} | {row['bytes']:,} |", flush=True)
        ratio = rows["quantkit"][target.figure] / rows["tf.lite"][target.figure]
        ratios.append((target, ratio))
    print()
    for target, ratio in ratios:
        verdict = "met" if ratio <= target.limit else "MISSED"
        print(f"{target.model} {target.figure} quantkit / tf.lite = {ratio:.2f} "
              f"(target ≤ {target.limit:g}: {verdict})")


if __name__ == "__main__":
    main()
