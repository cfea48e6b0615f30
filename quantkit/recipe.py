"""Per-op quantization overrides: a typed recipe, resolved against a graph into settings per op.

A ``Recipe`` is an ordered list of rules; each rule selects ops (``Select``: Keras layer name,
tensor name, regex, op type) and sets some of their ``Settings`` (precision, weight
granularity, range method). The converter's mode is the default rule; later rules override
earlier ones field by field, so ``Recipe`` reads top to bottom like a CSS sheet::

    recipe = Recipe((
        Rule(Select(op_type="SOFTMAX"), Settings(precision=Precision.INT16)),
        Rule(Select(layer="head"), Settings(precision=Precision.FLOAT)),
    ))

TF's selective quantization (``QuantizationDebugOptions(denylisted_nodes=...,
denylisted_ops=...)``) is ``Recipe.denylist(nodes, ops)``: those ops stay float.

A rule that selects no op is an error (a typo would otherwise silently quantize everything).
Whether a precision is possible (an int16 kernel in LiteRT, float ops in the op set) is the
planner's to check: it knows the kernels (``quantize.plan``).
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass, fields, replace
from typing import Iterable, Mapping

from quantkit.ir.graph import Graph, Op
from quantkit.types import ConversionError, Granularity, OpType, Phase


class Precision(enum.Enum):
    """How an op computes: in float32, or on integer activations of 8 or 16 bits."""

    FLOAT = "float"  # float32 kernel: a DEQUANTIZE before, a QUANTIZE after
    INT8 = "int8"  # 8-bit activations (uint8 in legacy uint8 models), 8-bit weights
    INT16 = "int16"  # int16 activations, int8 weights, int64 biases (LiteRT's 16x8 kernels)


class RangeMethod(enum.Enum):
    """How a tensor's calibrated statistics become its quantization range."""

    MIN_MAX = "min_max"  # every value seen
    PERCENTILE = "percentile"  # the calibration's `percentile` share (needs histograms)
    MSE = "mse"  # least expected squared error E[(x − Q(x))²] (needs histograms)
    ENTROPY = "entropy"  # TensorRT's least KL divergence (needs histograms)
    AUTO = "auto"  # of the above, the one with the least error at the model's outputs


class WeightRounding(enum.Enum):
    """How weights become integers."""

    NEAREST = "nearest"  # round(w / s), as TF
    ADAROUND = "adaround"  # up or down by the layer's output error (quantize.adaround)


@dataclass(frozen=True)
class Select:
    """Which ops a rule applies to: every field given must match (``Select()`` is every op).

    ``layer``: a Keras layer name, a component of the op's TF node name (Keras suffixes the
    scope of a layer traced again, ``head`` → ``head_1``; that suffix is allowed).
    ``tensor``: the exact name of one of the op's outputs (TF's ``denylisted_nodes``).
    ``regex``: searched in the op's name and its outputs' names.
    ``op_type``: an ``OpType`` or its name, e.g. ``"MEAN"`` (TF's ``denylisted_ops``).
    """

    layer: str | None = None
    tensor: str | None = None
    regex: str | None = None
    op_type: OpType | str | None = None

    def __post_init__(self):
        if isinstance(self.op_type, str):
            if self.op_type not in OpType.__members__:
                raise ConversionError(Phase.OPTIONS, f"recipe: op_type={self.op_type!r} is "
                                      "not a TFLite builtin operator name")
            object.__setattr__(self, "op_type", OpType[self.op_type])
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as e:
                raise ConversionError(Phase.OPTIONS,
                                      f"recipe: regex={self.regex!r}: {e}") from None

    def matches(self, op: Op) -> bool:
        outputs = [t.name for t in op.outputs]
        return ((self.op_type is None or op.type == self.op_type)
                and (self.tensor is None or self.tensor in outputs)
                and (self.layer is None or _in_layer(op.name, self.layer))
                and (self.regex is None
                     or any(re.search(self.regex, n) for n in [op.name, *outputs])))


def _in_layer(node_name: str, layer: str) -> bool:
    suffixed = re.compile(re.escape(layer) + r"(_\d+)?")
    return any(suffixed.fullmatch(part) for part in node_name.split("/"))


@dataclass(frozen=True)
class Settings:
    """What a rule sets; None leaves the value of the rules before it (or of the mode)."""

    precision: Precision | None = None
    weight_granularity: Granularity | None = None
    range_method: RangeMethod | None = None
    weight_rounding: WeightRounding | None = None

    def over(self, base: Settings) -> Settings:
        """``base`` with this rule's fields laid over it."""
        given = {f.name: getattr(self, f.name) for f in fields(self)
                 if getattr(self, f.name) is not None}
        return replace(base, **given)


@dataclass(frozen=True)
class Rule:
    select: Select
    settings: Settings


@dataclass(frozen=True)
class Recipe:
    """Rules applied in order over the mode's defaults (see the module docstring)."""

    rules: tuple[Rule, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "rules", tuple(self.rules))
        for rule in self.rules:
            if not isinstance(rule, Rule):
                raise ConversionError(Phase.OPTIONS, f"recipe: {rule!r} is not a Rule")

    @classmethod
    def denylist(cls, nodes: Iterable[str] = (), ops: Iterable[OpType | str] = ()) -> Recipe:
        """TF's ``denylisted_nodes`` (output tensor names) and ``denylisted_ops`` (op type
        names): those ops stay float."""
        keep_float = Settings(precision=Precision.FLOAT)
        return cls(tuple(Rule(Select(tensor=n), keep_float) for n in nodes)
                   + tuple(Rule(Select(op_type=o), keep_float) for o in ops))

    def to_json(self) -> str:
        """The rules as JSON (enums by value); ``Recipe.from_json`` reads it back."""
        def plain(obj) -> dict:
            values = {f.name: getattr(obj, f.name) for f in fields(obj)}
            return {k: (v.name if isinstance(v, OpType) else getattr(v, "value", v))
                    for k, v in values.items() if v is not None}
        return json.dumps([{"select": plain(r.select), "settings": plain(r.settings)}
                           for r in self.rules], indent=1)

    @classmethod
    def from_json(cls, text: str) -> Recipe:
        try:
            rules = json.loads(text)
            kinds = {"precision": Precision, "weight_granularity": Granularity,
                     "range_method": RangeMethod, "weight_rounding": WeightRounding}
            return cls(tuple(Rule(Select(**r["select"]), Settings(
                **{k: kinds[k](v) for k, v in r["settings"].items()})) for r in rules))
        except (ValueError, TypeError, KeyError) as e:
            if isinstance(e, ConversionError):
                raise
            raise ConversionError(Phase.OPTIONS, f"not a saved recipe: {e}") from None

    def save(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.to_json())

    @classmethod
    def load(cls, path: str) -> Recipe:
        with open(path, encoding="utf-8") as f:
            return cls.from_json(f.read())

    def resolve(self, graphs: Iterable[Graph], default: Settings) -> dict[Op, Settings]:
        """The settings of every op of ``graphs``: ``default`` with each matching rule laid
        over it, in order. A rule that matches no op in any graph is an error."""
        ops = [op for graph in graphs for op in graph.ops]
        resolved = {op: default for op in ops}
        for n, rule in enumerate(self.rules):
            chosen = [op for op in ops if rule.select.matches(op)]
            if not chosen:
                raise ConversionError(Phase.OPTIONS, f"recipe rule {n} ({rule.select}) "
                                      "selects no op of the model")
            for op in chosen:
                resolved[op] = rule.settings.over(resolved[op])
        return resolved


OpSettings = Mapping[Op, Settings]  # what the planner reads: settings per op, all fields set
