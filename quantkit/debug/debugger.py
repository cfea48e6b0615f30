"""``QuantizationDebugger``: TF's layer-by-layer debugger (``tf.lite.experimental``), in LiteRT.

TF's debugger converts a model with NumericVerify ops: each quantized op gets a float twin fed
the same (dequantized) inputs, and the op records ``diff = dequantize(q) − float`` per sample.
quantkit needs no such ops: it pairs each quantized op with its float op (``probe``), runs
the quantized model in LiteRT keeping every tensor, and runs each float op alone on the
quantized op's dequantized inputs. The metrics are TF's: each metric of ``diff`` per sample,
then their mean over the samples (NaNs skipped); ``layer_statistics_dump`` writes TF's CSV
columns. Unlike TF's, it debugs every integer mode: int8 (float, int8 or uint8 IO),
int16x8 and legacy uint8, and it goes on to rank the layers (``ranking``).
"""

from __future__ import annotations

import collections
import csv
from dataclasses import dataclass
from typing import IO, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from quantkit.debug import probe
from quantkit.debug.pipeline import Conversion
from quantkit.debug.ranking import ErrorSums, Ranking, RankRow, layer_of
from quantkit.ir.graph import Graph
from quantkit.recipe import Recipe
from quantkit.runtime import LiteRTExecutor
from quantkit.types import ConversionError, Phase

LayerMetric = Callable[[np.ndarray], float]
ModelMetric = Callable[[Sequence[np.ndarray], Sequence[np.ndarray]], float]
DirectMetric = Callable[[np.ndarray, np.ndarray, float, int], float]

# TF's default layer metrics, of diff = dequantize(q) − float.
DEFAULT_LAYER_METRICS: dict[str, LayerMetric] = {
    "num_elements": lambda diffs: diffs.size,
    "stddev": np.std,
    "mean_error": np.average,
    "max_abs_error": lambda diffs: np.max(np.abs(diffs)),
    "mean_squared_error": lambda diffs: np.average(diffs ** 2),
}


@dataclass
class QuantizationDebugOptions:
    """What the debugger measures and which ops it keeps float, as TF's.

    ``layer_debug_metrics``: ``{name: fn(diff) -> float}`` besides the defaults.
    ``model_debug_metrics``: ``{name: fn(float_outputs, quantized_outputs) -> float}``.
    ``layer_direct_compare_metrics``: ``{name: fn(float, quantized, scale, zero_point)}``,
    quantized as stored (integers). ``denylisted_ops``: op type names kept float;
    ``denylisted_nodes``: output tensor names whose op is kept float. ``fully_quantize``:
    the model's float inputs and outputs become integers too (the activations' type).
    """

    layer_debug_metrics: Mapping[str, LayerMetric] | None = None
    model_debug_metrics: Mapping[str, ModelMetric] | None = None
    layer_direct_compare_metrics: Mapping[str, DirectMetric] | None = None
    denylisted_ops: Sequence[str] | None = None
    denylisted_nodes: Sequence[str] | None = None
    fully_quantize: bool = False

    def __post_init__(self):
        keys = [k for m in (self.layer_debug_metrics, self.model_debug_metrics,
                            self.layer_direct_compare_metrics) if m for k in m]
        if len(keys) != len(set(keys)):
            raise ValueError("Provided metrics have duplicate keys.")

    def recipe(self) -> Recipe:
        return Recipe.denylist(self.denylisted_nodes or (), self.denylisted_ops or ())


