"""Plan the integer rewrite of a float graph: which tensors become integers, with which params.

``plan_integer`` reads the graph, the calibrated ranges, the mode and the per-op settings a
``recipe.Recipe`` resolved, and returns a ``Plan``: a list of edits (``quantize.edits``) that
``quantize.edits.apply`` carries out on a copy of the graph. It never changes the graph
itself. Each quantized op has a scheme (``quantize.schemes``: int8, int16x8 or legacy uint8):
the mode's, or the one its settings' precision asks for; "int8" below stands for the
scheme's activation type.

1. Each float op either has a rule (its spec's ``quant`` in ``quantkit.ops``, unless its
   scheme's kernels lack it) and is quantized, or stays float (its settings ask for float, or it has no kernel:
   an error when the op set allows integer ops only, or when a recipe asked for that kernel).
2. (``quantize.params``) A tensor is planned once per integer storage its readers and writer
   use (a *node*: the tensor in int8, or in int16). Nodes that must share parameters (the ``SHARED`` rule) are
   grouped; a group's range is the union of its members' calibrated ranges, or the fixed
   parameters of a ``FIXED`` member. A multi-input op (CONCATENATION, ...) whose input already
   has fixed parameters that differ from the rest gets that input requantized instead of
   dragging the group onto a fixed scale.
3. (``quantize.params``) Every group gets parameters in its storage; weights and biases are
   quantized from them.
4. Where a tensor meets a reader of another type (float, or another integer storage: an int16
   op between int8 ops), a QUANTIZE or DEQUANTIZE is planned (``quantize.rewire``); the
   model's inputs and outputs get the requested types.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor, in_unrolled_loop
from quantkit.quantize.edits import Edit
from quantkit.quantize.params import Ranges, choose_params
from quantkit.quantize.rewire import Means, Rewire, WeightRounder
from quantkit.ops import OPS, FusedKernel, QuantRule
from quantkit.ops.spec import OutputRule
from quantkit.quantize import lstm
from quantkit.quantize.schemes import Scheme, scheme_for
from quantkit.recipe import OpSettings, Precision, Settings
from quantkit.types import ConversionError, ConversionMode, OpType, Phase, QuantMode

_FLOAT = np.dtype(np.float32)


@dataclass
class Plan:
    edits: list[Edit] = field(default_factory=list)
    quantized_ops: list[Op] = field(default_factory=list)
    float_ops: list[Op] = field(default_factory=list)  # ops left float
    schemes: dict[Op, Scheme] = field(default_factory=dict)  # each quantized op's scheme


def is_float_op(op: Op) -> bool:
    return any(t is not None and np.dtype(t.dtype) == _FLOAT for t in [*op.inputs, *op.outputs])


def quantizable(op: Op, scheme: Scheme) -> QuantRule | None:
    """The op's rule, or None when it must stay float (no kernel in this scheme, or dynamic
    weights)."""
    spec = OPS.get(op.type)
    rule = spec.rule_for(scheme.mode) if spec is not None else None
    if rule is None:
        return None
    if spec.fused is FusedKernel.LSTM_8X8_16 and lstm.unsupported(op) is not None:
        return None
    if spec.weights is not None:
        w = op.inputs[spec.weights.weights_input]
        bias = _input(op, spec.weights.bias_input)
        if not w.is_const or (bias is not None and not bias.is_const):
            return None
    return rule


def op_scheme(mode: ConversionMode, precision: Precision | None, op: Op) -> Scheme:
    """The scheme an op computes in: the mode's, or the one ``precision`` asks for."""
    if precision is None:
        return scheme_for(mode)
    if mode.quant is QuantMode.LEGACY_UINT8:
        if precision is Precision.INT16:
            raise ConversionError(Phase.QUANTIZATION, f"{op.type.name} op {op.name!r}: the "
                                  "recipe asks for int16, but legacy uint8 models are uint8 "
                                  "throughout")
        return scheme_for(mode)
    quant = QuantMode.INT16X8 if precision is Precision.INT16 else QuantMode.FULL_INTEGER
    return scheme_for(dataclasses.replace(mode, quant=quant))


def _input(op: Op, index: int) -> Tensor | None:
    return op.inputs[index] if index < len(op.inputs) else None


