"""The benchmark harness: the registry's models × every mode × {quantkit, tf.lite}, in one run.

The measuring is ``quantkit.bench`` (what ``quantkit bench`` runs on a user's model); this
adds the project's own models (``benchmarks.models``) and their data. Per row: model size, op
count, accuracy (where the test data has labels), SQNR and top-1 agreement of the LiteRT
outputs against the Keras float model, conversion and calibration time, peak memory during the
conversion, LiteRT latency, and quantkit's latency over tf.lite's for the same mode (the two
models taking turns invoke by invoke). Writes ``results.json``, ``results.md`` and
``accuracy_vs_size.png``.

    .venv/bin/python -m benchmarks.harness           # the quick subset (`make bench`) into
                                                     # benchmarks/results/latest/ (untracked)
    .venv/bin/python -m benchmarks.harness --out benchmarks/results   # refresh the committed
    .venv/bin/python -m benchmarks.harness --all --out benchmarks/results/all
    .venv/bin/python -m benchmarks.harness --models digits_cnn --modes float32 int8
    .venv/bin/python -m benchmarks.harness --runner DirectRunner   # as an Apache Beam
        # pipeline, one element per row (quantkit.beam.sweep); other Beam options pass through
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shlex
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import quantkit  # noqa: E402
from benchmarks.models import ALL, BY_NAME, QUICK, BenchModel  # noqa: E402
from quantkit.bench import report  # noqa: E402
from quantkit.bench.run import machine_info, measure_source  # noqa: E402
from quantkit.bench.source import load  # noqa: E402
from quantkit.bench.types import ModelSummary, Result, Row, Settings  # noqa: E402

DEFAULT_OUT = os.path.join("benchmarks", "results", "latest")  # ignored by git


def _print(message: str) -> None:
    print(message, flush=True)  # progress shows as it goes, also when piped to a file


def _built(entry: BenchModel, samples: int | None):
    """The entry's source model, calibration arrays (in input order) and float reference.

    Keras numbers its layer names per process (``conv2d_3``) and the names reach the converted
    model's tensors, hence its size: they start afresh for each model, so a model's rows do not
    depend on what was built before it (the Beam sweep builds in its own order).
    """
    import keras  # deferred: loads TF

    keras.backend.clear_session()
    data = entry.build(samples or entry.default_samples)
    source = dataclasses.replace(load(data.model, entry.name), description=entry.description)
    ref = source.reference([np.asarray(data.test_inputs, np.float32)], data.test_labels)
    return source, [np.asarray(data.calibration, np.float32)], ref


def prepare(name: str, samples: int | None = None):
    """A registry model built, as the Beam sweep's workers need it (by name)."""
    from quantkit.beam.sweep import Prepared  # the beam extra: only --runner needs it

    return Prepared(*_built(BY_NAME[name], samples))


def benchmark_model(entry: BenchModel, presets: list[quantkit.Preset], settings: Settings,
                    samples: int | None = None, log=None) -> tuple[ModelSummary, list[Row]]:
    """One registry model: built, then measured in every mode with both converters."""
    log = log or _print
    log(f"== {entry.name}: building ({samples or entry.default_samples} calibration "
        f"samples) ...")
    source, calibration, ref = _built(entry, samples)
    return measure_source(source, calibration, ref, presets, True, settings, log)


def run(entries: list[BenchModel], presets: list[quantkit.Preset], settings: Settings,
        out_dir: str, command: str, samples: int | None = None, log=None) -> Result:
    """Benchmark every entry × preset × converter; write the three outputs into ``out_dir``."""
    log = log or _print
    summaries, rows = [], []
    for entry in entries:
        summary, model_rows = benchmark_model(entry, presets, settings, samples, log)
        summaries.append(summary)
        rows.extend(model_rows)
    result = Result(machine_info(), command, settings, tuple(summaries), tuple(rows))
    for path in report.write_all(result, out_dir):
        log(f"wrote {path}")
    return result


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true",
                        help=f"the whole matrix: {', '.join(ALL)}")
    parser.add_argument("--models", nargs="+", choices=ALL, metavar="MODEL",
                        help=f"models to run (default: {' '.join(QUICK)}; one of {ALL})")
    parser.add_argument("--modes", nargs="+", choices=[p.value for p in quantkit.Preset],
                        default=[p.value for p in quantkit.Preset], metavar="MODE",
                        help="quantkit.Preset values (default: all seven)")
    parser.add_argument("--out", default=DEFAULT_OUT, help="output folder (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=Settings.threads,
                        help="LiteRT threads (default: %(default)s)")
    parser.add_argument("--invokes", type=int, default=Settings.invokes,
                        help="timed single-sample invokes per model (default: %(default)s)")
    parser.add_argument("--latency-budget", type=float, default=Settings.latency_budget_s,
                        help="seconds of timed invokes per mode at most (default: %(default)s)")
    parser.add_argument("--runner", metavar="RUNNER",
                        help="run the sweep as an Apache Beam pipeline on RUNNER, one element "
                             "per row (the beam extra); unknown options go to Beam")
    parser.add_argument("--samples", type=int,
                        help="calibration samples (default: per model, 200 for the digit "
                             "CNNs, 16 for keras.applications)")
    args, beam_args = parser.parse_known_args(argv)
    if beam_args and not args.runner:
        parser.error(f"unrecognized arguments: {' '.join(beam_args)}")
    names = args.models or (ALL if args.all else QUICK)
    settings = Settings(threads=args.threads, invokes=args.invokes,
                        latency_budget_s=args.latency_budget)
    given = sys.argv[1:] if argv is None else argv
    command = " ".join(["python -m benchmarks.harness", *(shlex.quote(a) for a in given)])
    presets = [quantkit.Preset(m) for m in args.modes]
    if args.runner:
        return run_on_beam(names, presets, settings, args.out, command, args.samples,
                           ["--runner", args.runner, *beam_args])
    return run([BY_NAME[n] for n in names], presets, settings, args.out, command, args.samples)


def run_on_beam(names: list[str], presets: list[quantkit.Preset], settings: Settings,
                out_dir: str, command: str, samples: int | None, beam_args: list[str]) -> None:
    """The same sweep as ``run``, as a Beam pipeline (quantkit.beam.sweep): the same three
    files; the timed columns are the workers' measurements."""
    import functools
    import logging

    from apache_beam.options.pipeline_options import PipelineOptions  # the beam extra

    from quantkit.beam.sweep import run_sweep

    logging.basicConfig(format="%(message)s")
    logging.getLogger("quantkit.beam.sweep").setLevel(logging.INFO)  # a line per timed row
    run_sweep(functools.partial(prepare, samples=samples), names, presets, settings, out_dir,
              command, options=PipelineOptions(beam_args))
    _print(f"wrote {out_dir} (Beam: {' '.join(beam_args)})")


if __name__ == "__main__":
    main()
