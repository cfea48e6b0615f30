"""Calibration on Apache Beam: shards of samples → each worker's statistics → one merge.

The launcher captures the model once (``CalibrationJob.from_converter``: the float IR graphs
after passes, the observer and the rows per batch, as ``converter.calibrate()`` would use
them); the job is pickled to the workers, which run the graphs in LiteRT with the same
executors and observers as one process (``quantkit.calibrate.calibrate_graphs``), and a
``CombineFn`` (``MergeStats``) merges their ``CalibrationStats``.

Exactness: every statistic merges exactly and in any order (``calibration.observers``:
min/max, the moving average's exact sums, histograms on nested power-of-two bins, exact
per-channel sums), so when each worker's batches are the single run's batches, N shards give
the single run's statistics bit for bit. ``CalibrateShards`` and ``Calibrate(indexed=True)``
keep them so: a shard or batch holds whole batches of the single run (samples
``k·rows … (k+1)·rows − 1``). Without indices (``Calibrate()``), Beam forms the batches; the
min/max, histogram and moving-average statistics are the same as far as LiteRT gives a row
the same values in any batch (its kernels compute rows independently), channel means to
float64 rounding of the per-batch sums.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from calibration import OBSERVERS, CalibrationStats
from quantkit.calibrate import CalibrationOptions, calibrate_graphs, executors
from quantkit.fileio import write_atomically
from quantkit.ir.graph import Graph
from quantkit.types import ConversionError, Phase


@dataclass(frozen=True)
class CalibrationJob:
    """What a worker needs: the float graphs (one per signature) and the options, with the
    observer and ``batch_size`` (rows per executor call) resolved."""

    graphs: tuple[Graph, ...]
    options: CalibrationOptions

    def __post_init__(self) -> None:
        if not OBSERVERS[self.options.observer].exact_merge:
            raise ConversionError(Phase.CALIBRATION, f"observer {self.options.observer.name} "
                                  "does not merge exactly; sharded calibration would not give "
                                  "one process's statistics: calibrate in one process")
        if self.options.batch_size is None:
            raise ConversionError(Phase.CALIBRATION, "CalibrationJob needs options.batch_size "
                                  "(use CalibrationJob.from_converter)")

    @classmethod
    def from_converter(cls, converter: Any) -> CalibrationJob:
        """The job ``converter.calibrate()`` would run (its model, recipe and options)."""
        graphs, options = converter.calibration_setup()
        return cls(tuple(graphs), dataclasses.replace(options, progress=False))

    @property
    def rows(self) -> int:
        """Samples per batch of the single run, for one-row samples: a shard boundary."""
        return int(self.options.batch_size)  # set: checked in __post_init__

    def shard_bounds(self, num_samples: int, num_shards: int) -> list[tuple[int, int]]:
        """``shard_bounds`` for this job's batches."""
        return shard_bounds(num_samples, self.rows, num_shards)

    def run(self, dataset: Any, runners: Any = None) -> CalibrationStats:
        """The statistics of ``dataset`` (a representative dataset) in this process."""
        return calibrate_graphs(list(self.graphs), dataset, self.options, runners)


