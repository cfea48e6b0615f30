"""The accuracy-vs-size benchmark sweep on Apache Beam: one element per row.

The rows of ``quantkit.bench`` (models × modes × converters) are independent conversions, so
each is a Beam element (``RowTask``): a worker prepares the model (once per worker process:
``prepare(name)`` builds or loads it, its data and its float reference), converts it in the
row's mode with the row's converter and scores it in LiteRT (``measure.scored_row``). The
rows of one (model, mode) are then grouped and timed side by side on one worker
(``measure.timed_rows``: the latency ratio needs both models taking turns on one machine).
The last step writes the same ``results.json``, ``results.md`` and ``accuracy_vs_size.png``
as the serial run, rows in its order.

What equals the serial run: every column a conversion determines (size, op count, accuracy,
metric, SQNR, top-1 agreement, errors), given a deterministic ``prepare``; the times
(conversion, calibration, latency, its ratio) and the peak memory are measurements of
whichever worker ran the row.

    pipeline_rows = sweep(pipeline, prepare, ["digits_cnn"], [Preset.INT8], Settings())
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

import apache_beam as beam
import numpy as np

from quantkit.bench import measure, report
from quantkit.bench.run import calibration_dataset, converters_for, machine_info, summarize
from quantkit.bench.source import SourceModel
from quantkit.bench.types import Converter, ModelSummary, Reference, Result, Row, Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Prepared:
    """A model ready to be measured: the source, its calibration data (arrays in input order
    or a representative dataset; None: no calibrated modes) and its float reference."""

    source: SourceModel
    calibration: list[np.ndarray] | Callable | None
    ref: Reference
    metric_name: str | None = None


# The Row fields a conversion determines: equal in a serial run and a pipeline. The others
# (conversion, calibration and latency times, peak memory) measure whichever worker ran it.
DETERMINISTIC_FIELDS = ("model", "mode", "converter", "size_bytes", "op_count", "accuracy",
                        "metric", "sqnr_db", "top1_agreement", "error")


def deterministic(row: Row | dict) -> tuple:
    """The row's ``DETERMINISTIC_FIELDS`` (of a ``Row`` or of its results.json object)."""
    get = row.get if isinstance(row, dict) else lambda name: getattr(row, name)
    return tuple(get(name) for name in DETERMINISTIC_FIELDS)


# Builds a model by name on a worker; pickled to the workers, so a module-level function (or
# a functools.partial of one), and deterministic if the sweep is to equal a serial run.
Prepare = Callable[[str], Prepared]


@dataclass(frozen=True)
class RowTask:
    """One row of the table: a model, a ``quantkit.Preset`` value and a ``Converter`` value."""

    model: str
    mode: str
    converter: str


_PREPARED: dict[tuple[tuple, str], tuple[Prepared, Callable | None]] = {}
_LOCK = threading.Lock()


def _identity(prepare: Prepare) -> tuple:
    """What names ``prepare`` across unpicklings: its function's qualified name and bound
    arguments (a function of ``__main__`` is pickled by value, a new object each time)."""
    if isinstance(prepare, functools.partial):
        return (*_identity(prepare.func), repr(prepare.args),
                repr(sorted(prepare.keywords.items())))
    return (getattr(prepare, "__module__", ""), getattr(prepare, "__qualname__", repr(prepare)))


def prepared(prepare: Prepare, name: str) -> tuple[Prepared, Callable | None]:
    """``prepare(name)`` and its representative dataset, once per worker process."""
    key = (_identity(prepare), name)
    with _LOCK:
        if key not in _PREPARED:
            ready = prepare(name)
            _PREPARED[key] = ready, calibration_dataset(ready.calibration, ready.ref)
        return _PREPARED[key]


def tasks(models: Sequence[str], modes: Sequence[Any], with_tf: bool) -> list[RowTask]:
    """Every row, in the serial run's order."""
    return [RowTask(model, mode.value, converter.value) for model in models for mode in modes
            for converter in converters_for(with_tf)]


