"""What quantkit knows about one TFLite op type, as one frozen record (``OpSpec``).

Every stage reads its per-op facts from the table of these records (``quantkit.ops.table``):
the writer and reader (options table, versions, runtime versions), the passes (weight layout,
fusable activations, constant folding), the planner (integer rule, kernel availability per
scheme, bias correction, int16 quirks) and the weight-only modes (hybrid kernels). A fact
written once cannot drift between two tables.

This module is low in the import graph: it imports ``quantkit.types`` only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable

from quantkit.types import Activation, OpType, QuantMode, QuantParams, TensorType

# ``(version, condition)``: the first row whose condition holds for an op gives its version
# (conditions: ``quantkit.ops.conditions``).
VersionRow = tuple[int, Callable[[Any], bool]]
# A constant-folding kernel ``(op, input values) -> output values``; None declines.
Folder = Callable[[Any, list], "list | None"]


class OutputRule(enum.Enum):
    """How an integer op's output parameters are chosen."""

    OWN = "own"  # from the output's calibrated range (CONV_2D, ADD, MEAN, ...)
    SHARED = "shared"  # the output and activation inputs share one set (values only move)
    FIXED = "fixed"  # the spec's fixed parameters, whatever the range (SOFTMAX, LOGISTIC)
    # output i from its own range; input i read at output i's parameters (requantized where
    # they differ): WHILE copies each loop variable's raw values through (issue #12)
    PAIRED = "paired"


ALL = None  # every input is an activation


@dataclass(frozen=True)
class QuantRule:
    """The integer rule of the TFLite int8 spec for one op type (shared by every scheme)."""

    activations: tuple[int, ...] | None  # activation input indices; ALL for every input
    output: OutputRule = OutputRule.OWN
    fixed: QuantParams | None = None  # for FIXED: r = s·(q − z) with these s, z (int8)
    # SHARED with constants that saturate (MINIMUM/MAXIMUM, SELECT_V2): the group's range is
    # its dynamic inputs'; a constant operand is quantized (saturating) into it, and the
    # output's own calibrated range does not count (UnitNormalization's min(rsqrt(Σx²), 1/√ε)
    # with 1/√ε = 10⁶, an attention mask's −1e9 fill: either would leave the values 0 levels).
    constants_clamp: bool = False

    def activation_inputs(self, n_inputs: int) -> tuple[int, ...]:
        if self.activations is ALL:
            return tuple(range(n_inputs))
        return tuple(i for i in self.activations if i < n_inputs)


class BiasCorrection(enum.Enum):
    """How bias correction reads an op's weights (``quantize.math.weight_error_bias``)."""

    NONE = "none"  # no correction (TRANSPOSE_CONV: its taps per output pixel vary)
    CONV = "conv"  # OHWI, grouped when the input has a multiple of I channels
    DEPTHWISE = "depthwise"  # [1, H, W, C·multiplier]
    FC = "fc"  # [O, I]


@dataclass(frozen=True)
class WeightLayout:
    """Where an op's activation, weights and bias sit among its inputs, and the weights' axes.

    ``pads_input``: the op zero-pads its activation (``options.padding``) before sliding a
    ``[*, H, W, *]`` window over it, so a PAD before it can become SAME padding.
    """

    weights_input: int
    bias_input: int
    output_axis: int  # the weights' axis over output channels (per-channel scales)
    input_axis: int  # the weights' axis over input channels (depthwise: the same channels)
    activation_input: int = 0
    pads_input: bool = False


@dataclass(frozen=True)
class Hybrid:
    """A dynamic-range kernel: float activations, int8 weights quantized at conversion.

    ``group``: more weight inputs quantized with ``weights_input``, all or none (an LSTM's
    gate matrices: its kernel needs them of one type, as TF quantizes them only when every one
    is large enough)."""

    per_channel: bool  # takes a scale per output channel (along the layout's output_axis)
    asymmetric_inputs: bool  # sets the op's ``asymmetric_quantize_inputs``
    weights_input: int = 1
    # Other weight inputs the kernel reads as int8 along with ``weights_input`` (the fused
    # RNNs' recurrent and per-gate weights): all of them int8, or none.
    group: tuple[int, ...] = ()


class FusedKernel(enum.Enum):
    """An integer kernel whose inputs follow their own spec rather than the op's ``QuantRule``
    (weights, biases, states, intermediates: ``quantkit.quantize.lstm``)."""

    LSTM_8X8_16 = "lstm_8x8_16"  # LiteRT's integer LSTM: int8 in/out, int16 cell state


@dataclass(frozen=True)
class Int16Quirks:
    """What LiteRT's int16x8 kernels need besides the scheme's storage."""

    bias: TensorType | None = None  # bias type regardless of the scheme's (depthwise: INT64)
    bias_type_option: bool = False  # the options' ``quantized_bias_type`` names the bias type
    general_scaling: bool = False  # ``pot_scale_int16=False``: calibrated, not 2^k, scales
    min_version: int | None = None  # TF's int16x8 quantizer raises the float version to this


INTEGER_SCHEMES = frozenset({QuantMode.FULL_INTEGER, QuantMode.INT16X8, QuantMode.LEGACY_UINT8})


@dataclass(frozen=True)
class OpSpec:
    """Everything the pipeline knows about one TFLite op type.

    Attributes:
        op: the op type.
        options: its options dataclass (``quantkit.ir.options``), named after the schema table
            LiteRT reads for it; None when the op has no options.
        options_required: LiteRT cannot run the op on default (absent) options.
        weights: where its weights and bias sit (ops with weights only).
        bias_correction: how bias correction reads its weights.
        activation: the fused activation this op is (RELU → ``Activation.RELU``), if any.
        fusable: activations its kernel applies when fused into it.
        quant: its integer rule; None when no integer scheme has a kernel.
        lacks: integer schemes (``QuantMode``) whose kernels lack it although ``quant`` is set.
        hybrid: its dynamic-range kernel, if LiteRT has one.
        int16: int16x8 quirks.
        versions: operator-version rows, unconditional last; () when quantkit never writes it.
        runtime: the first runtime running version v at ``runtime[v - 1]``; None: no need.
        fold: its numpy kernel for constant folding, if it folds.
        fused: its integer kernel's own input spec (the rule covers input 0 and the output).
    """

    op: OpType
    options: type | None = None
    options_required: bool = False
    weights: WeightLayout | None = None
    bias_correction: BiasCorrection = BiasCorrection.NONE
    activation: Activation | None = None
    fusable: frozenset[Activation] = frozenset()
    quant: QuantRule | None = None
    lacks: frozenset[QuantMode] = frozenset()
    hybrid: Hybrid | None = None
    int16: Int16Quirks = Int16Quirks()
    versions: tuple[VersionRow, ...] = ()
    runtime: tuple[str | None, ...] | None = ()
    fold: Folder | None = None
    fused: FusedKernel | None = None

    def rule_for(self, scheme: QuantMode) -> QuantRule | None:
        """The integer rule in ``scheme`` (int8, int16x8 or legacy uint8); None without a
        kernel there."""
        return None if scheme in self.lacks else self.quant

    @property
    def options_table(self) -> str | None:
        return None if self.options is None else self.options.__name__
