"""Explicit zero padding that a convolution can do itself.

Keras writes ``ZeroPadding2D`` + a VALID convolution where TFLite's SAME padding gives the same
result (MobileNet's ``correct_pad``). SAME pads ``total = max((⌈n/s⌉ − 1)·s + k_eff − n, 0)``
along each spatial axis, ``total // 2`` before and the rest after, with ``k_eff = (k−1)·d + 1``.
A MUL by a channel constant commutes with zero padding (``0·m = 0``), so it moves below the PAD
where it can then fold into the convolution.
"""

from __future__ import annotations

import dataclasses

from quantkit.ir.graph import Graph, Op
from quantkit.ops import spec
from quantkit.passes.util import Uses, to_fixpoint, channel_vector, split_const
from quantkit.types import OpType, Padding



def same_padding(size: int, kernel: int, stride: int, dilation: int) -> tuple[int, int]:
    """(before, after) padding TFLite's SAME uses along one axis."""
    effective = (kernel - 1) * dilation + 1
    out = -(-size // stride)
    total = max((out - 1) * stride + effective - size, 0)
    return total // 2, total - total // 2


def _conv_same_padding(conv: Op, shape: tuple) -> list[list[int]]:
    weights = conv.inputs[1].shape  # CONV_2D: OHWI, DEPTHWISE_CONV_2D: 1HWC
    opts = conv.options
    pad_h = same_padding(shape[1], weights[1], opts.stride_h, opts.dilation_h_factor)
    pad_w = same_padding(shape[2], weights[2], opts.stride_w, opts.dilation_w_factor)
    return [[0, 0], list(pad_h), list(pad_w), [0, 0]]


def _pads_as_same(pad: Op, conv: Op) -> bool:
    """Whether ``conv`` is a VALID convolution of ``pad``'s output whose SAME padding of the
    unpadded input would be exactly ``pad``'s."""
    x = pad.inputs[0]
    layout = spec(conv.type).weights
    return (layout is not None and layout.pads_input and conv.inputs[0] is pad.outputs[0]
            and conv.options.padding == Padding.VALID and x.shape is not None
            and len(x.shape) == 4 and x.shape[1] is not None and x.shape[2] is not None
            and pad.inputs[1].data.tolist() == _conv_same_padding(conv, x.shape))


def fold_pad_into_conv(graph: Graph) -> bool:
    """PAD + VALID conv → SAME conv, where SAME pads exactly as the PAD did.

    Every such conv reading the PAD folds it (NASNet pads once for two branches); the PAD
    goes when nothing else reads it.
    """
    uses = Uses(graph)
    changed = False
    for pad in graph.ops:
        if pad.type != OpType.PAD or not pad.inputs[1].is_const:
            continue
        for conv in uses.consumers.get(pad.outputs[0], []):
            if _pads_as_same(pad, conv):
                conv.inputs[0] = pad.inputs[0]
                conv.options = dataclasses.replace(conv.options, padding=Padding.SAME)
                changed = True
    if changed:
        graph.remove_dead_ops()
    return changed


@to_fixpoint
def mul_through_pad(graph: Graph) -> bool:
    """MUL(x, m) → PAD  ⇒  PAD(x) → MUL(·, m), for a channel constant m."""
    uses = Uses(graph)
    for mul in graph.ops:
        if mul.type != OpType.MUL or mul.options.fused_activation_function:
            continue
        split = split_const(mul)
        pad = uses.only_consumer(mul.outputs[0])
        if split is None or pad is None or pad.type != OpType.PAD \
                or channel_vector(split[1], mul.outputs[0]) is None:
            continue
        x, padded = split[0], pad.outputs[0]
        inner = mul.outputs[0]
        inner.shape = padded.shape  # the MUL now works on the padded tensor
        pad.inputs[0], pad.outputs = x, [inner]
        mul.inputs = [inner if t is x else t for t in mul.inputs]
        mul.outputs = [padded]
        graph.ops.remove(mul)
        graph.ops.insert(graph.ops.index(pad) + 1, mul)
        return True
    return False
