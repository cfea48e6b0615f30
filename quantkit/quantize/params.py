"""Step 2–3 of planning: which tensors share quantization parameters, and what they are.

A tensor is planned once per integer storage its writer and readers use (a *node*: the
tensor in int8, or in int16 when an int16 op reads it in an int8 model). Nodes that must share
parameters (the ``SHARED`` rule) are grouped with a union-find; a group's range is the union
of its members' calibrated ranges, or the fixed parameters of a ``FIXED`` member, and gets
parameters in its storage (``math.activation_params``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.quantize import math as qm
from quantkit.ops import OPS, OutputRule, QuantRule
from quantkit.quantize.schemes import Scheme, scheme_for
from quantkit.recipe import OpSettings, RangeMethod
from quantkit.types import (Activation, ConversionError, ConversionMode, OpType, Phase,
                            QuantParams, TensorType)

Ranges = Mapping[str, tuple[float, float]]  # tensor name → calibrated (min, max)
Node = tuple[Tensor, qm.Storage]  # a tensor in one integer storage

# LiteRT quantizes a fused activation's bound (RELU6: 6/s) to int32 when it prepares the
# kernel and refuses the model if it overflows: such outputs keep s ≥ bound / 2^30.
_ACTIVATION_BOUNDS = {Activation.RELU6: 6.0, Activation.RELU_N1_TO_1: 1.0}

_FLOAT = np.dtype(np.float32)


class _Groups:
    """Union-find over nodes that must share quantization parameters."""

    def __init__(self):
        self.parent: dict[Node, Node] = {}

    def find(self, t: Node) -> Node:
        self.parent.setdefault(t, t)
        while self.parent[t] != t:
            self.parent[t] = self.parent[self.parent[t]]
            t = self.parent[t]
        return t

    def union(self, a: Node, b: Node) -> None:
        self.parent[self.find(a)] = self.find(b)


@dataclass
class Params:
    tensor_params: dict[Node, QuantParams]  # every node: a tensor in an integer storage
    requantize: dict[tuple[Op, int], QuantParams]  # op input → the params it must be read at


def choose_params(graph: Graph, rules: dict[Op, QuantRule], ranges: Ranges,
                   mode: ConversionMode, schemes: dict[Op, Scheme],
                   own_ranges: Ranges | None = None) -> Params:
    """The parameters of every node the quantized ops (``rules``, each in its scheme) and the
    model's integer inputs and outputs use, and the inputs that must be requantized.

    ``own_ranges``: the calibrated ranges before a loop's variables were tied
    (``loops.tied_loop_ranges``); a tensor read in another storage than its writer's (an int16
    loop's final state requantized for an int8 reader) is a copy of its own and takes its own
    range: the last step's values, not every step's."""
    ranges = capped_ranges(graph, ranges)
    own = ranges if own_ranges is None else capped_ranges(graph, own_ranges)
    writers = {t: op for op in rules for t in op.outputs}
    groups = _Groups()
    fixed: dict[Node, QuantParams] = {}  # group root → fixed params
    const_ranges: dict[Node, list[tuple[float, float]]] = {}  # root → ranges of constants
    requantize: dict[tuple[Op, int], Node] = {}  # op input → the group it joins by requant
    members: list[Node] = []
    # Outputs of ops whose constant operands clamp (MINIMUM, SELECT_V2): their values are the
    # dynamic inputs', so their own calibrated range (a −1e9 attention mask) does not count.
    clamped: set[Node] = set()

    def fixed_of(t: Node) -> QuantParams | None:
        return fixed.get(groups.find(t))

    def join(a: Node, b: Node) -> None:
        fa, fb = fixed_of(a), fixed_of(b)
        groups.union(a, b)
        root = groups.find(a)
        if fa or fb:
            fixed[root] = fa or fb

    for op, rule in rules.items():
        scheme = schemes[op]
        storage = scheme.activations
        acts = [i for i in rule.activation_inputs(len(op.inputs)) if op.inputs[i] is not None
                and (rule.output is not OutputRule.PAIRED  # a loop's int32 counters stay
                     or np.dtype(op.inputs[i].dtype) == _FLOAT)]
        outs = [(t, storage) for t in op.outputs if np.dtype(t.dtype) == _FLOAT]
        node = {i: (op.inputs[i], storage) for i in acts}
        for i in acts:
            if not op.inputs[i].is_const:
                groups.find(node[i])
                members.append(node[i])
        if rule.constants_clamp and any(not op.inputs[i].is_const for i in acts):
            clamped.update(outs)
        for t in outs:
            groups.find(t)
            members.append(t)
            if rule.output is OutputRule.FIXED:
                fixed[groups.find(t)] = scheme.fixed(rule.fixed)
        if rule.output is OutputRule.PAIRED:
            requantize.update({(op, i): (out, storage) for i, out in enumerate(op.outputs)
                               if i in acts and not op.inputs[i].is_const
                               and np.dtype(out.dtype) == _FLOAT})  # unless equal (below)
            continue
        if rule.output is not OutputRule.SHARED or not outs:
            continue
        anchor = outs[0]
        for t in outs[1:]:
            join(anchor, t)
        dynamic = [i for i in acts if not op.inputs[i].is_const]
        fixed_inputs = {fixed_of(node[i]) for i in dynamic} - {None}
        for i in dynamic:
            conflicting = len(dynamic) > 1 and fixed_of(node[i]) is not None and (
                len(fixed_inputs) > 1 or any(fixed_of(node[j]) is None for j in dynamic))
            if conflicting:
                requantize[(op, i)] = anchor
            else:
                join(node[i], anchor)
        for i in acts if not rule.constants_clamp else ():
            if op.inputs[i].is_const:
                data = op.inputs[i].data
                const_ranges.setdefault(anchor, []).append((float(data.min()), float(data.max())))

    default = scheme_for(mode).activations
    for t in _int_boundary_tensors(graph, mode):
        groups.find((t, default))
        members.append((t, default))

    spans: dict[Node, list[float]] = {}
    for t in dict.fromkeys(members):
        if t in clamped:
            spans.setdefault(groups.find(t), [0.0, 0.0])
            continue
        writer = writers.get(t[0])
        copy = writer is not None and schemes[writer].activations != t[1]
        known = _range(t[0], own if copy else ranges)
        if known is None:  # a group needs one member with a range (pooling shares its input's)
            continue
        lo, hi = known
        span = spans.setdefault(groups.find(t), [lo, hi])
        span[0], span[1] = min(span[0], lo), max(span[1], hi)
    _check_ranged(members, groups, spans, fixed)
    for anchor, extra in const_ranges.items():
        span = spans.setdefault(groups.find(anchor), [0.0, 0.0])
        for lo, hi in extra:
            span[0], span[1] = min(span[0], lo), max(span[1], hi)
    floors: dict[Node, float] = {}
    for op in rules:
        bound = _ACTIVATION_BOUNDS.get(getattr(op.options, "fused_activation_function", None))
        for t in op.outputs if bound else ():
            root = groups.find((t, schemes[op].activations))
            floors[root] = max(floors.get(root, 0.0), bound / 2.0 ** 30)
    root_params = {root: fixed.get(root) or qm.activation_params(
        lo, hi, root[1], floors.get(root, 0.0)) for root, (lo, hi) in spans.items()}
    root_params.update({root: params for root, params in fixed.items() if root not in spans})
    tensor_params = {t: root_params[groups.find(t)] for t in groups.parent}
    wanted = {(op, i): root_params[groups.find(a)] for (op, i), a in requantize.items()
              if rules[op].output is not OutputRule.PAIRED  # PAIRED: where params differ
              or tensor_params.get((op.inputs[i], a[1])) != root_params[groups.find(a)]}
    return Params(tensor_params, wanted)


def range_methods(graph: Graph, settings: OpSettings) -> dict[str, RangeMethod]:
    """Each tensor's range method (by name), where its producer's settings give one.

    An op whose output shares its input's parameters (``SHARED``: pooling, reshapes, ...)
    passes its input's method on unless it has its own: the shared group's range is the union
    of its members' ranges, so a method on one member alone would not change it."""
    methods: dict[str, RangeMethod] = {}
    for op in graph.ops:
        chosen = settings[op].range_method if op in settings else None
        rule = OPS[op.type].quant if op.type in OPS else None
        if chosen is None and rule is not None and rule.output is OutputRule.SHARED:
            inputs = [op.inputs[i] for i in rule.activation_inputs(len(op.inputs))]
            chosen = next((methods[t.name] for t in inputs
                           if t is not None and t.name in methods), None)
        for t in op.outputs if chosen else ():
            methods[t.name] = chosen
    return methods


