"""Plan the integer rewrite of a float graph: which tensors become integers, with which params.

``plan_integer`` reads the graph, the calibrated ranges and the mode, and returns a
``Plan``: a list of edits (``quantize.edits``) that ``quantize.edits.apply`` carries out. It
never changes the graph itself. The mode's scheme (``quantize.schemes``: int8, int16x8 or
legacy uint8) says how activations, weights and biases are stored; "int8" below stands for
the scheme's activation type.

1. Each float op either has a rule (its spec's ``quant`` in ``quantkit.ops``, unless the
   scheme's kernels lack it) and is quantized, or stays float (an error when the op set
   allows integer ops only).
2. Tensors that must share parameters (the ``SHARED`` rule) are grouped; a group's range is
   the union of its members' calibrated ranges, or the fixed parameters of a ``FIXED`` member.
   A multi-input op (CONCATENATION, ...) whose input already has fixed parameters that differ
   from the rest gets that input requantized instead of dragging the group onto a fixed scale.
3. Every group gets asymmetric int8 parameters; weights and biases are quantized from them.
4. Where a float tensor meets an int8 reader, or the reverse, a QUANTIZE or DEQUANTIZE
   is planned; the model's inputs and outputs get the requested types.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.quantize import math as qm
from quantkit.quantize.edits import (Convert, Edit, Retype, SetGraphOutput, SetInput,
                                     SetOptions)
from quantkit.ops import OPS, BiasCorrection, OutputRule, QuantRule
from quantkit.quantize.schemes import Scheme, scheme_for, weight_granularity
from quantkit.types import (NUMPY_TENSOR_TYPES, Activation, ConversionError, ConversionMode,
                            Granularity, OpType, Phase, QuantParams)
from quantkit.types import TensorType

Ranges = Mapping[str, tuple[float, float]]  # tensor name → calibrated (min, max)
Means = Mapping[str, np.ndarray]  # tensor name → per-channel mean (for bias correction)

# LiteRT quantizes a fused activation's bound (RELU6: 6/s) to int32 when it prepares the
# kernel and refuses the model if it overflows: such outputs keep s ≥ bound / 2^30.
_ACTIVATION_BOUNDS = {Activation.RELU6: 6.0, Activation.RELU_N1_TO_1: 1.0}

_FLOAT = np.dtype(np.float32)
_IO_DTYPES = {TensorType.FLOAT32: _FLOAT, TensorType.INT8: np.dtype(np.int8),
              TensorType.UINT8: np.dtype(np.uint8), TensorType.INT16: np.dtype(np.int16)}


@dataclass
class Plan:
    edits: list[Edit] = field(default_factory=list)
    quantized_ops: list[Op] = field(default_factory=list)
    float_ops: list[Op] = field(default_factory=list)  # ops left float (TFLITE_BUILTINS only)


def is_float_op(op: Op) -> bool:
    return any(t is not None and np.dtype(t.dtype) == _FLOAT for t in [*op.inputs, *op.outputs])


def quantizable(op: Op, scheme: Scheme) -> QuantRule | None:
    """The op's rule, or None when it must stay float (no rule in this scheme, or dynamic
    weights)."""
    spec = OPS.get(op.type)
    rule = spec.rule_for(scheme.mode) if spec is not None else None
    if rule is None:
        return None
    if spec.weights is not None:
        w = op.inputs[spec.weights.weights_input]
        bias = _input(op, spec.weights.bias_input)
        if not w.is_const or (bias is not None and not bias.is_const):
            return None
    return rule


def _input(op: Op, index: int) -> Tensor | None:
    return op.inputs[index] if index < len(op.inputs) else None


class _Groups:
    """Union-find over tensors that must share quantization parameters."""

    def __init__(self):
        self.parent: dict[Tensor, Tensor] = {}

    def find(self, t: Tensor) -> Tensor:
        self.parent.setdefault(t, t)
        while self.parent[t] is not t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def union(self, a: Tensor, b: Tensor) -> None:
        self.parent[self.find(a)] = self.find(b)


def plan_integer(graph: Graph, ranges: Ranges, mode: ConversionMode,
                      means: Means | None = None) -> Plan:
    """The edits that make ``graph`` integer in the mode's scheme (int8, int16x8 or legacy
    uint8; see the module docstring for the steps).

    ``means``: per-channel means of weighted ops' inputs; with ``mode.bias_correction`` their
    biases absorb the weights' mean rounding error (``math.weight_error_bias``)."""
    plan = Plan()
    scheme = scheme_for(mode)
    rules: dict[Op, QuantRule] = {}
    for op in graph.ops:
        if not is_float_op(op):
            continue
        rule = quantizable(op, scheme)
        if rule is None:
            plan.float_ops.append(op)
        else:
            rules[op] = rule
            plan.quantized_ops.append(op)
    if mode.integer_only and plan.float_ops:
        listed = ", ".join(f"{op.type.name} ({op.name!r})" for op in plan.float_ops)
        raise ConversionError(
            Phase.QUANTIZATION, f"{len(plan.float_ops)} op(s) have no "
            f"{scheme.activations.dtype.name} kernel: {listed}. The op set allows integer ops "
            "only; add OpsSet.TFLITE_BUILTINS to `target_spec.supported_ops` to keep them in "
            "float.")
    params = _choose_params(graph, rules, ranges, mode, scheme)
    _Rewire(graph, rules, params.tensor_params, mode, scheme, plan, means or {}).run(
        params.requantize)
    return plan