class ScoreRow(beam.DoFn):
    """RowTask → ((model, mode), (converter, row converted and scored, model bytes))."""

    def __init__(self, prepare: Prepare, settings: Settings):
        self.prepare, self.settings = prepare, settings

    def process(self, task: RowTask) -> Iterable[tuple[tuple[str, str], tuple]]:
        from quantkit.presets import Preset

        ready, dataset = prepared(self.prepare, task.model)
        row, blob = measure.scored_row(ready.source, Preset(task.mode), Converter(task.converter),
                                       dataset, ready.ref, self.settings)
        yield (task.model, task.mode), (task.converter, row, blob)


class TimeMode(beam.DoFn):
    """One (model, mode)'s scored rows → the rows timed side by side."""

    def __init__(self, prepare: Prepare, settings: Settings):
        self.prepare, self.settings = prepare, settings

    def process(self, keyed: tuple[tuple[str, str], Iterable[tuple]]) -> Iterable[Row]:
        (model, _), scored = keyed
        order = [c.value for c in Converter]
        scored = sorted(scored, key=lambda item: order.index(item[0]))
        ready, _ = prepared(self.prepare, model)
        for row in measure.timed_rows([row for _, row, _ in scored],
                                      [blob for _, _, blob in scored], ready.ref, self.settings):
            log.info("%s %s", model, report.progress_line(row))  # on the worker that ran it
            yield row


def _summary(prepare: Prepare, name: str) -> ModelSummary:
    ready, dataset = prepared(prepare, name)
    return summarize(ready.source, dataset, ready.ref, ready.metric_name)


def sweep(pipeline: beam.Pipeline, prepare: Prepare, models: Sequence[str],
          modes: Sequence[Any], settings: Settings, with_tf: bool = True
          ) -> tuple[beam.PCollection, beam.PCollection]:
    """The sweep's steps added to ``pipeline``: (PCollection of timed ``Row``s, PCollection
    of ``ModelSummary``s), in no particular order (``write_results`` orders them)."""
    rows = (pipeline
            | "Rows" >> beam.Create(tasks(models, modes, with_tf))
            | "ConvertAndScore" >> beam.ParDo(ScoreRow(prepare, settings))
            | "ByMode" >> beam.GroupByKey()
            | "TimeSideBySide" >> beam.ParDo(TimeMode(prepare, settings)))
    summaries = (pipeline
                 | "Models" >> beam.Create(list(models))
                 | "Summarize" >> beam.Map(functools.partial(_summary, prepare)))
    return rows, summaries


def ordered(rows: Iterable[Row], models: Sequence[str], modes: Sequence[str]) -> tuple[Row, ...]:
    """Rows in the serial run's order: model, mode, converter."""
    converters = [c.value for c in Converter]
    return tuple(sorted(rows, key=lambda r: (list(models).index(r.model),
                                             list(modes).index(r.mode),
                                             converters.index(r.converter))))


def write_results(out_dir: str, rows: list[Row], summaries: list[ModelSummary],
                  models: Sequence[str], modes: Sequence[str], settings: Settings,
                  command: str) -> list[str]:
    """The three outputs of ``quantkit.bench.report`` from the pipeline's rows."""
    by_name = {s.name: s for s in summaries}
    result = Result(machine_info(), command, settings,
                    tuple(by_name[m] for m in models if m in by_name),
                    ordered(rows, models, modes))
    return report.write_all(result, out_dir)


def run_sweep(prepare: Prepare, models: Sequence[str], modes: Sequence[Any],
              settings: Settings, out_dir: str, command: str, with_tf: bool = True,
              options: Any = None) -> None:
    """The whole sweep as one pipeline (``options``: Beam's PipelineOptions), writing
    ``out_dir``'s three files from its last step."""
    names = [m.value for m in modes]
    with beam.Pipeline(options=options) as pipeline:
        rows, summaries = sweep(pipeline, prepare, models, modes, settings, with_tf)
        _ = (pipeline
             | "Once" >> beam.Create([out_dir])
             | "Write" >> beam.Map(write_results, beam.pvalue.AsList(rows),
                                   beam.pvalue.AsList(summaries), list(models), names,
                                   settings, command))


__all__ = ["DETERMINISTIC_FIELDS", "Prepare", "Prepared", "RowTask", "ScoreRow", "TimeMode",
           "deterministic", "ordered", "prepared", "run_sweep", "sweep", "tasks",
           "write_results"]