def _int_boundary_tensors(graph: Graph, mode: ConversionMode) -> list[Tensor]:
    """Model inputs and outputs the user wants as integers (int8, uint8 or int16: they need
    params even when the op next to them stays float)."""
    chosen = []
    if mode.input_type != TensorType.FLOAT32:
        chosen += [t for t in graph.inputs if np.dtype(t.dtype) == _FLOAT]
    if mode.output_type != TensorType.FLOAT32:
        chosen += [t for t in graph.outputs if np.dtype(t.dtype) == _FLOAT]
    return chosen


def constant_range(t: Tensor) -> tuple[float, float]:
    """A constant's (min, max), widened to include 0."""
    return float(t.data.min(initial=0.0)), float(t.data.max(initial=0.0))


def capped_ranges(graph: Graph, ranges: Ranges) -> Ranges:
    """``ranges`` with the range of each tensor read only by ``MINIMUM(t, c)`` (``c``
    constant) capped above at ``max(c)``: values above it never reach past that op, which
    shares its input's parameters (equalization's per-channel ReLU6 bounds,
    ``passes.equalize``)."""
    readers = graph.consumers()
    outputs = set(graph.outputs)
    capped = dict(ranges)
    for op in graph.ops:
        if op.type != OpType.MINIMUM or len(op.inputs) != 2:
            continue
        t, c = op.inputs if op.inputs[1].is_const else op.inputs[::-1]
        if t.is_const or not c.is_const or len(readers[t]) != 1 or t in outputs \
                or t.name not in ranges:
            continue
        lo, hi = ranges[t.name]
        top = float(np.max(c.data))
        if lo < top < hi:
            capped[t.name] = (lo, top)
    return capped


def _range(t: Tensor, ranges: Ranges) -> tuple[float, float] | None:
    """A tensor's calibrated or trained range (a constant's own); None when neither is known."""
    if t.is_const:
        return constant_range(t)
    if t.name not in ranges:
        return None
    lo, hi = ranges[t.name]
    return float(lo), float(hi)


def _check_ranged(members: list[Node], groups: _Groups, spans: dict, fixed: dict) -> None:
    """Every group of tensors sharing parameters has a range (or fixed parameters).

    Raises:
      ConversionError: (quantization) naming every tensor with no range from calibration
        statistics or from a quantization-aware trained FakeQuant, nor shared with one that has.
    """
    missing = [node[0].name for node in dict.fromkeys(members)
               if groups.find(node) not in spans and groups.find(node) not in fixed]
    if missing:
        listed = ", ".join(repr(name) for name in dict.fromkeys(missing))
        raise ConversionError(
            Phase.QUANTIZATION, f"{len(set(missing))} tensor(s) have no range: {listed}; "
            "neither calibration statistics (a `representative_dataset`) nor a trained "
            "FakeQuant range (quantization-aware training) cover them")
