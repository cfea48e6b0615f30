"""The quantization debugger's "done when" figures, on the dominated digits MLP.

    .venv/bin/python -m benchmarks.debugger

Prints (1) quantkit's and TF's debugger side by side on the same int8 model and data (TF's
layer metrics per FULLY_CONNECTED, with both output scales), (2) quantkit's ranking of the
dominated twin, (3) accuracy control on it: the float, plain int8 and controlled accuracy, the
tensors promoted, the validation runs, and the size against plain int8. About 15 s.
"""

from __future__ import annotations

import argparse
import csv
import io

import numpy as np

from benchmarks.zoo.dominated import digits_mlps, int8_converter, samples


def _rows(dump) -> list[dict]:
    buffer = io.StringIO()
    dump(buffer)
    return [r for r in csv.DictReader(io.StringIO(buffer.getvalue()))
            if r["op_name"] == "FULLY_CONNECTED"]


def side_by_side(model, calib, debug) -> None:
    import tensorflow as tf

    import quantkit

    tf_converter = tf.lite.TFLiteConverter.from_keras_model(model)
    tf_converter.optimizations = [tf.lite.Optimize.DEFAULT]
    tf_converter.representative_dataset = samples(calib)
    theirs = tf.lite.experimental.QuantizationDebugger(converter=tf_converter,
                                                       debug_dataset=samples(debug))
    theirs.run()
    ours = quantkit.QuantizationDebugger(
        converter=int8_converter(model, calib, bias_correction=False), debug_dataset=samples(debug))
    ours.run()
    metrics = ("mean_squared_error", "stddev", "max_abs_error", "mean_error")
    print("| layer | converter | scale | " + " | ".join(metrics) + " |")
    print("| --- | --- | ---: | " + " | ".join("---:" for _ in metrics) + " |")
    for n, (t, q) in enumerate(zip(_rows(theirs.layer_statistics_dump),
                                   _rows(ours.layer_statistics_dump))):
        for name, row in (("tf.lite", t), ("quantkit", q)):
            values = " | ".join(f"{float(row[m]):.4g}" for m in metrics)
            print(f"| FC {n} | {name} | {float(row['scale']):.5g} | {values} |")


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    import quantkit
    from quantkit.litert import run_float

    mlps = digits_mlps()
    calib, debug = mlps.x[:100], mlps.x[1200:1230]
    x_test, y_test = mlps.x[1300:], mlps.y[1300:]
    print("## quantkit's debugger vs TF's, int8, the plain MLP (no bias correction)\n")
    side_by_side(mlps.plain, calib, debug)
    print("\n## ranking of the dominated twin\n")
    debugger = quantkit.QuantizationDebugger(converter=int8_converter(mlps.dominated, calib),
                                             debug_dataset=samples(debug))
    print(debugger.ranking().table())

    def accuracy(blob: bytes) -> float:
        return float(np.mean(run_float(blob, x_test).argmax(1) == y_test))

    plain = int8_converter(mlps.dominated, calib).convert()
    float_accuracy = float(np.mean(mlps.dominated.predict(x_test, verbose=0).argmax(1)
                                   == y_test))
    print("\n## accuracy control, max_drop 0.03 (absolute)\n")
    converter = int8_converter(mlps.dominated, calib,
                           accuracy_control=quantkit.AccuracyControl(accuracy, max_drop=0.03))
    blob = converter.convert()
    report = converter.accuracy_report
    print(report.summary())
    print(f"Keras {float_accuracy:.4f}; plain int8 {accuracy(plain):.4f} ({len(plain):,} B); "
          f"controlled {accuracy(blob):.4f} ({len(blob):,} B, {len(blob) / len(plain):.3f}x); "
          f"{len(report.promoted)} tensor(s) promoted, {report.validations} validations")


if __name__ == "__main__":
    main()
