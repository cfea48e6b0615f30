"""The quantizer: per-op rules (``rules``), the math (``math``), the integer schemes
(``schemes``), planning (``plan``), the edits that carry a plan out (``edits``), and the
weight-only modes (``weight_only``)."""

from __future__ import annotations

from quantkit.ir.graph import Graph
from quantkit.quantize.edits import apply
from quantkit.quantize.loops import link_loops, tied_loop_ranges
from quantkit.quantize.plan import Means, Plan, Ranges, plan_integer
from quantkit.quantize.rewire import WeightRounder
from quantkit.recipe import OpSettings
from quantkit.types import ConversionMode


def quantize_integer(graph: Graph, ranges: Ranges, mode: ConversionMode,
                     means: Means | None = None, settings: OpSettings | None = None,
                     rounding: WeightRounder | None = None) -> tuple[Graph, Plan]:
    """``graph`` in the mode's integer scheme (int8, int16x8 or legacy uint8), each op in the
    precision its ``settings`` ask for, from calibrated ``ranges`` (and input ``means`` for
    bias correction): a new graph, and the plan it was made from. ``graph`` is unchanged.
    ``rounding``: the weights' integers where not nearest rounding's (``adaround.AdaRound``).
    A WHILE's condition and body are quantized too, its loop variables' ranges tied
    (``loops.tied_loop_ranges``, ``loops.link_loops``)."""
    tied = tied_loop_ranges(graph, ranges)
    plan = plan_integer(graph, tied, mode, means, settings, rounding,
                        own_ranges=ranges if tied is not ranges else None)
    quantized = apply(graph, plan.edits)
    link_loops(graph, quantized, plan, tied, mode)
    return quantized, plan


__all__ = ["Means", "Plan", "Ranges", "WeightRounder", "plan_integer", "quantize_integer"]
