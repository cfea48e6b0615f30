"""The public converter: the same surface as ``tf.lite.TFLiteConverter``, quantkit's engine.

``convert()`` resolves the mode from the attributes, then runs the pipeline in its stages
(capture → lowering → passes → calibration → quantization → writing); each stage's errors are
ValueErrors tagged with the stage.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import tensorflow as tf

from calibration import CalibrationStats, ObserverKind
from quantkit._version import __version__
from quantkit.accuracy import (AUTO_CHECK_SAMPLES, AUTO_SAMPLES, AUTO_TRIALS, Candidate,
                               auto_ranges, calibrate_before, channel_minima, choose_start,
                               layer_inputs, make_probe)
from quantkit.calibrate import (HISTOGRAM_METHODS, CalibrationOptions, batch_rows,
                                calibrate_graphs, means, ranges)
from quantkit.frontend import capture
from quantkit.frontend.lower import lower
from quantkit.frontend.tf_rnn import ALL_CELLS, FusedCell
from quantkit.frontend.tf_ops import ONLY_IN_PATTERNS
from quantkit.ir.graph import Graph
from quantkit.mode import resolve_mode
from quantkit.passes import run_passes
from quantkit.passes.absorb import absorb_high_bias, absorbable
from quantkit.passes.equalize import equalize, undo_factors
from quantkit.quantize import quantize_integer
from quantkit.quantize.adaround import WEIGHTED as ADAROUND_OPS
from quantkit.quantize.adaround import AdaRound
from quantkit.quantize.fake_quant import emulated, has_trained_ranges, trained_ranges
from quantkit.quantize.params import range_methods
from quantkit.quantize.plan import recurrent_int16
from quantkit.quantize.schemes import SCHEMES
from quantkit.quantize.weight_only import quantize_dynamic_range, quantize_float16
from quantkit.recipe import OpSettings, RangeMethod, Recipe, Settings, WeightRounding
from quantkit.tflite_io import write_model
from quantkit.tflite_io.metadata import ModelType, model_description, model_metadata
from quantkit.types import (
    ConversionError,
    ConversionMode,
    Granularity,
    OpsSet,
    Optimize,
    OpType,
    Phase,
    QuantMode,
)

log = logging.getLogger(__name__)


@dataclass
class TargetSpec:
    """What the converted model may use, as in ``tf.lite.TargetSpec``."""

    supported_ops: set = field(default_factory=lambda: {OpsSet.TFLITE_BUILTINS})
    supported_types: set = field(default_factory=set)
    experimental_select_user_tf_ops: set = field(default_factory=set)
    experimental_supported_backends: Any = None


# TF's converter attributes beyond the documented ones, with TF 2.21's defaults. Each is
# accepted; the README's attribute table says what it does here (most have no effect: they tune
# TF's own MLIR converter, which quantkit does not use).
TF_COMPAT_ATTRIBUTES: dict[str, Any] = {
    # honoured
    "_experimental_disable_per_channel": False,
    "_experimental_disable_per_channel_quantization_for_dense_layers": False,
    "_experimental_full_integer_quantization_bias_type": None,
    # no effect: quantkit has one converter and one quantizer, and freezes variables
    "experimental_new_converter": True,
    "experimental_new_quantizer": True,
    "experimental_new_dynamic_range_quantizer": True,
    "experimental_enable_resource_variables": True,
    "experimental_lower_to_saved_model": True,
    "experimental_use_stablehlo_quantizer": False,
    "experimental_stablehlo_quantizer_config": None,
    "_experimental_allow_all_select_tf_ops": False,
    "_experimental_calibrate_only": False,
    "_experimental_default_to_single_batch_in_tensor_list_ops": False,
    "_experimental_disable_fuse_mul_and_fc": False,
    "_experimental_enable_composite_direct_lowering": True,
    "_experimental_enable_dynamic_update_slice": False,
    "_experimental_guarantee_all_funcs_one_use": False,
    "_experimental_low_bit_qat": False,
    "_experimental_lower_tensor_list_ops": True,
    "_experimental_preserve_assert_op": False,
    "_experimental_qdq_conversion_mode": None,
    "_experimental_quantization_options": None,
    "_experimental_reduce_type_precision": False,
    "_experimental_sparsify_model": False,
    "_experimental_strict_qdq": False,
    "_experimental_tf_quantization_mode": None,
    "_experimental_unfold_large_splat_constant": False,
    "_experimental_unsafe_fuse_dynamic_shaped_broadcast": False,
    "_experimental_use_buffer_offset": False,
    "_experimental_variable_quantization": False,
    "unfold_batchmatmul": False,
    "legalize_custom_tensor_list_ops": False,
    "canonicalizing_inf_as_min_max_float": True,
    "serialize_debug_metadata": False,
    "model_origin_framework": "UNSET",
}


# A frontend gives the model's lowered IR graphs, one per signature, before any pass; its
# arguments are `allow_custom_ops` and the RNN cells to lower to fused ops (``FUSED_RNNS``).
Frontend = Callable[[bool, frozenset[FusedCell]], list[Graph]]

# Loops the TF frontend lowers to fused sequence ops or a WHILE (FusedCell.LOOP,
# frontend.tf_while), per mode (issue #12); the others unroll. int8: LiteRT's integer LSTM
# (quantize.lstm) and integer WHILEs (calibration replays the body: loop_runtime; its
# subgraphs in int16: quantize.loops, plan.recurrent_int16); int16x8 and uint8 unroll.
FUSED_RNNS: dict[QuantMode, frozenset[FusedCell]] = {
    QuantMode.FLOAT32: ALL_CELLS,
    QuantMode.FLOAT16: ALL_CELLS,
    QuantMode.DYNAMIC_RANGE: ALL_CELLS,
    QuantMode.FULL_INTEGER: frozenset({FusedCell.LSTM, FusedCell.LOOP}),
    QuantMode.INT16X8: frozenset(),
    QuantMode.LEGACY_UINT8: frozenset(),
}


def _tf_frontend(capture_fn: Callable[[], list[capture.Captured]]) -> Frontend:
    """TF traces and freezes the model (``capture``); quantkit lowers it (``lower``)."""
    return lambda allow_custom_ops, fused_rnns: [
        lower(c, allow_custom_ops=allow_custom_ops, fused_rnns=fused_rnns)
        for c in capture_fn()]


class RepresentativeDataset:
    """Wraps a generator function of calibration samples, as ``tf.lite.RepresentativeDataset``."""

    def __init__(self, input_gen: Callable[[], Iterable[Any]]):
        self.input_gen = input_gen


class TFLiteConverter:
    """Converts a TF model to a TFLite flatbuffer; create it with a ``from_*`` classmethod.

    Attributes mirror ``tf.lite.TFLiteConverter``: ``optimizations``,
    ``representative_dataset``, ``target_spec``, ``inference_input_type``,
    ``inference_output_type``, ``allow_custom_ops``, ``exclude_conversion_metadata``; the
    ``experimental_*`` ones are accepted for compatibility (see README for their effect here).
    """

    def __init__(self, frontend: Frontend, model_type: ModelType = ModelType.CONCRETE_FUNCTIONS):
        self._frontend = frontend
        self._model_type = model_type
        self.optimizations: list[Optimize] = []
        self.representative_dataset: Any = None
        self.target_spec = TargetSpec()
        self.inference_input_type: Any = tf.float32
        self.inference_output_type: Any = tf.float32
        self.allow_custom_ops = False
        self.exclude_conversion_metadata = False
        for name, default in TF_COMPAT_ATTRIBUTES.items():  # TF's other knobs, TF's defaults
            setattr(self, name, default)
        # quantkit's own: weight scales per output channel (TF's default) or per tensor; TF's
        # private `_experimental_disable_per_channel = True` is honoured too.
        self.weight_granularity = Granularity.PER_CHANNEL
        # quantkit's own: biases absorb the weights' mean rounding error, measured on the
        # calibration data (TF has no such step; False gives TF's biases).
        self.bias_correction = True
        # quantkit's own: TF1-era models, uint8 activations and per-tensor uint8 weights, for
        # runtimes and accelerators that only take uint8 (needs a representative_dataset).
        self.legacy_uint8 = False
        self.calibration = CalibrationOptions()
        # quantkit's own: cross-layer equalization of the float graph (quantkit.passes.equalize:
        # the float model is unchanged); None: Optimize.ACCURACY decides per signature, by
        # the output error on calibration samples (`start_choices` after convert()).
        self.cross_layer_equalization: bool | None = None
        self.start_choices: tuple[Any, ...] = ()  # quantkit.accuracy.StartChoice per signature
        # quantkit's own: after equalization, high-bias absorption (quantkit.passes.absorb),
        # shifts measured on the representative dataset; None: off (see README, #15).
        self.high_bias_absorption: bool | None = None
        # quantkit's own: equalization through RELU6 too (each such layer then ends in a
        # per-channel MINIMUM, quantkit.passes.equalize); off by default (README, #15).
        self.equalize_relu6 = False
        self.calibration_statistics: CalibrationStats | None = None  # reuse a calibration
        # quantkit's own: per-op overrides of the mode (precision, weight granularity, range
        # method), e.g. TF's denylists as `Recipe.denylist(nodes, ops)`; see quantkit.recipe.
        self.recipe = Recipe()
        # quantkit's own: promote the layers that lose most to int16 or float until a metric
        # is within budget (a quantkit.AccuracyControl); its search is `accuracy_report`.
        self.accuracy_control: Any = None
        self.accuracy_report: Any = None

    # --- entry points -------------------------------------------------------------------
    @classmethod
    def from_keras_model(cls, model: Any) -> "TFLiteConverter":
        return cls(_tf_frontend(lambda: [capture.capture_keras(model)]), ModelType.KERAS_MODEL)

    @classmethod
    def from_concrete_functions(cls, funcs: Sequence[Any], trackable_obj: Any = None
                                ) -> "TFLiteConverter":
        # trackable_obj keeps the functions' variables alive in TF; holding it does the same.
        funcs = list(funcs) if funcs is not None else []
        if not funcs:
            raise ConversionError(Phase.CAPTURE, "No ConcreteFunction is specified.")
        if len(funcs) > 1:
            raise ConversionError(
                Phase.CAPTURE, "This converter can only convert a single ConcreteFunction. "
                f"Got {len(funcs)}; converting multiple functions is under development.")
        converter = cls(_tf_frontend(lambda: [capture.capture_concrete_function(funcs[0])]))
        converter._trackable_obj = trackable_obj
        return converter

    @classmethod
    def experimental_from_jax(cls, serving_funcs: Sequence[Any],
                              inputs: Sequence[Sequence[tuple[str, Any]]]) -> "TFLiteConverter":
        """A JAX function (weights closed over, e.g. ``functools.partial(apply, params)``) and
        its example inputs as ``[[(name, array), ...]]``, as TF's: lowered through StableHLO
        into quantkit's IR. The batch is fixed at the examples' size, as in TF. Needs the
        ``jax`` extra (``pip install quantkit[jax]``)."""
        from quantkit.frontend import jax_capture  # JAX is optional

        return cls(lambda allow_custom_ops, _: jax_capture.lower_jax(serving_funcs, inputs),
                   ModelType.JAX)

    @classmethod
    def from_saved_model(cls, saved_model_dir: str, signature_keys: Sequence[str] | None = None,
                         tags: Any = None) -> "TFLiteConverter":
        """One subgraph per signature in ``signature_keys`` (default ``serving_default``), each
        with its SignatureDef."""
        return cls(_tf_frontend(
            lambda: capture.capture_saved_model(saved_model_dir, signature_keys, tags)),
            ModelType.SAVED_MODEL)

    @classmethod
    def from_tflite(cls, model: Any) -> "TFLiteConverter":
        """A float ``.tflite`` model of any origin (a path or its bytes), read and checked now:
        one subgraph per signature (subgraph 0 when it has none, inputs and outputs by
        position); float16 and sparse weights become float constants. A quantized model is
        refused. See ``quantkit.frontend.tflite_frontend``."""
        from quantkit.frontend import tflite_frontend

        source = tflite_frontend.load(model)
        return cls(lambda allow_custom_ops, _: tflite_frontend.lower_tflite(
            source, allow_custom_ops), ModelType.TFLITE)

    # --- conversion ---------------------------------------------------------------------
    def resolve_mode(self, trained_ranges: bool = False) -> ConversionMode:
        """The conversion mode the attributes ask for (raises for combinations TF rejects);
        ``trained_ranges``: the model has FakeQuant ranges from quantization-aware training."""
        per_tensor = self._experimental_disable_per_channel
        return resolve_mode(
            optimizations=self.optimizations,
            representative_dataset=self.representative_dataset,
            supported_ops=self.target_spec.supported_ops,
            supported_types=self.target_spec.supported_types,
            inference_input_type=self.inference_input_type,
            inference_output_type=self.inference_output_type,
            granularity=Granularity.PER_TENSOR if per_tensor else self.weight_granularity,
            bias_correction=self.bias_correction, legacy_uint8=self.legacy_uint8,
            int16x8_bias_type=self._experimental_full_integer_quantization_bias_type,
            dense_per_tensor=self._experimental_disable_per_channel_quantization_for_dense_layers,
            trained_ranges=trained_ranges)

    def convert(self) -> bytes:
        """Convert the model; returns the TFLite flatbuffer as bytes."""
        if self.accuracy_control is not None:  # a search over recipes (quantkit.debug)
            from quantkit.debug.accuracy import convert_within_budget

            return convert_within_budget(self)
        lowered = self._lowered()
        # A quantization-aware trained model quantizes fully without a representative dataset.
        mode = self.resolve_mode(has_trained_ranges(lowered))
        deciding = (mode.quant in _CALIBRATED and self._accuracy() and not self.recipe.rules
                    and self.cross_layer_equalization is None and self.representative_dataset
                    is not None and self.calibration_statistics is None
                    and not (self.equalize_relu6 or self._absorbing())
                    and self._range_method() is RangeMethod.AUTO)
        plain: list[tuple[Graph, Any]] = []  # ACCURACY decides CLE: the graphs before it
        graphs = self._float_graphs(keep_offsets=mode.quant in _WEIGHT_ONLY, lowered=lowered,
                                    plain=plain if deciding else None)
        settings = self._settings(graphs, mode)
        if mode.quant not in _CALIBRATED and WeightRounding.ADAROUND in {
                self.calibration.weight_rounding, *(s.weight_rounding for s in settings.values())}:
            raise ConversionError(Phase.OPTIONS, "weight_rounding=ADAROUND learns on the "
                                  "calibration data: it needs integer quantization with a "
                                  f"`representative_dataset` (the mode is {mode.quant.value})")
        if mode.quant is QuantMode.FLOAT32:  # a QAT model's FakeQuants stay, as in TF
            graphs = [emulated(graph) for graph in graphs]
        if mode.quant in _REWRITES:
            graphs = [_REWRITES[mode.quant](graph, mode, settings) for graph in graphs]
        elif mode.quant in _CALIBRATED:
            graphs = self._quantize_integer(graphs, mode, settings, plain)
        return self._write(graphs, mode)

    def _write(self, graphs: list[Graph], mode: ConversionMode) -> bytes:
        metadata = model_metadata(mode, self._model_type, self.allow_custom_ops,
                                  self.exclude_conversion_metadata)
        return write_model(graphs, description=model_description(__version__),
                           metadata=metadata)

    def _lowered(self) -> list[Graph]:
        """The frontend's graphs, Keras RNNs fused as the mode allows (``FUSED_RNNS``). The
        mode is resolved before lowering here, without the trained ranges of a
        quantization-aware model (which only lowering finds): a mode that needs them is
        integer."""
        try:
            quant = self.resolve_mode().quant
        except ConversionError:
            quant = QuantMode.FULL_INTEGER
        return self._frontend(self.allow_custom_ops, FUSED_RNNS.get(quant, frozenset()))

    def _settings(self, graphs: list[Graph], mode: ConversionMode) -> OpSettings:
        """Each op's settings: the recipe's rules over the mode's defaults."""
        if not isinstance(self.recipe, Recipe):
            raise ConversionError(Phase.OPTIONS, f"recipe={self.recipe!r}: expected a "
                                  "quantkit.Recipe")
        if self.recipe.rules and mode.quant is QuantMode.FLOAT32:
            raise ConversionError(Phase.OPTIONS, "a recipe is set, but nothing is quantized: "
                                  "set `optimizations=[Optimize.DEFAULT]`")
        return recurrent_int16(graphs, self.recipe.resolve(graphs, Settings()), mode)

    def _quantize_integer(self, graphs: list[Graph], mode: ConversionMode,
                          settings: OpSettings, plain: Sequence[tuple[Graph, Any]] = ()
                          ) -> list[Graph]:
        """Calibrate (or reuse ``calibration_statistics``), then quantize each signature.
        ``plain``: ``graphs`` before equalization (``Optimize.ACCURACY``), calibrated as
        Optimize.DEFAULT does; per signature Optimize.DEFAULT's model is kept where its output
        error is lower than the equalized graph's (``choose_start``), else the search runs."""
        stats, dataset = self.calibration_statistics, self.representative_dataset
        plain_settings, plain_stats, self.start_choices = settings, None, ()
        factors = {g.signature_key: f for (p, f), g in zip(plain, graphs) if p is not g}
        if factors and stats is None:  # one pass measures the graphs before CLE too
            stats, plain_stats = calibrate_before(graphs, factors, getattr(
                dataset, "input_gen", dataset), self._calibration_options(settings))
            plain_settings = self._settings([p for p, _ in plain], mode)
        elif stats is None and dataset is not None:
            stats = self._calibrate(graphs, settings)
        # When only a recipe asks for histograms, every other tensor keeps the min/max range
        # the configured observer would have given.
        default = (RangeMethod.MIN_MAX if stats is not None and ObserverKind(stats.observer)
                   is ObserverKind.HISTOGRAM and self.calibration.observer is
                   ObserverKind.MIN_MAX else None)
        default = (self._range_method(stats) if stats is not None else None) or default
        quantized = []
        for n, graph in enumerate(graphs):
            key = graph.signature_key
            methods = range_methods(graph, settings)
            chosen = ranges(stats, key, self.calibration, methods, default) if stats else {}
            auto = [t for t in chosen if methods.get(t, default) is RangeMethod.AUTO]
            probe = (make_probe(graph, dataset, graphs)
                     if auto and dataset is not None else None)
            start = Candidate(graph, chosen, means(stats, key) if stats else {}, settings,
                              mode, equalized=bool(plain) and plain[n][0] is not graph)
            start_error, budget = None, AUTO_TRIALS
            if probe is not None and plain_stats is not None and start.equalized:
                start, choice = choose_start(Candidate(
                    plain[n][0], ranges(plain_stats, key, self.calibration, {},
                                        RangeMethod.MIN_MAX),
                    means(plain_stats, key), plain_settings,
                    dataclasses.replace(mode, accuracy=False), equalized=False), start, probe)
                self.start_choices += (choice,)
                if choice.equalized:  # the search starts there (one trial spent on DEFAULT)
                    start_error, budget = choice.equalized_error, AUTO_TRIALS - 1
                else:  # Optimize.DEFAULT's model, as Optimize.DEFAULT converts it
                    probe = None
            graph, chosen, op_settings = start.graph, start.ranges, start.settings
            rounding = self._rounding(graph, graphs, op_settings)
            if probe is not None:  # Optimize.ACCURACY: ranges by the error at the outputs
                check = make_probe(graph, dataset, graphs, AUTO_CHECK_SAMPLES,
                                   skip=AUTO_SAMPLES)
                chosen = auto_ranges(graph, stats.for_signature(key).tensors, chosen, auto,
                                     mode, start.means, op_settings, probe, self.calibration,
                                     check, rounding,
                                     start_error if rounding is None else None, budget)
            # trained FakeQuant ranges (quantization-aware training) win, as in TF
            new, plan = quantize_integer(graph, {**chosen, **trained_ranges(graph)},
                                         start.mode, start.means, op_settings, rounding)
            log.info("signature %r: %d ops quantized, %d left float", key,
                     len(plan.quantized_ops), len(plan.float_ops))
            quantized.append(new)
        return quantized

    def _rounding(self, graph: Graph, graphs: list[Graph], settings: OpSettings
                  ) -> AdaRound | None:
        """AdaRound for the weighted ops whose weight rounding (the recipe's, else the
        calibration options') is ADAROUND, learned on their float inputs; None if none."""
        default = self.calibration.weight_rounding
        ops = [op for op in graph.ops if op.type in ADAROUND_OPS and (
            (settings[op].weight_rounding if op in settings else None) or default)
            is WeightRounding.ADAROUND]
        if not ops or self.representative_dataset is None:
            return None
        inputs = layer_inputs(graph, ops, self.representative_dataset, graphs)
        return AdaRound(inputs, ops) if inputs else None

    def calibrate(self) -> CalibrationStats:
        """Run the representative dataset through the float model; its statistics.

        Save them (``stats.save(path)``) and set ``calibration_statistics`` to reuse one
        calibration across conversions (per-channel and per-tensor, other IO types, ...).
        """
        if self.representative_dataset is None:
            raise ConversionError(Phase.CALIBRATION, "calibrate() needs a "
                                  "`representative_dataset`")
        graphs, options = self.calibration_setup()
        dataset = getattr(self.representative_dataset, "input_gen", self.representative_dataset)
        return calibrate_graphs(graphs, dataset, options)

    def calibration_setup(self) -> tuple[list[Graph], CalibrationOptions]:
        """What ``calibrate()`` runs: the float graphs (one per signature) and the options,
        with the observer the recipe needs and the rows per batch resolved. quantkit.beam's
        workers run them on shards of the samples; the same batches give the same
        statistics."""
        graphs = self._float_graphs()
        options = self._calibration_options(self.recipe.resolve(graphs, Settings()))
        return graphs, dataclasses.replace(options, batch_size=batch_rows(graphs, options))

    def _float_graphs(self, keep_offsets: bool = False, lowered: list[Graph] | None = None,
                      plain: list[tuple[Graph, Any]] | None = None) -> list[Graph]:
        """The float graphs after the passes, of ``lowered`` (else the frontend's); ``plain``
        gets each as it was before CLE (itself where CLE changed nothing), ``undo_factors``."""
        graphs = []
        for source in lowered or self._lowered():
            graph = run_passes(source, keep_offsets)
            if not self.allow_custom_ops:
                _check_no_leftover_custom_ops(graph)
            before = copy.deepcopy(graph) if plain is not None else graph
            equalizing, scales = self.cross_layer_equalization, {}
            if (self._accuracy() if equalizing is None else equalizing) and not keep_offsets:
                # cross-layer equalization: the float model is unchanged
                if not equalize(graph, relu6=bool(self.equalize_relu6), scales=scales):
                    before = graph
            if plain is not None:
                plain.append((before, undo_factors(graph, scales) if before is not graph else {}))
            graphs.append(graph)
            log.info("signature %r: %d ops", graph.signature_key, len(graph.ops))
        if self._absorbing() and not keep_offsets and self.representative_dataset is not None:
            for graph in graphs:
                first = [a.outputs[0] for a, _ in absorbable(graph)]
                done = absorb_high_bias(graph, channel_minima(
                    graph, first, self.representative_dataset, graphs))
                log.info("signature %r: high-bias absorption in %d of %d pairs",
                         graph.signature_key, len(done), len(first))
        return graphs

    def _absorbing(self) -> bool:
        """High-bias absorption: asked for (it needs the equalization pass's pairs only)."""
        return bool(self.high_bias_absorption)

    def _calibrate(self, graphs: list[Graph], settings: OpSettings) -> CalibrationStats:
        dataset = self.representative_dataset
        dataset = getattr(dataset, "input_gen", dataset)  # a RepresentativeDataset
        return calibrate_graphs(graphs, dataset, self._calibration_options(settings))

    def _calibration_options(self, settings: OpSettings) -> CalibrationOptions:
        """``calibration``, with the observer the recipe's range methods need."""
        options = self.calibration
        wanted = {s.range_method for s in settings.values()} | {self._range_method()}
        if options.observer is ObserverKind.MIN_MAX and wanted & HISTOGRAM_METHODS:
            # histograms keep the exact min and max too: MIN_MAX ranges stay what they were
            options = dataclasses.replace(options, observer=ObserverKind.HISTOGRAM)
        return options

    def _accuracy(self) -> bool:
        """``Optimize.ACCURACY`` is among the optimizations (quantkit's or by name)."""
        return any(getattr(o, "name", o) == Optimize.ACCURACY.name for o in self.optimizations)

    def _range_method(self, stats: CalibrationStats | None = None) -> RangeMethod | None:
        """Every tensor's range method unless a recipe says otherwise: the calibration
        options', else AUTO for ``Optimize.ACCURACY`` (unless ``stats`` given to reuse have
        no histograms)."""
        histograms = stats is None or ObserverKind(stats.observer) is ObserverKind.HISTOGRAM
        return self.calibration.range_method or (
            RangeMethod.AUTO if self._accuracy() and histograms else None)



# Modes that rewrite without data (their activations stay float); modes that calibrate, then
# rewrite to integers (one per integer scheme).
_REWRITES: dict[QuantMode, Callable[[Graph, ConversionMode, OpSettings], Graph]] = {
    QuantMode.DYNAMIC_RANGE: quantize_dynamic_range,
    QuantMode.FLOAT16: quantize_float16,
}
_WEIGHT_ONLY = frozenset(_REWRITES)
_CALIBRATED = frozenset(SCHEMES)


def _check_no_leftover_custom_ops(graph: Graph) -> None:
    """TF ops lowered only for a pattern pass to absorb (Erfc into GELU) must be gone."""
    leftover = [op for op in graph.ops if op.type == OpType.CUSTOM]
    if leftover:
        listed = "\n".join(f"  {op.custom_code} (node {op.name!r}): only supported as part of "
                           f"{ONLY_IN_PATTERNS.get(op.custom_code, 'a pattern')}"
                           for op in leftover)
        raise ConversionError(
            Phase.PASSES, f"{len(leftover)} TF op(s) have no TFLite builtin in quantkit:\n"
            f"{listed}\nSet `allow_custom_ops=True` to emit them as custom ops.")