def shard_bounds(num_samples: int, rows: int, num_shards: int) -> list[tuple[int, int]]:
    """``num_shards`` contiguous ranges ``[start, stop)`` of ``num_samples`` one-row samples,
    each starting on a boundary of the single run's batches of ``rows`` (an empty one,
    ``start == stop``, where there are fewer batches than shards)."""
    batches = -(-num_samples // rows)
    cuts = [k * batches // num_shards * rows for k in range(num_shards)]
    return [(min(a, num_samples), min(b, num_samples))
            for a, b in zip(cuts, cuts[1:] + [num_samples])]


class CalibrateDoFn(beam.DoFn):
    """Element: a shard (a representative dataset: a zero-argument callable returning
    samples) or a list of samples → that shard's ``CalibrationStats``. The LiteRT executors
    are made once per DoFn instance (``setup``)."""

    def __init__(self, job: CalibrationJob):
        self.job = job
        self._runners = None

    def setup(self) -> None:
        self._runners = executors(list(self.job.graphs), self.job.options)

    def process(self, shard: Any) -> Iterable[CalibrationStats]:
        dataset = shard if callable(shard) else functools.partial(list, shard)
        stats = self.job.run(dataset, self._runners)
        if stats.signatures:  # an empty shard has nothing to merge
            yield stats


class MergeStats(beam.CombineFn):
    """``CalibrationStats.merge`` as a CombineFn (exact and order-free, so Beam may combine
    the workers' statistics in any grouping). The output is None for no input."""

    def create_accumulator(self) -> CalibrationStats | None:
        return None

    def add_input(self, acc: CalibrationStats | None, stats: CalibrationStats
                  ) -> CalibrationStats:
        return stats if acc is None else acc.merge(stats)

    def merge_accumulators(self, accumulators: Iterable[CalibrationStats | None]
                           ) -> CalibrationStats | None:
        merged = None
        for acc in accumulators:
            if acc is not None:
                merged = acc if merged is None else merged.merge(acc)
        return merged

    def extract_output(self, acc: CalibrationStats | None) -> CalibrationStats | None:
        return acc


class CalibrateShards(beam.PTransform):
    """PCollection of shards (zero-argument callables returning samples, e.g. readers of
    a sample range; or lists of samples) → one ``CalibrationStats``. Each shard is calibrated
    as one sequence, so shards that hold whole batches of the single run (``job.shard_bounds``)
    give its statistics exactly."""

    def __init__(self, job: CalibrationJob):
        super().__init__()
        self.job = job

    def expand(self, shards: beam.PCollection) -> beam.PCollection:
        return (shards
                | "Calibrate" >> beam.ParDo(CalibrateDoFn(self.job))
                | "Merge" >> beam.CombineGlobally(MergeStats()))


def _batch_key(rows: int, element: tuple[int, Any]) -> tuple[int, tuple[int, Any]]:
    return element[0] // rows, element


def _in_order(keyed: tuple[int, Iterable[tuple[int, Any]]]) -> list[Any]:
    return [sample for _, sample in sorted(keyed[1], key=lambda pair: pair[0])]


class Calibrate(beam.PTransform):
    """PCollection of samples (as a representative dataset yields them: a list of input
    arrays, a dict by input name, or ``(signature_key, dict)``) → one ``CalibrationStats``.

    ``indexed=True``: the elements are ``(index, sample)``, index 0 … N−1 in the single run's
    order; samples ``k·rows … (k+1)·rows − 1`` form batch k, as in one process, so one-row
    samples give its statistics exactly. Otherwise Beam batches ``rows`` samples as they come
    (see the module's note on exactness).
    """

    def __init__(self, job: CalibrationJob, indexed: bool = False):
        super().__init__()
        self.job = job
        self.indexed = indexed

    def expand(self, samples: beam.PCollection) -> beam.PCollection:
        rows = self.job.rows
        if self.indexed:
            batches = (samples
                       | "KeyByBatch" >> beam.Map(functools.partial(_batch_key, rows))
                       | "GroupBatches" >> beam.GroupByKey()
                       | "InOrder" >> beam.Map(_in_order))
        else:
            batches = samples | "Batch" >> beam.BatchElements(min_batch_size=rows,
                                                             max_batch_size=rows)
        return batches | "CalibrateBatches" >> CalibrateShards(self.job)


def save_stats(stats: CalibrationStats | None, path: str) -> str:
    """Writes the merged statistics as ``CalibrationStats.save`` does (the pipeline's last
    step): a local file atomically, or a path Beam's FileSystems knows (``gs://...``)."""
    if stats is None:
        raise ConversionError(Phase.CALIBRATION, "no samples reached the workers: nothing to "
                              "write")
    data = stats.dumps().encode()
    if "://" in path:
        with FileSystems.create(path) as file:
            file.write(data)
    else:
        write_atomically(path, data)
    return path
