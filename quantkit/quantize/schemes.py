"""Quantization schemes: where activations, weights and biases are stored in each integer mode.

``int8`` is the TFLite int8 spec; ``int16x8`` keeps int8 weights but int16 activations
(symmetric) and int64 biases; ``legacy uint8`` is what TF1-era converters produced, uint8
activations and per-tensor uint8 weights, for runtimes and accelerators that only take uint8.
The per-op rules (``quantkit.ops``: each spec's ``quant``) are shared; each spec's ``lacks``
says which schemes' kernels lack it, and a scheme what the spec's fixed output parameters
become in its storage.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from quantkit.ir.graph import Op
from quantkit.ops import OPS
from quantkit.quantize import math as qm
from quantkit.recipe import OpSettings
from quantkit.types import (ConversionMode, Granularity, OpType, QuantMode, QuantParams,
                            TensorType)

# Fixed outputs in int16: LiteRT's int16 LOGISTIC, TANH and SOFTMAX all write s = 1/32768, z = 0.
_INT16_FIXED = QuantParams((1 / 32768,), (0,))


@dataclass(frozen=True)
class Scheme:
    activations: qm.Storage
    weights: qm.Storage
    bias: qm.Storage
    per_channel: bool  # whether weights may have a scale per output channel
    mode: QuantMode  # the scheme's name in the op table's ``lacks``

    def fixed(self, int8_params: QuantParams) -> QuantParams:
        """The spec's fixed output parameters (given for int8) in this scheme's storage."""
        if self.activations == qm.INT16:
            return _INT16_FIXED
        shift = self.activations.qmin - qm.INT8.qmin  # uint8: the same scale, z + 128
        return qm.requantized(int8_params, shift)


INT8_SCHEME = Scheme(qm.INT8, qm.INT8_WEIGHTS, qm.INT32_BIAS, per_channel=True,
                     mode=QuantMode.FULL_INTEGER)
INT16X8_SCHEME = Scheme(qm.INT16, qm.INT8_WEIGHTS, qm.INT64_BIAS, per_channel=True,
                        mode=QuantMode.INT16X8)
LEGACY_UINT8_SCHEME = Scheme(qm.UINT8, qm.UINT8_WEIGHTS, qm.INT32_BIAS, per_channel=False,
                             mode=QuantMode.LEGACY_UINT8)

SCHEMES: dict[QuantMode, Scheme] = {
    QuantMode.FULL_INTEGER: INT8_SCHEME,
    QuantMode.INT16X8: INT16X8_SCHEME,
    QuantMode.LEGACY_UINT8: LEGACY_UINT8_SCHEME,
}


def scheme_for(mode: ConversionMode) -> Scheme:
    """The scheme of an integer ``mode`` (int16x8 with int32 biases when the mode asks)."""
    scheme = SCHEMES[mode.quant]
    if mode.quant is QuantMode.INT16X8 and mode.int16x8_bias == TensorType.INT32:
        scheme = dataclasses.replace(scheme, bias=qm.INT32_BIAS)
    return scheme


def weight_granularity(mode: ConversionMode, op: Op, settings: OpSettings | None = None
                       ) -> Granularity:
    """The weight granularity of ``op``: its recipe settings', else the one ``mode`` asks
    for its type (FULLY_CONNECTED has its own). Weights a quantization-aware trained model
    rounded per tensor (a FakeQuant's ``trained_range`` on them) stay per tensor: their values
    already lie on that one grid, which per-channel scales would not contain."""
    chosen = settings[op].weight_granularity if settings and op in settings else None
    if chosen is not None:
        return chosen
    layout = OPS[op.type].weights if op.type in OPS else None
    weights = op.inputs[layout.weights_input] if layout is not None else None
    if weights is not None and weights.trained_range is not None:
        per_tensor = not isinstance(weights.trained_range.min, tuple)
        return Granularity.PER_TENSOR if per_tensor else Granularity.PER_CHANNEL
    return mode.dense_granularity if op.type == OpType.FULLY_CONNECTED else mode.granularity
