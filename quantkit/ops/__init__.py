"""What quantkit knows about each TFLite op type: one ``OpSpec`` row per type (``table.OPS``).

Passes, planner, writer, reader and tests read per-op facts only from here.
"""

from __future__ import annotations

from quantkit.ops.spec import (ALL, BiasCorrection, FusedKernel, Hybrid, Int16Quirks, OpSpec,
                               OutputRule, QuantRule, WeightLayout)
from quantkit.ops.table import OPS
from quantkit.types import OpType




def spec(op_type: OpType) -> OpSpec:
    """The row of ``op_type``; an empty spec (no options, rule, versions, ...) without one."""
    return OPS.get(op_type) or OpSpec(op_type)


WEIGHTED = frozenset(t for t, s in OPS.items() if s.weights is not None)

__all__ = ["ALL", "BiasCorrection", "FusedKernel", "Hybrid", "Int16Quirks", "OPS", "OpSpec",
           "OutputRule", "QuantRule", "WEIGHTED", "WeightLayout", "spec"]