def plan_integer(graph: Graph, ranges: Ranges, mode: ConversionMode,
                 means: Means | None = None, settings: OpSettings | None = None,
                 rounding: WeightRounder | None = None,
                 own_ranges: Ranges | None = None) -> Plan:
    """The edits that make ``graph`` integer in the mode's scheme (int8, int16x8 or legacy
    uint8), each op in the precision its ``settings`` ask for (see the module docstring).

    ``means``: per-channel means of weighted ops' inputs; with ``mode.bias_correction`` their
    biases absorb the weights' mean rounding error (``math.weight_error_bias``).
    ``rounding``: integer weights other than nearest rounding's (``quantize.adaround``).
    ``own_ranges``: the ranges before loop variables were tied (``params.choose_params``)."""
    plan = _choose_ops(graph, mode, settings or {})
    rules = {op: quantizable(op, plan.schemes[op]) for op in plan.quantized_ops}
    params = choose_params(graph, rules, ranges, mode, plan.schemes, own_ranges)
    plan.edits = Rewire(graph, rules, plan.schemes, params, mode, plan.float_ops, means or {},
                        settings or {}, rounding, ranges).run()
    return plan


def _choose_ops(graph: Graph, mode: ConversionMode, settings: OpSettings) -> Plan:
    """Which ops are quantized, in which scheme, and which stay float."""
    plan, kept_float, no_kernel = Plan(), [], []
    for op in graph.ops:
        if not is_float_op(op):
            continue
        precision = settings[op].precision if op in settings else None
        if precision is Precision.FLOAT:
            plan.float_ops.append(op)
            kept_float.append(op)
            continue
        scheme = op_scheme(mode, precision, op)
        if quantizable(op, scheme) is not None:
            plan.quantized_ops.append(op)
            plan.schemes[op] = scheme
            continue
        if scheme != scheme_for(mode):
            raise ConversionError(
                Phase.QUANTIZATION, f"{op.type.name} op {op.name!r}: the recipe asks for "
                f"{precision.value}, but LiteRT has no {scheme.activations.dtype.name} kernel "
                "for it (or its weights are not constant)")
        plan.float_ops.append(op)
        no_kernel.append(op)
    if mode.integer_only and no_kernel:
        listed = ", ".join(f"{op.type.name} ({op.name!r})" for op in no_kernel)
        raise ConversionError(
            Phase.QUANTIZATION, f"{len(no_kernel)} op(s) have no "
            f"{scheme_for(mode).activations.dtype.name} kernel: {listed}. The op set allows "
            "integer ops only; add OpsSet.TFLITE_BUILTINS to `target_spec.supported_ops` to "
            "keep them in float.")
    if mode.integer_only and kept_float:
        listed = ", ".join(f"{op.type.name} ({op.name!r})" for op in kept_float)
        raise ConversionError(
            Phase.QUANTIZATION, f"the recipe keeps {len(kept_float)} op(s) float: {listed}; "
            "the op set allows integer ops only: add OpsSet.TFLITE_BUILTINS to "
            "`target_spec.supported_ops`")
    return plan


def recurrent_int16(graphs: list[Graph], settings: OpSettings,
                    mode: ConversionMode) -> OpSettings:
    """In full-integer int8, the ops of an unrolled RNN cell and WHILE ops (whose condition
    and body ``quantize.loops`` quantizes in the op's precision) compute in int16x8 (int8
    weights, int16 activations) unless the recipe set their precision: the state is re-quantized at
    every step, and int8 steps lose 4-7 dB at the output of trained GRU/SimpleRNN/LSTM cells
    (``benchmarks.rnn_conversion``); LiteRT's integer LSTM kernel keeps its gates and cell
    state in int16 for the same reason. Ops without an int16 kernel stay int8; the ops that
    only move values (``OutputRule.SHARED``) between the cell's ops and int16 neighbours
    follow them, so that the sequence is converted once, not at every step."""
    if mode.quant is not QuantMode.FULL_INTEGER:
        return settings
    int16 = op_scheme(mode, Precision.INT16, None)

    def free(op: Op) -> bool:  # the recipe left it to the mode, and it has an int16 kernel
        return (settings[op].precision is None and is_float_op(op)
                and quantizable(op, int16) is not None)

    chosen = {op for op in settings if (in_unrolled_loop(op) or op.type == OpType.WHILE)
              and free(op)}
    if not chosen:  # no loop: nothing to propagate (the common case, kept cheap)
        return settings
    for graph in graphs:
        producers, consumers = graph.producers(), graph.consumers()
        movers = [op for op in graph.ops if op not in chosen and free(op)
                  and OPS[op.type].quant.output is OutputRule.SHARED]
        changed = True
        while changed:
            changed = False
            for op in movers:
                readers = [r for t in op.outputs for r in consumers.get(t, [])]
                writers = [producers.get(t) for t in op.inputs if t is not None
                           and not t.is_const]
                if op not in chosen and ((readers and all(r in chosen for r in readers))
                                         or (writers and all(w in chosen for w in writers))):
                    chosen.add(op)
                    changed = True
    return {op: Settings(precision=Precision.INT16).over(s) if op in chosen else s
            for op, s in settings.items()}
