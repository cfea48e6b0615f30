"""``quantkit calibrate MODEL --calibration DATA -o stats.json``: the statistics a conversion
would use, saved for ``quantkit convert MODEL --calibration-stats stats.json``.

Without ``--runner`` this process runs the float model over the samples (as ``convert
--calibration`` does). With ``--runner RUNNER --num-shards N`` it builds an Apache Beam
pipeline (the ``beam`` extra: ``pip install quantkit[beam]``): the launcher captures the model
once and cuts the samples into N contiguous shards on the single run's batch boundaries;
each worker reads its shard of DATA, runs the float model and its observers, and a CombineFn
merges the statistics, which equal the single run's byte for byte. Options this command does
not know (``--project``, ``--region``, ``--temp_location``, ``--flink_master``,
``--spark_master_url``, ...) go to Beam's ``PipelineOptions``. MODEL is read by the launcher;
DATA by each worker (it must be reachable from them), and ``-o`` is written by the last one
(a local path, or any path Beam's FileSystems can write, e.g. ``gs://``).
"""

from __future__ import annotations

import argparse
import itertools
import time
from dataclasses import dataclass
from typing import Any, Iterator

from quantkit.cli._data import (DATA_SYNTAX, CliError, ModelInput, PixelScale, make_source,
                                one_line)
from quantkit.cli.convert import (DEFAULT_SAMPLES, add_data_options, check_model_path,
                                  check_output, start_and_load, write_output)

OBSERVERS = ("min_max", "moving_average_min_max", "histogram")


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "calibrate", help="save the calibration statistics of a model on some data",
        description="Run the float model over calibration data and save the statistics a "
                    "conversion would use (for convert --calibration-stats); with --runner, "
                    "as an Apache Beam pipeline over --num-shards shards. Options not listed "
                    "here are passed to Beam's PipelineOptions.")
    p.add_argument("model", help="a SavedModel folder or a .keras/.h5 file")
    p.add_argument("--calibration", metavar="DATA", required=True,
                   help=f"calibration data: {DATA_SYNTAX}")
    p.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help=f"calibrate on at most N samples (default {DEFAULT_SAMPLES})")
    p.add_argument("-o", "--output", metavar="STATS.json", required=True,
                   help="where to write the statistics (JSON)")
    p.add_argument("--observer", choices=OBSERVERS, default="min_max",
                   help="the statistic collected (default min_max, what convert uses)")
    p.add_argument("--runner", metavar="RUNNER",
                   help="run as an Apache Beam pipeline on RUNNER (DirectRunner, "
                        "PrismRunner, DataflowRunner, FlinkRunner, SparkRunner, ...)")
    p.add_argument("--num-shards", type=int, metavar="N",
                   help="with --runner: shards of the samples (default 4)")
    add_data_options(p)
    p.add_argument("--no-progress", action="store_true", help="no calibration progress bar")
    p.set_defaults(run=run, pass_through=True)


@dataclass(frozen=True)
class DataShard:
    """Samples ``start … stop − 1`` of DATA as the CLI reads it; a worker calls it (a
    representative dataset), so only this description travels, not the samples."""

    spec: str
    inputs: tuple[ModelInput, ...]
    samples: int
    scale: PixelScale | None
    tfds_data_dir: str | None
    tfds_key: str
    start: int
    stop: int

    def __call__(self) -> Iterator[Any]:
        source = make_source(self.spec, self.inputs, samples=self.samples, scale=self.scale,
                             tfds_data_dir=self.tfds_data_dir, tfds_key=self.tfds_key)
        return itertools.islice(iter(source()), self.start, self.stop)


def _checked(args: argparse.Namespace) -> None:
    extra = getattr(args, "passed_through", [])
    if args.runner is None and (args.num_shards is not None or extra):
        given = "--num-shards" if args.num_shards is not None else " ".join(extra)
        raise CliError(f"{given}: only with --runner (a Beam pipeline)")
    if args.num_shards is not None and args.num_shards < 1:
        raise CliError(f"--num-shards {args.num_shards}: must be at least 1")
    if "://" not in args.output:
        check_output(args.output)


def run(args: argparse.Namespace) -> int:
    from quantkit.cli._data import parse_fraction

    _checked(args)
    check_model_path(args.model)
    scale = parse_fraction(args.scale)
    start = time.perf_counter()
    converter, inputs = start_and_load(args)
    dataset = make_source(args.calibration, inputs, samples=args.samples, scale=scale,
                          tfds_data_dir=args.tfds_data_dir, tfds_key=args.tfds_key)
    configure(converter, args, dataset)
    where = ""
    try:
        if args.runner is None:
            stats = converter.calibrate()
            write_output(args.output, stats.dumps().encode())
        else:
            shard = DataShard(args.calibration, tuple(inputs), args.samples, scale,
                              args.tfds_data_dir, args.tfds_key, 0, 0)
            stats, shards = run_pipeline(converter, shard, len(dataset()), args)
            # fewer shards than asked when the single run has fewer batches
            where = f" on {args.runner} in {shards} shard(s)"
    except ValueError as e:  # ConversionError, CalibrationError: they name phase and culprit
        raise CliError(f"{args.model}: {one_line(e)}") from None
    tensors = sum(len(s.tensors) for s in stats.signatures.values())
    print(f"wrote {args.output}: {stats.observer.value} statistics of {tensors} tensors over "
          f"{stats.num_samples} samples{where}, in {time.perf_counter() - start:.1f} s")
    return 0


def configure(converter: Any, args: argparse.Namespace, dataset: Any) -> None:
    import quantkit
    from calibration import ObserverKind

    converter.representative_dataset = dataset
    converter.calibration = quantkit.CalibrationOptions(
        observer=ObserverKind(args.observer.upper()),
        progress=False if args.no_progress or args.runner else None)


def run_pipeline(converter: Any, shard: DataShard, num_samples: int,
                 args: argparse.Namespace) -> tuple[Any, int]:
    """Calibrate in a Beam pipeline, write ``args.output`` from it; the statistics and the
    number of shards that ran."""
    import dataclasses
    import json

    try:
        import apache_beam as beam  # the beam extra
        from apache_beam.options.pipeline_options import PipelineOptions
    except ImportError:
        raise CliError("--runner needs Apache Beam: pip install 'quantkit[beam]'") from None
    from calibration import CalibrationStats
    from quantkit.beam.calibrate import CalibrateShards, CalibrationJob, save_stats

    job = CalibrationJob.from_converter(converter)
    shards = [dataclasses.replace(shard, start=a, stop=b)
              for a, b in job.shard_bounds(num_samples, args.num_shards or 4) if b > a]
    options = PipelineOptions(["--runner", args.runner, *getattr(args, "passed_through", [])])
    try:
        with beam.Pipeline(options=options) as pipeline:
            _ = (pipeline
                 | "Shards" >> beam.Create(shards)
                 | "Calibrate" >> CalibrateShards(job)
                 | "Save" >> beam.Map(save_stats, args.output))
    except ValueError:
        raise
    except Exception as e:  # Beam wraps the worker's error; its message names the cause
        raise CliError(f"{args.model}: the pipeline failed: {one_line(e)[:500]}") from None
    if "://" in args.output:
        from apache_beam.io.filesystems import FileSystems

        with FileSystems.open(args.output) as file:
            return CalibrationStats.from_json(json.loads(file.read())), len(shards)
    return CalibrationStats.load(args.output), len(shards)