class QuantizationDebugger:
    """Runs the float and the quantized model side by side, layer by layer.

    Args:
        converter: a quantkit ``TFLiteConverter`` set for a calibrated integer mode (its
            ``representative_dataset`` calibrates; it is not changed).
        debug_dataset: a function returning an iterable of samples (a list of arrays, one per
            model input in the converter's order, or a dict by input name); default: the
            converter's representative dataset.
        debug_options: a ``QuantizationDebugOptions``.

    Attributes (after ``run()``): ``layer_statistics`` ``{tensor name: {metric: value}}``
    (names of the quantized model: a model output's integer tensor is ``NAME/int8``);
    ``model_statistics`` ``{metric: value}`` (with ``model_debug_metrics``). A model with
    several signatures is debugged on its first. TF's ``quant_debug_model_*`` /
    ``float_model_*`` arguments (a debug model TF's converter wrote) are refused: quantkit
    debugs a converter.
    """

    def __init__(self, converter: Any = None, debug_dataset: Callable[[], Iterable[Any]] | None
                 = None, debug_options: QuantizationDebugOptions | None = None, **tf_only: Any):
        if tf_only:
            raise ConversionError(Phase.OPTIONS, f"QuantizationDebugger: {sorted(tf_only)} "
                                  "are TF's debug-model arguments; quantkit debugs a converter: "
                                  "pass converter=")
        if converter is None:
            raise ConversionError(Phase.OPTIONS, "QuantizationDebugger needs converter=")
        self._options = debug_options or QuantizationDebugOptions()
        self._conversion = Conversion.of(converter, self._options.fully_quantize)
        dataset = converter.representative_dataset
        self._dataset = debug_dataset or getattr(dataset, "input_gen", dataset)
        self.layer_statistics: dict[str, dict[str, float]] | None = None
        self.model_statistics: dict[str, float] | None = None
        self._ranking: Ranking | None = None
        self._quantize()

    @property
    def options(self) -> QuantizationDebugOptions:
        return self._options

    @options.setter
    def options(self, options: QuantizationDebugOptions) -> None:
        """New options re-quantize from the same calibration (TF re-converts too)."""
        self._options = options
        self._conversion = self._conversion.fully_quantized(options.fully_quantize)
        self._quantize()

    def _quantize(self) -> None:
        self._graphs = self._conversion.quantize(self._options.recipe())
        self.layer_statistics = self.model_statistics = self._ranking = None

    def get_nondebug_quantized_model(self) -> bytes:
        """The quantized model the statistics are about, as ``convert()`` writes it."""
        return self._conversion.write(self._graphs)

    # --- running ---------------------------------------------------------------------------
    def run(self) -> None:
        """Run the debug dataset through both models; fills the statistics."""
        measured = measure_layers(
            self._conversion.float_graphs[0], self._graphs[0], self._dataset,
            self._metrics(), self._options.layer_direct_compare_metrics or {},
            self._options.model_debug_metrics or {})
        self.layer_statistics = measured.layer_statistics
        self.model_statistics = measured.model_statistics
        self._ranking = measured.ranking

    def _metrics(self) -> dict[str, LayerMetric]:
        return {**DEFAULT_LAYER_METRICS, **(self._options.layer_debug_metrics or {})}

    def ranking(self) -> Ranking:
        """Every quantized tensor, worst first by the error its op adds on its own (runs the
        debug dataset first if ``run()`` has not)."""
        if self._ranking is None:
            self.run()
        return self._ranking

    # --- TF's CSV ----------------------------------------------------------------------------
    def layer_statistics_dump(self, file: IO[str]) -> None:
        """``layer_statistics`` as CSV with TF's columns: op_name, tensor_idx, the metrics,
        scale, zero_point, tensor_name (indices of ``get_nondebug_quantized_model()``)."""
        fields = ["op_name", "tensor_idx", *self._metrics(),
                  *(self._options.layer_direct_compare_metrics or {}),
                  "scale", "zero_point", "tensor_name"]
        writer = csv.DictWriter(file, fields)
        writer.writeheader()
        indices = self._tensor_indices()
        producers = {t.name: op for op in self._graphs[0].ops for t in op.outputs}
        tensors = {t.name: t for t in self._graphs[0].tensors()}
        for name, metrics in (self.layer_statistics or {}).items():
            quant = tensors[name].quant
            writer.writerow({**metrics, "op_name": producers[name].type.name,
                             "tensor_idx": indices.get(name, -1), "scale": quant.scales[0],
                             "zero_point": quant.zero_points[0], "tensor_name": name})

    def _tensor_indices(self) -> dict[str, int]:
        from quantkit.tflite_io.reader import read_model

        subgraph = read_model(self.get_nondebug_quantized_model()).subgraphs[0]
        return {t.name: i for i, t in enumerate(subgraph.tensors)}


@dataclass
class Measured:
    layer_statistics: dict[str, dict[str, float]]
    model_statistics: dict[str, float] | None
    ranking: Ranking


