"""Conditions for the operator-version rows of the op table (``quantkit.ops.table``): small
frozen dataclasses, each a predicate on an op.

They mirror what TF's ``GetBuiltinOperatorVersion`` reads from an ``OpSignature``: element
types of input 0, input 1 and output 0, options, input count, ranks, per-channel quantization.
Shapes are read as the writer stores them (dynamic dims as 1), as TF reads ``Tensor.shape``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from quantkit.ir.graph import Op, Tensor

Condition = Callable[[Op], bool]

Dtypes = str | tuple[str, ...] | None


def _tensor(op: Op, role: str) -> Tensor | None:
    """The tensor named by ``role``: ``"in<i>"`` or ``"out<i>"``; None when absent."""
    tensors = op.inputs if role.startswith("in") else op.outputs
    index = int(role[2:] if role.startswith("in") else role[3:])
    return tensors[index] if index < len(tensors) else None


def _dims(t: Tensor) -> tuple[int, ...]:
    """Dims as the writer stores them in ``shape`` (dynamic dims as 1, unknown rank as ())."""
    return tuple(1 if d is None else d for d in (t.shape or ()))


@dataclass(frozen=True)
class Types:
    """Holds when each named tensor has one of the given element types (None: any type)."""

    in0: Dtypes = None
    in1: Dtypes = None
    out0: Dtypes = None
    in2: Dtypes = None  # UNIDIRECTIONAL_SEQUENCE_LSTM: its input-to-forget weights

    def __call__(self, op: Op) -> bool:
        for role in ("in0", "in1", "in2", "out0"):
            want = getattr(self, role)
            if want is None:
                continue
            t = _tensor(op, role)
            wanted = (want,) if isinstance(want, str) else want
            if t is None or np.dtype(t.dtype).name not in wanted:
                return False
        return True


@dataclass(frozen=True)
class NonDefault:
    """Holds when option ``name`` differs from its schema default (missing fields are default)."""

    name: str
    default: Any

    def __call__(self, op: Op) -> bool:
        return getattr(op.options, self.name, self.default) != self.default


@dataclass(frozen=True)
class InputCount:
    """Holds when the op has exactly ``n`` input slots (absent optional inputs count)."""

    n: int

    def __call__(self, op: Op) -> bool:
        return len(op.inputs) == self.n


@dataclass(frozen=True)
class HasInput:
    """Holds when optional input ``index`` is present."""

    index: int

    def __call__(self, op: Op) -> bool:
        return self.index < len(op.inputs) and op.inputs[self.index] is not None


@dataclass(frozen=True)
class RankAbove:
    """Holds when the rank of input 0 is above ``limit``."""

    limit: int

    def __call__(self, op: Op) -> bool:
        t = _tensor(op, "in0")
        return t is not None and len(_dims(t)) > self.limit


@dataclass(frozen=True)
class BroadcastAbove4D:
    """Holds when inputs 0 and 1 differ in shape and one of them has rank above 4."""

    def __call__(self, op: Op) -> bool:
        a, b = _tensor(op, "in0"), _tensor(op, "in1")
        if a is None or b is None:
            return False
        return _dims(a) != _dims(b) and max(len(_dims(a)), len(_dims(b))) > 4


@dataclass(frozen=True)
class Quantized:
    """Holds when the named tensor carries quantization parameters."""

    role: str

    def __call__(self, op: Op) -> bool:
        t = _tensor(op, self.role)
        return t is not None and t.quant is not None


@dataclass(frozen=True)
class PerChannel:
    """Holds when the tensor has one scale per slice along ``dim``.

    ``dim=None`` means the tensor's quantization axis, and then (as TF) more than one scale is
    required; with a fixed ``dim`` a single-filter tensor with one scale also counts.
    """

    role: str
    dim: int | None = None

    def __call__(self, op: Op) -> bool:
        t = _tensor(op, self.role)
        if t is None or t.quant is None or not t.quant.scales:
            return False
        n = len(t.quant.scales)
        dim = (t.quant.axis or 0) if self.dim is None else self.dim
        dims = _dims(t)
        if dim >= len(dims) or (self.dim is None and n <= 1):
            return False
        return dims[dim] == n


@dataclass(frozen=True)
class MulRescaleAtLeastOne:
    """Holds when ``s_in0 · s_in1 / s_out ≥ 1`` (MUL's rescale needs the version-3 kernel)."""

    def __call__(self, op: Op) -> bool:
        scales = [_tensor(op, r) for r in ("in0", "in1", "out0")]
        if any(t is None or t.quant is None or not t.quant.scales for t in scales):
            return False
        s1, s2, so = (t.quant.scales[0] for t in scales)
        return s1 != 0 and s2 != 0 and so != 0 and s1 * s2 / so >= 1.0


@dataclass(frozen=True)
class GroupedConv:
    """Holds when the input has more channels than one filter sees (a grouped CONV_2D)."""

    def __call__(self, op: Op) -> bool:
        x, w = _tensor(op, "in0"), _tensor(op, "in1")
        if x is None or w is None or len(_dims(x)) != 4 or len(_dims(w)) != 4:
            return False
        return _dims(x)[3] != _dims(w)[3]


@dataclass(frozen=True)
class All:
    """Holds when every condition holds (``All()`` always holds)."""

    conditions: tuple[Condition, ...] = ()

    def __call__(self, op: Op) -> bool:
        return all(c(op) for c in self.conditions)


@dataclass(frozen=True)
class AnyOf:
    """Holds when one of the conditions holds."""

    conditions: tuple[Condition, ...] = ()

    def __call__(self, op: Op) -> bool:
        return any(c(op) for c in self.conditions)


@dataclass(frozen=True)
class Not:
    """Holds when ``condition`` does not."""

    condition: Condition

    def __call__(self, op: Op) -> bool:
        return not self.condition(op)


ALWAYS = All()


def both(*conditions: Condition) -> All:
    return All(conditions)


def either(*conditions: Condition) -> AnyOf:
    return AnyOf(conditions)
