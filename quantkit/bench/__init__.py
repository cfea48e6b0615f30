"""Benchmark a model in every conversion mode, side by side: ``quantkit bench`` and
``quantkit.benchmark``.

    result = quantkit.benchmark("model.keras", data=x_test, labels=y_test,
                                calibration=x_train[:200], with_tf=True, out_dir="bench")
    print(quantkit.bench.markdown(result))
    quantkit.bench.figure(result)          # a matplotlib Figure

Per mode (``quantkit.Preset``) and converter: size, op count, accuracy on labels or the
user's metric, SQNR and top-1 agreement of the LiteRT outputs against the float model,
conversion and calibration time, peak memory, LiteRT latency (and quantkit's latency over
tf.lite's). ``out_dir`` gets results.json, results.md and accuracy_vs_size.png.
"""

from quantkit.bench.plot import figure
from quantkit.bench.report import markdown, markdown_table, write_all
from quantkit.bench.run import benchmark
from quantkit.bench.types import (BenchError, Converter, ModelSummary, Result, Row, Settings,
                                  SourceKind)

__all__ = ["benchmark", "figure", "markdown", "markdown_table", "write_all", "BenchError",
           "Converter", "ModelSummary", "Result", "Row", "Settings", "SourceKind"]