@dataclass
class _Params:
    tensor_params: dict[Tensor, QuantParams]  # every tensor that is int8 somewhere
    requantize: dict[tuple[Op, int], QuantParams]  # op input → the params it must be read at


def _choose_params(graph: Graph, rules: dict[Op, QuantRule], ranges: Ranges,
                   mode: ConversionMode, scheme: Scheme) -> _Params:
    groups = _Groups()
    fixed: dict[Tensor, QuantParams] = {}  # group root → fixed params
    const_ranges: dict[Tensor, list[tuple[float, float]]] = {}  # root → ranges of constants
    requantize: dict[tuple[Op, int], Tensor] = {}  # op input → the group it joins by requant
    members: list[Tensor] = []

    def fixed_of(t: Tensor) -> QuantParams | None:
        return fixed.get(groups.find(t))

    def join(a: Tensor, b: Tensor) -> None:
        fa, fb = fixed_of(a), fixed_of(b)
        groups.union(a, b)
        root = groups.find(a)
        if fa or fb:
            fixed[root] = fa or fb

    for op, rule in rules.items():
        acts = [i for i in rule.activation_inputs(len(op.inputs)) if op.inputs[i] is not None]
        outs = [t for t in op.outputs if np.dtype(t.dtype) == _FLOAT]
        for i in acts:
            if not op.inputs[i].is_const:
                groups.find(op.inputs[i])
                members.append(op.inputs[i])
        for t in outs:
            groups.find(t)
            members.append(t)
            if rule.output is OutputRule.FIXED:
                fixed[groups.find(t)] = scheme.fixed(rule.fixed)
        if rule.output is not OutputRule.SHARED or not outs:
            continue
        anchor = outs[0]
        for t in outs[1:]:
            join(anchor, t)
        dynamic = [i for i in acts if not op.inputs[i].is_const]
        fixed_inputs = {fixed_of(op.inputs[i]) for i in dynamic} - {None}
        for i in dynamic:
            t = op.inputs[i]
            conflicting = len(dynamic) > 1 and fixed_of(t) is not None and (
                len(fixed_inputs) > 1 or any(fixed_of(op.inputs[j]) is None for j in dynamic))
            if conflicting:
                requantize[(op, i)] = anchor
            else:
                join(t, anchor)
        for i in acts:
            if op.inputs[i].is_const:
                data = op.inputs[i].data
                const_ranges.setdefault(anchor, []).append((float(data.min()), float(data.max())))

    for t in _int_boundary_tensors(graph, mode):
        groups.find(t)
        members.append(t)

    spans: dict[Tensor, list[float]] = {}
    for t in dict.fromkeys(members):
        lo, hi = _range(t, ranges)
        span = spans.setdefault(groups.find(t), [lo, hi])
        span[0], span[1] = min(span[0], lo), max(span[1], hi)
    for anchor, extra in const_ranges.items():
        span = spans.setdefault(groups.find(anchor), [0.0, 0.0])
        for lo, hi in extra:
            span[0], span[1] = min(span[0], lo), max(span[1], hi)
    floors: dict[Tensor, float] = {}
    for op in rules:
        bound = _ACTIVATION_BOUNDS.get(getattr(op.options, "fused_activation_function", None))
        for t in op.outputs if bound else ():
            root = groups.find(t)
            floors[root] = max(floors.get(root, 0.0), bound / 2.0 ** 30)
    root_params = {root: fixed.get(root) or qm.activation_params(
        lo, hi, scheme.activations, floors.get(root, 0.0)) for root, (lo, hi) in spans.items()}
    tensor_params = {t: root_params[groups.find(t)] for t in groups.parent}
    return _Params(tensor_params,
                   {edge: root_params[groups.find(a)] for edge, a in requantize.items()})