def measure_layers(float_graph: Graph, quant_graph: Graph, dataset: Callable[[], Iterable[Any]],
                   layer_metrics: Mapping[str, LayerMetric] = DEFAULT_LAYER_METRICS,
                   direct_metrics: Mapping[str, DirectMetric] | None = None,
                   model_metrics: Mapping[str, ModelMetric] | None = None) -> Measured:
    """Run ``dataset`` through the float and the quantized graph of one signature: TF's layer
    and model statistics, and the ranking."""
    runs = _Runs(float_graph, quant_graph)
    layer: dict[str, dict[str, list[float]]] = collections.defaultdict(
        lambda: collections.defaultdict(list))
    model: dict[str, list[float]] = collections.defaultdict(list)
    sums = {pair.output.name: ErrorSums() for pair in runs.pairs}
    count = 0
    for sample in dataset():
        count += 1
        floats, quants = runs.both(feeds(float_graph, sample))
        for pair in runs.pairs:
            _verify(pair, quants, layer[pair.output.name], layer_metrics, direct_metrics or {})
            sums[pair.output.name].add(pair, floats, quants)
        for name, fn in (model_metrics or {}).items():
            model[name].append(fn(runs.outputs(float_graph, floats),
                                  runs.outputs(quant_graph, quants, dequantized=True)))
    if not count:
        raise ConversionError(Phase.CALIBRATION, "the debug dataset yielded no sample")
    return Measured(
        {t: {m: float(np.nanmean(v)) for m, v in metrics.items()} for t, metrics in layer.items()},
        {m: float(np.mean(v)) for m, v in model.items()} if model_metrics else None,
        Ranking([_row(pair, sums[pair.output.name], quant_graph.ops.index(pair.quantized))
                 for pair in runs.pairs]))


def _verify(pair: probe.OpPair, quants: Mapping[str, np.ndarray], out: dict[str, list[float]],
            metrics: Mapping[str, LayerMetric], direct: Mapping[str, DirectMetric]) -> None:
    """TF's NumericVerify: the float op on the quantized op's dequantized inputs; each metric
    of ``diff = dequantize(q) − float``."""
    reference = pair.run_float(probe.dequantized_inputs(pair.quantized, quants))
    stored = quants[pair.output.name]
    diffs = probe.dequantize(stored, pair.output.quant) - reference
    for name, fn in metrics.items():
        out[name].append(fn(diffs))
    quant = pair.output.quant
    for name, fn in direct.items():
        out[name].append(fn(reference, stored, quant.scales[0], quant.zero_points[0]))


class _Runs:
    """The float and the quantized graph (every activation kept), and the op pairs."""

    def __init__(self, float_graph: Graph, quant_graph: Graph):
        self.float = LiteRTExecutor(float_graph)
        self.quant = LiteRTExecutor(quant_graph, description=probe.DEBUG_DESCRIPTION)
        self.pairs = probe.pair_ops(float_graph, quant_graph)
        if not self.pairs:
            raise ConversionError(Phase.QUANTIZATION, "the debugger found no quantized op "
                                  "(every op stayed float)")

    def both(self, inputs: dict[str, np.ndarray]):
        """Every tensor's values in both graphs for one sample (float inputs by name; integer
        model inputs get them quantized with their own parameters, as TF's debugger)."""
        quant_inputs = {name: probe.quantize(inputs[name], t.quant, t.dtype) if t.quant
                        else inputs[name]
                        for name, t in zip(self.quant.input_names, self.quant.graph.inputs)}
        return self.float(inputs), self.quant(quant_inputs)

    @staticmethod
    def outputs(graph: Graph, values: Mapping[str, np.ndarray], dequantized: bool = False
                ) -> list[np.ndarray]:
        return [probe.dequantize(values[t.name], t.quant) if dequantized else values[t.name]
                for t in graph.outputs]


def feeds(graph: Graph, sample: Any) -> dict[str, np.ndarray]:
    """A sample (list in input order, or dict by name) as float arrays by input name."""
    names = list(graph.input_names) or [t.name for t in graph.inputs]
    if isinstance(sample, Mapping):
        return {n: np.asarray(sample[n], np.float32) for n in names}
    if isinstance(sample, np.ndarray):
        sample = [sample]
    sample = list(sample)
    if len(sample) != len(names):
        raise ConversionError(Phase.CALIBRATION, f"a debug sample has {len(sample)} arrays; "
                              f"the model has {len(names)} inputs {names}")
    return {n: np.asarray(x, np.float32) for n, x in zip(names, sample)}


def _row(pair: probe.OpPair, sums: ErrorSums, index: int) -> RankRow:
    quant, dtype = pair.output.quant, np.dtype(pair.output.dtype)
    limits = np.iinfo(dtype)
    s, z = quant.scales[0], quant.zero_points[0]
    return RankRow(
        tensor=pair.float_output.name, layer=layer_of(pair.float.name), node=pair.float.name,
        op_type=pair.quantized.type.name, dtype=dtype.name, scale=float(s), zero_point=int(z),
        range_min=float(s * (limits.min - z)), range_max=float(s * (limits.max - z)),
        op_index=index, **sums.summary())
