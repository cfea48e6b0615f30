"""Where the weights, the bias and the channel axes sit for the ops that carry weights.

TFLite's layouts: CONV_2D and TRANSPOSE_CONV filters are OHWI, DEPTHWISE_CONV_2D filters are
``[1, H, W, C·multiplier]``, FULLY_CONNECTED weights are ``[out, in]``. Passes fold scales into
these axes; the quantizer takes per-channel scales along ``output_axis``.
"""

from __future__ import annotations

from dataclasses import dataclass

from quantkit.types import OpType


@dataclass(frozen=True)
class WeightLayout:
    weights_input: int  # index of the weights among the op's inputs
    bias_input: int  # index of the (optional) bias
    output_axis: int  # the weights' axis over output channels
    input_axis: int  # the weights' axis over input channels (depthwise: the same channels)


WEIGHT_LAYOUTS: dict[OpType, WeightLayout] = {
    OpType.CONV_2D: WeightLayout(weights_input=1, bias_input=2, output_axis=0, input_axis=3),
    OpType.DEPTHWISE_CONV_2D: WeightLayout(weights_input=1, bias_input=2, output_axis=3,
                                           input_axis=3),
    OpType.FULLY_CONNECTED: WeightLayout(weights_input=1, bias_input=2, output_axis=0,
                                         input_axis=1),
    OpType.TRANSPOSE_CONV: WeightLayout(weights_input=1, bias_input=3, output_axis=0,
                                        input_axis=3),
}