def _int_boundary_tensors(graph: Graph, mode: ConversionMode) -> list[Tensor]:
    """Model inputs and outputs the user wants as integers (int8, uint8 or int16: they need
    params even when the op next to them stays float)."""
    chosen = []
    if mode.input_type != TensorType.FLOAT32:
        chosen += [t for t in graph.inputs if np.dtype(t.dtype) == _FLOAT]
    if mode.output_type != TensorType.FLOAT32:
        chosen += [t for t in graph.outputs if np.dtype(t.dtype) == _FLOAT]
    return chosen


def _range(t: Tensor, ranges: Ranges) -> tuple[float, float]:
    if t.is_const:
        return float(t.data.min(initial=0.0)), float(t.data.max(initial=0.0))
    if t.name not in ranges:
        raise ConversionError(Phase.QUANTIZATION, f"tensor {t.name!r} has no calibration "
                              "statistics (was it computed by the calibration run?)")
    lo, hi = ranges[t.name]
    return float(lo), float(hi)


class _Rewire:
    """Plans the integer versions of tensors (in the scheme's activation type: int8, int16 or
    uint8), the converted copies at float/integer borders, the quantized constants, and the
    model's typed inputs and outputs."""

    def __init__(self, graph: Graph, rules: dict[Op, QuantRule],
                 params: dict[Tensor, QuantParams], mode: ConversionMode, scheme: Scheme,
                 plan: Plan, means: Means):
        self.graph, self.rules, self.params, self.mode, self.plan = graph, rules, params, mode, plan
        self.scheme, self.int_dtype = scheme, scheme.activations.dtype
        self.means = means if mode.bias_correction else {}
        producers = graph.producers()
        io_in = _IO_DTYPES[mode.input_type]
        int_inputs = set(graph.inputs) if io_in == self.int_dtype else set()
        # Tensors that become integers where they are: written by a quantized op, or a model
        # input of the scheme's own type.
        self.in_place = {t for t in params
                         if producers.get(t) in rules or (t in int_inputs and t not in producers)}
        # Model inputs of another integer type (uint8 into an int8 model): z shifted by 128.
        shifted = io_in not in (_FLOAT, self.int_dtype)
        self.uint8_inputs = set(graph.inputs) if shifted else set()
        self._int8: dict[Tensor, Tensor] = {}
        self._float: dict[Tensor, Tensor] = {}
        self._consts: dict[tuple, Tensor] = {}  # (constant, params, how) → quantized copy

    def run(self, requantize: dict[tuple[Op, int], QuantParams]) -> None:
        edits = self.plan.edits
        for t in self.params:
            if t in self.in_place:
                edits.append(Retype(t, self.int_dtype, self.params[t]))
            elif t in self.uint8_inputs:
                edits.append(Retype(t, np.dtype(np.uint8), qm.requantized(self.params[t], 128)))
        for op, rule in self.rules.items():
            self._quantized_op(op, rule, requantize)
        for op in self.plan.float_ops:
            for i, t in enumerate(op.inputs):
                if t is not None and (t in self.in_place or t in self.uint8_inputs):
                    edits.append(SetInput(op, i, self.float_version(t)))
        for position, t in enumerate(self.graph.outputs):
            self._model_output(position, t)

    # --- versions of a value -------------------------------------------------------------
    def int8_version(self, t: Tensor) -> Tensor:
        """``t`` in the scheme's integer type with its planned params (``t`` itself, or a
        QUANTIZE of it)."""
        if t in self.in_place:
            return t
        if t not in self._int8:
            self._int8[t] = self._convert(OpType.QUANTIZE, t, self.int_dtype, self.params[t],
                                          self.int_dtype.name)
        return self._int8[t]

    def float_version(self, t: Tensor) -> Tensor:
        """``t`` as float32 (``t`` itself, or a DEQUANTIZE of its integer version)."""
        if t not in self.in_place and t not in self.uint8_inputs:
            return t
        if t not in self._float:
            self._float[t] = self._convert(OpType.DEQUANTIZE, t, _FLOAT, None, "float")
        return self._float[t]

    def _convert(self, op_type: OpType, source: Tensor, dtype: np.dtype,
                 params: QuantParams | None, suffix: str) -> Tensor:
        out = Tensor(f"{source.name}/{suffix}", dtype, source.shape, quant=params)
        op = Op(op_type, [source], [out], name=f"{source.name}/{suffix}")
        self.plan.edits.append(Convert(op))
        return out

    # --- ops -----------------------------------------------------------------------------
    def _quantized_op(self, op: Op, rule: QuantRule,
                      requantize: dict[tuple[Op, int], QuantParams]) -> None:
        edits = self.plan.edits
        shared = self.params.get(op.outputs[0]) if rule.output is OutputRule.SHARED else None
        for i in rule.activation_inputs(len(op.inputs)):
            t = op.inputs[i]
            if t is None or np.dtype(t.dtype) != _FLOAT:
                continue
            if t.is_const:
                lo, hi = _range(t, {})
                params = shared or qm.activation_params(lo, hi, self.scheme.activations)
                edits.append(SetInput(op, i, self._constant(t, params, qm.quantize_activation,
                                                            self.scheme.activations)))
            elif (op, i) in requantize:
                source = self.int8_version(t)
                edits.append(SetInput(op, i, self._convert(
                    OpType.QUANTIZE, source, self.int_dtype, requantize[(op, i)],
                    "requantized")))
            elif self.int8_version(t) is not t:
                edits.append(SetInput(op, i, self.int8_version(t)))
        spec = OPS[op.type]
        if spec.weights is not None:
            self._weights(op, rule)
        if self.scheme.activations == qm.INT16 and spec.int16.general_scaling:
            # the schema's default (power-of-two scales) would misread calibrated int16 scales
            edits.append(SetOptions(op, dataclasses.replace(op.options, pot_scale_int16=False)))

    def _weights(self, op: Op, rule: QuantRule) -> None:
        spec = OPS[op.type]
        layout, storage = spec.weights, self.scheme.weights
        w = op.inputs[layout.weights_input]
        per_channel = (weight_granularity(self.mode, op.type) is Granularity.PER_CHANNEL
                       and self.scheme.per_channel)
        w_params = qm.weight_params(w.data, layout.output_axis if per_channel else None, storage)
        w_quantized = self._constant(w, w_params, qm.quantize_weights, storage)
        self.plan.edits.append(SetInput(op, layout.weights_input, w_quantized))
        bias = _input(op, layout.bias_input)
        if bias is None:
            return
        activation = op.inputs[rule.activation_inputs(len(op.inputs))[0]]
        b_params = qm.bias_params(self.params[activation], w_params)
        correction = None
        if activation.name in self.means and spec.bias_correction is not BiasCorrection.NONE:
            correction = qm.weight_error_bias(spec.bias_correction, w.data, w_params,
                                              self.means[activation.name], storage,
                                              quantized=w_quantized.data)
        bias_storage = self.scheme.bias
        if self.scheme.activations == qm.INT16 and spec.int16.bias is not None:
            bias_storage = qm.BIAS_STORAGE[spec.int16.bias]  # e.g. int16 depthwise: int64 only
        if correction is None:
            quantized = self._constant(bias, b_params, qm.quantize_bias, bias_storage)
        else:
            data = qm.quantize_bias(bias.data - correction, b_params, bias_storage)
            quantized = Tensor(bias.name, data.dtype, bias.shape, data, b_params)
        self.plan.edits.append(SetInput(op, layout.bias_input, quantized))
        if self.scheme.activations == qm.INT16 and spec.int16.bias_type_option:
            # as TF: int16 kernels read the bias type from the options
            bias_type = NUMPY_TENSOR_TYPES[bias_storage.dtype]
            self.plan.edits.append(SetOptions(op, dataclasses.replace(
                op.options, quantized_bias_type=bias_type)))

    def _constant(self, t: Tensor, params: QuantParams, quantize, storage: qm.Storage) -> Tensor:
        key = (id(t), params, quantize, storage)
        if key not in self._consts:
            data = quantize(t.data, params, storage)
            self._consts[key] = Tensor(t.name, data.dtype, t.shape, data, params)
        return self._consts[key]

    # --- the model's outputs -------------------------------------------------------------
    def _model_output(self, position: int, t: Tensor) -> None:
        if np.dtype(t.dtype) != _FLOAT:
            return
        wanted = self.mode.output_type
        if wanted == TensorType.FLOAT32:
            if t in self.in_place:
                out = self.float_version(t)
                self.plan.edits.append(SetGraphOutput(position, out, f"{t.name}/int8"))
            return
        int8 = self.int8_version(t)
        if _IO_DTYPES[wanted] == self.int_dtype:
            if int8 is not t:
                self.plan.edits.append(SetGraphOutput(position, int8, f"{t.name}/float"))
            return
        out = self._convert(OpType.QUANTIZE, int8, _IO_DTYPES[wanted],
                            qm.requantized(self.params[t], 128), "uint8")
        inner = "int8" if t in self.in_place else "float"
        self.plan.edits.append(SetGraphOutput(position, out, f"{t.name}/{inner}"))
