"""Accuracy control: promote the layers that lose most until a metric is within budget.

``converter.accuracy_control = AccuracyControl(validation_fn, max_drop)`` makes ``convert()``
search for a mixed-precision model:

1. the float model's metric ``m_f`` sets the target: ``m ≥ m_f − max_drop`` (``ABSOLUTE``) or
   ``m ≥ m_f − max_drop·|m_f|`` (``RELATIVE``);
2. the plain model (the converter's mode and recipe) is measured; if it meets the target it
   is returned as it is;
3. otherwise the debugger ranks its quantized tensors by the error each adds on its own
   (``ranking``), and the worst are promoted one at a time: the op that writes the tensor and
   every op that reads it (so the tensor is never rounded back onto the narrow grid) move to
   int16x8 where LiteRT has the kernels, else to float. A promotion that makes the metric worse
   is dropped; the search stops when the target is met, or after ``max_validations`` runs of
   ``validation_fn`` (the float and the plain model's included).

Everything is deterministic (one calibration, a fixed ranking, no sampling). The steps, the
validation count and the final recipe are in ``converter.accuracy_report`` and in the log; the
recipe can be saved (``recipe.save(path)``) and set on a converter again.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import numpy as np

from quantkit.debug.pipeline import Conversion
from quantkit.ir.graph import Graph
from quantkit.metrics import sqnr_db
from quantkit.ops import OPS, OutputRule
from quantkit.recipe import Precision, Recipe, Rule, Select, Settings
from quantkit.runtime import LiteRTExecutor
from quantkit.types import ConversionError, Phase, QuantMode

log = logging.getLogger(__name__)

# The default metric, output SQNR, is infinite for the float model itself; it is capped here,
# so the float model scores SQNR_CAP_DB and max_drop=20 asks for 40 dB.
SQNR_CAP_DB = 60.0


class DropType(enum.Enum):
    ABSOLUTE = "absolute"  # m_float − m ≤ max_drop
    RELATIVE = "relative"  # (m_float − m) / |m_float| ≤ max_drop


@dataclass(frozen=True)
class AccuracyControl:
    """The budget ``convert()`` must meet (see the module docstring).

    ``validation_fn(tflite_bytes) -> float``: the user's metric on the user's data, higher is
    better; None: the outputs' SQNR in dB against the float model on ``debug_dataset``, capped
    at ``SQNR_CAP_DB``. ``debug_dataset``: the samples the layers are ranked on (default: the
    converter's representative dataset). ``max_validations``: at most this many calls of
    ``validation_fn``.
    """

    validation_fn: Callable[[bytes], float] | None = None
    max_drop: float = 1.0
    drop_type: DropType = DropType.ABSOLUTE
    max_validations: int = 12
    debug_dataset: Callable[[], Iterable[Any]] | None = None

    def __post_init__(self):
        if not isinstance(self.drop_type, DropType):
            raise ConversionError(Phase.OPTIONS, f"AccuracyControl: drop_type="
                                  f"{self.drop_type!r}: expected a quantkit.DropType")
        if not self.max_drop >= 0:
            raise ConversionError(Phase.OPTIONS, f"AccuracyControl: max_drop={self.max_drop}: "
                                  "must be ≥ 0")
        if self.max_validations < 2:
            raise ConversionError(Phase.OPTIONS, "AccuracyControl: max_validations must be ≥ 2 "
                                  "(the float model and the plain quantized one)")

    def target(self, float_metric: float) -> float:
        if self.drop_type is DropType.RELATIVE:
            return float_metric - self.max_drop * abs(float_metric)
        return float_metric - self.max_drop


@dataclass(frozen=True)
class Step:
    """One promotion tried: the tensor, the precision its ops moved to, the metric after."""

    tensor: str
    layer: str
    precision: Precision
    metric: float
    kept: bool


@dataclass
class AccuracyReport:
    """What ``convert()`` did under accuracy control."""

    float_metric: float
    target: float
    plain_metric: float
    metric: float = math.nan
    steps: list[Step] = field(default_factory=list)
    recipe: Recipe = Recipe()  # the rules added to the converter's recipe
    validations: int = 0
    met: bool = False

    @property
    def promoted(self) -> list[str]:
        """The tensors promoted in the returned model (each once, int16 or float)."""
        return list(dict.fromkeys(s.tensor for s in self.steps if s.kept))

    def summary(self) -> str:
        lines = [f"float {self.float_metric:.4g}, target ≥ {self.target:.4g}, plain "
                 f"{self.plain_metric:.4g}"]
        lines += [f"  {'kept' if s.kept else 'dropped'} {s.precision.value:<6} {s.layer} "
                  f"({s.tensor}): {s.metric:.4g}" for s in self.steps]
        lines.append(f"final {self.metric:.4g} ({'met' if self.met else 'NOT met'}), "
                     f"{len(self.promoted)} tensor(s) promoted, {self.validations} validations")
        return "\n".join(lines)


class OutputSqnr:
    """The default metric: SQNR (dB) of a model's outputs against the float graph's."""

    def __init__(self, float_graph: Graph, dataset: Callable[[], Iterable[Any]]):
        from quantkit.debug.debugger import feeds

        self.names = list(float_graph.input_names) or [t.name for t in float_graph.inputs]
        self.samples = [feeds(float_graph, s) for s in dataset()]
        run = LiteRTExecutor(float_graph, list(float_graph.outputs))
        self.reference = [np.concatenate([run(s)[t.name] for s in self.samples]).ravel()
                          for t in float_graph.outputs]

    def __call__(self, blob: bytes) -> float:
        from quantkit.litert import Runner

        runner = Runner(blob)
        outputs = [runner([s[n] for n in self.names]) for s in self.samples]
        actual = [np.concatenate([o[i] for o in outputs]).ravel()
                  for i in range(len(self.reference))]
        return min(SQNR_CAP_DB, sqnr_db(np.concatenate(self.reference), np.concatenate(actual)))


def convert_within_budget(converter: Any) -> bytes:
    """``converter.convert()`` under ``converter.accuracy_control`` (module docstring)."""
    control = converter.accuracy_control
    if not isinstance(control, AccuracyControl):
        raise ConversionError(Phase.OPTIONS, f"accuracy_control={control!r}: expected a "
                              "quantkit.AccuracyControl")
    conversion = Conversion.of(converter)
    dataset = control.debug_dataset or _dataset(converter)
    search = _Search(control, conversion, dataset)
    blob = search.run()
    converter.accuracy_report = search.report
    log.info("accuracy control:\n%s\nrecipe: %s", search.report.summary(),
             search.report.recipe.to_json())
    return blob


def _dataset(converter: Any):
    dataset = converter.representative_dataset
    return getattr(dataset, "input_gen", dataset)


class _Search:
    def __init__(self, control: AccuracyControl, conversion: Conversion, dataset):
        self.control, self.conversion, self.dataset = control, conversion, dataset
        self.validate = control.validation_fn or OutputSqnr(conversion.float_graphs[0], dataset)
        self.report: AccuracyReport | None = None
        self.count = 0

    def measure(self, blob: bytes) -> float:
        self.count += 1
        return float(self.validate(blob))

    def run(self) -> bytes:
        float_metric = self.measure(self.conversion.float_model())
        target = self.control.target(float_metric)
        plain_graphs = self.conversion.quantize()
        best = self.conversion.write(plain_graphs)
        metric = self.measure(best)
        report = self.report = AccuracyReport(float_metric, target, metric, metric)
        log.info("accuracy control: float %.4g, target %.4g, plain %.4g", float_metric, target,
                 metric)
        self.rules: tuple[Rule, ...] = ()
        self.best, self.metric, self.target = best, metric, target
        if metric < target:
            rows = [(row.tensor, row.layer) for row in self._ranking(plain_graphs)]
            self._pass(rows, self._precisions())
            # Still short: the int16 promotions, in their order, go on to float (int16 keeps
            # int8 weights, whose rounding it cannot undo).
            escalate = [(s.tensor, s.layer) for s in report.steps
                        if s.kept and s.precision is not Precision.FLOAT]
            self._pass(escalate, [Precision.FLOAT])
        metric, best, rules = self.metric, self.best, self.rules
        report.metric, report.recipe, report.validations = metric, Recipe(rules), self.count
        report.met = metric >= target
        if not report.met:
            log.warning("accuracy control: the target %.4g was not met (best %.4g after %d "
                        "validations)", target, metric, self.count)
        return best

    def _pass(self, rows: list[tuple[str, str]], precisions: list[Precision]) -> None:
        """Promote each tensor of ``rows`` in turn, keeping the promotions that help, until
        the target is met or the validations run out."""
        for tensor, layer in rows:
            if self.count >= self.control.max_validations or self.metric >= self.target:
                return
            base = tuple(r for r in self.rules if r.select.tensor not in
                         {p.select.tensor for p in promotion(
                             self.conversion.float_graphs[0], tensor, Precision.FLOAT)})
            tried = self._promote(base, tensor, layer, precisions)
            if tried is None:
                continue
            candidate, blob, value, precision = tried
            kept = value > self.metric
            self.report.steps.append(Step(tensor, layer, precision, value, kept))
            log.info("accuracy control: %s %s (%s) → %.4g%s", precision.value, layer, tensor,
                     value, "" if kept else " (no better: dropped)")
            if kept:
                self.rules, self.best, self.metric = candidate, blob, value

    def _ranking(self, graphs: list[Graph]):
        from quantkit.debug.debugger import measure_layers

        return measure_layers(self.conversion.float_graphs[0], graphs[0], self.dataset,
                              ).ranking

    def _promote(self, rules: tuple[Rule, ...], tensor: str, layer: str,
                 precisions: list[Precision]):
        """The first of ``precisions`` the tensor's ops can take: the new rules, the model, its
        metric and the precision; None if none quantizes."""
        for precision in precisions:
            candidate = rules + promotion(self.conversion.float_graphs[0], tensor, precision)
            try:
                graphs = self.conversion.quantize(Recipe(candidate))
            except ConversionError as e:  # no int16 kernel for one of the ops
                log.info("accuracy control: %s (%s) cannot be %s: %s", layer, tensor,
                         precision.value, e)
                continue
            blob = self.conversion.write(graphs)
            return candidate, blob, self.measure(blob), precision
        return None

    def _precisions(self) -> list[Precision]:
        if self.conversion.mode.quant is QuantMode.FULL_INTEGER:
            return [Precision.INT16, Precision.FLOAT]
        return [Precision.FLOAT]  # int16x8 models are int16 already; legacy uint8 has no int16


def promotion(graph: Graph, tensor: str, precision: Precision) -> tuple[Rule, ...]:
    """Rules moving the op that writes ``tensor`` and every op that reads it to
    ``precision``; through ops that only move values (RESHAPE, MAX_POOL_2D: their output
    shares the input's grid) to the ops reading theirs, so the values never return to the
    narrow grid before they are computed on."""
    producers = {t.name: op for op in graph.ops for t in op.outputs}
    readers = graph.consumers()
    ops = [producers[tensor]]
    todo = [t for t in producers[tensor].outputs if t.name == tensor]
    while todo:
        for op in readers.get(todo.pop(0), []):
            if op not in ops:
                ops.append(op)
                if _moves_values(op):
                    todo.extend(op.outputs)
    settings = Settings(precision=precision)
    names = list(dict.fromkeys(op.outputs[0].name for op in ops))
    return tuple(Rule(Select(tensor=name), settings) for name in names)


def _moves_values(op) -> bool:
    spec = OPS.get(op.type)
    return spec is not None and spec.quant is not None and spec.quant.output is OutputRule.SHARED
