"""Graph passes over the IR. ``run_passes`` applies them in a fixed order, to a fixpoint.

Order matters: patterns that need to see separate ops (HARD_SWISH, PRELU) run before the
folds that would merge their pieces, and activation fusion runs last.
"""

from __future__ import annotations

from typing import Callable

from quantkit.ir.graph import Graph, subgraphs
from quantkit.passes.affine import (fold_affine_into_next, fold_scale_into_next,
                                    merge_affine_chains, shift_before_scale)
from quantkit.passes.cleanup import (absorb_negation, constant_operands, deduplicate_ops,
                                     drop_zero_bias, noop_elementwise, static_reshapes)
from quantkit.passes.fold_batchnorm import fold_batchnorm
from quantkit.passes.fold_constants import fold_constants
from quantkit.passes.fuse_activations import fuse_activations
from quantkit.passes.loops import LOOP_PASSES
from quantkit.passes.pad import fold_pad_into_conv, mul_through_pad
from quantkit.passes.patterns import (gelu, gelu_tanh, hard_swish, nd_fully_connected, prelu,
                                      upsample_nearest)
from quantkit.passes.zeros import constant_into_summand, zero_products
from quantkit.types import ConversionError, Phase

Pass = Callable[[Graph], bool]

PIPELINE: tuple[Pass, ...] = (
    fold_constants,
    deduplicate_ops,
    static_reshapes,
    *LOOP_PASSES,
    constant_operands,
    noop_elementwise,
    zero_products,
    constant_into_summand,
    hard_swish,
    prelu,
    gelu,
    gelu_tanh,
    nd_fully_connected,
    upsample_nearest,
    absorb_negation,  # after GELU, whose pattern holds a negation
    fold_batchnorm,
    merge_affine_chains,
    shift_before_scale,
    mul_through_pad,
    fold_affine_into_next,
    fold_pad_into_conv,
)
FINAL: tuple[Pass, ...] = (fuse_activations, drop_zero_bias)
MAX_ROUNDS = 50


def run_passes(graph: Graph, keep_offsets: bool = False) -> Graph:
    """Run the pipeline until nothing changes, then the final passes. Edits ``graph`` in place.

    Tensor names are the tensors' identity from here on (calibration statistics, saved ones
    too, are keyed by them): repeats the lowering left are suffixed once, first, and every
    pass must keep activation names unique (checked after each).

    ``keep_offsets``: constant ADDs are not folded into the next layer's bias, nor moved
    before a scale so that the scale folds (for the weight-only modes, see
    ``fold_scale_into_next``).

    The graphs ``graph``'s ops reference (a WHILE's condition and body: ``ir.graph.subgraphs``)
    go through the same passes, each on its own, after the graph holding them: only the loop
    passes (``passes.loops``: loop variables that repeat another) look across a subgraph's
    inputs and outputs.
    """
    pipeline = PIPELINE if not keep_offsets else tuple(
        fold_scale_into_next if p is fold_affine_into_next else p
        for p in PIPELINE if p is not shift_before_scale)
    for g in subgraphs([graph]):
        g.uniquify_names()
        for _ in range(MAX_ROUNDS):
            if not any([_run(p, g) for p in pipeline]):
                break
        for p in FINAL:
            _run(p, g)
        g.remove_dead_ops()
    return graph


def _run(p: Pass, graph: Graph) -> bool:
    try:
        changed = p(graph)
    except ConversionError:
        raise
    except Exception as e:  # a pass bug must still say where it happened
        raise ConversionError(Phase.PASSES, f"pass {p.__name__} failed on graph "
                              f"{graph.name!r}: {type(e).__name__}: {e}") from e
    repeated = graph.repeated_activation_names() if changed else []
    if repeated:
        raise ConversionError(Phase.PASSES, f"pass {p.__name__} gave two activations the name "
                              f"{repeated[0]!r} in graph {graph.name!r} (a quantkit bug)")
    return changed
