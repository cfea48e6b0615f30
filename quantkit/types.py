"""Plain types shared by every stage of quantkit (a leaf module: it imports no quantkit code).

Enums mirror the public API of ``tf.lite`` (``Optimize``, ``OpsSet``) and the TFLite schema
(``OpType``, ``Padding``, ``Activation``); their values come from the schema binding
(the ``tflite`` package), never from hand-typed numbers.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import numpy as np
from tflite.ActivationFunctionType import ActivationFunctionType as _Act
from tflite.BuiltinOperator import BuiltinOperator as _Builtin
from tflite.Padding import Padding as _Padding
from tflite.TensorType import TensorType as _TensorType


class Optimize(enum.Enum):
    """Same members as ``tf.lite.Optimize``."""

    DEFAULT = "DEFAULT"
    OPTIMIZE_FOR_SIZE = "OPTIMIZE_FOR_SIZE"
    OPTIMIZE_FOR_LATENCY = "OPTIMIZE_FOR_LATENCY"
    EXPERIMENTAL_SPARSITY = "EXPERIMENTAL_SPARSITY"
    # quantkit's own: DEFAULT plus cross-layer equalization, histogram ranges chosen per tensor
    # by the error at the outputs, MSE-clipped weights (same int8 format; quantkit.accuracy)
    ACCURACY = "ACCURACY"


class OpsSet(enum.Enum):
    """Same members as ``tf.lite.OpsSet``."""

    TFLITE_BUILTINS = "TFLITE_BUILTINS"
    SELECT_TF_OPS = "SELECT_TF_OPS"
    TFLITE_BUILTINS_INT8 = "TFLITE_BUILTINS_INT8"
    EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8 = (
        "EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8"
    )


class Phase(enum.Enum):
    """The stage of the pipeline an error comes from (TF tags its steps the same way)."""

    OPTIONS = "options"
    CAPTURE = "capture"
    LOWERING = "lowering"
    PASSES = "passes"
    CALIBRATION = "calibration"
    QUANTIZATION = "quantization"
    WRITING = "writing"


class ConversionError(ValueError):
    """A user-facing conversion error; a ValueError, as TF's converter raises.

    The message always starts with the phase, e.g. ``[lowering] unsupported ops: ...``.
    """

    def __init__(self, phase: Phase, message: str):
        self.phase = phase
        super().__init__(f"[{phase.value}] {message}")


class NotYetSupportedError(ConversionError, NotImplementedError):
    """An attribute the API accepts but this version of quantkit does not implement yet."""


class Padding(enum.IntEnum):
    SAME = _Padding.SAME
    VALID = _Padding.VALID


class Activation(enum.IntEnum):
    """Fused activation functions (``ActivationFunctionType`` in the schema)."""

    NONE = _Act.NONE
    RELU = _Act.RELU
    RELU_N1_TO_1 = _Act.RELU_N1_TO_1
    RELU6 = _Act.RELU6
    TANH = _Act.TANH


def schema_enum_members(binding_enum: type) -> dict[str, int]:
    """Name → value of a schema enum as the binding generates it (a class of int constants)."""
    members = vars(binding_enum).items()
    return {k: v for k, v in members if not k.startswith("_") and isinstance(v, int)}


# Every TFLite builtin operator, by its schema name (OpType.CONV_2D, OpType.HARD_SWISH, ...).
OpType = enum.IntEnum("OpType", schema_enum_members(_Builtin))


class TensorType(enum.IntEnum):
    """Element types quantkit writes (``TensorType`` in the schema)."""

    FLOAT32 = _TensorType.FLOAT32
    FLOAT16 = _TensorType.FLOAT16
    INT32 = _TensorType.INT32
    INT64 = _TensorType.INT64
    INT16 = _TensorType.INT16
    INT8 = _TensorType.INT8
    UINT8 = _TensorType.UINT8
    BOOL = _TensorType.BOOL
    STRING = _TensorType.STRING


# The element type of each numpy dtype quantkit writes.
NUMPY_TENSOR_TYPES: dict[np.dtype, TensorType] = {
    np.dtype(np.float32): TensorType.FLOAT32,
    np.dtype(np.float16): TensorType.FLOAT16,
    np.dtype(np.int32): TensorType.INT32,
    np.dtype(np.int64): TensorType.INT64,
    np.dtype(np.int16): TensorType.INT16,
    np.dtype(np.int8): TensorType.INT8,
    np.dtype(np.uint8): TensorType.UINT8,
    np.dtype(np.bool_): TensorType.BOOL,
}


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization of a tensor: ``r = s·(q − z)``; per-channel along ``axis`` when given."""

    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    axis: int | None = None


@dataclass(frozen=True)
class TrainedRange:
    """The range a FakeQuant op of a quantization-aware trained model (TF's
    ``FakeQuantWithMinMaxVars``, as ``tfmot.quantization.keras.quantize_model`` inserts them)
    learned for a tensor: its ``[min, max]`` on a grid of ``2^num_bits`` levels (one fewer with
    ``narrow_range``), before TF's nudging makes 0 exactly representable. A weight's range may
    be per output channel (``FakeQuantWithMinMaxVarsPerChannel``): tuples, one per channel."""

    min: float | tuple[float, ...]
    max: float | tuple[float, ...]
    num_bits: int = 8
    narrow_range: bool = False


class QuantMode(enum.Enum):
    """What the converter does to the numbers, resolved once from the converter's attributes."""

    FLOAT32 = "float32"  # no quantization
    FULL_INTEGER = "full_integer"  # int8 weights and activations, calibrated ranges
    INT16X8 = "int16x8"  # int16 activations, int8 weights, int64 biases, calibrated ranges
    LEGACY_UINT8 = "legacy_uint8"  # uint8 weights (per tensor) and activations, calibrated
    DYNAMIC_RANGE = "dynamic_range"  # int8 weights, float activations, no calibration
    FLOAT16 = "float16"  # float16 weights dequantized at load, float activations


class Granularity(enum.Enum):
    """How many scales a weight tensor gets."""

    PER_CHANNEL = "per_channel"  # one per output channel (the default, as TF)
    PER_TENSOR = "per_tensor"


@dataclass(frozen=True)
class ConversionMode:
    """Everything about *how* to convert, decided up front (``quantkit.mode.resolve_mode``).

    ``integer_only``: ``TFLITE_BUILTINS`` is not in the op set (e.g. INT8 or int16x8 only),
    so an op without an integer kernel is an error instead of staying float.
    ``input_type``/``output_type``: the element types of the model's inputs and outputs
    (float32, int8, uint8 or int16). ``bias_correction``: biases absorb the mean error of the
    weights' rounding, measured on the calibration data.
    """

    quant: QuantMode = QuantMode.FLOAT32
    granularity: Granularity = Granularity.PER_CHANNEL
    dense_granularity: Granularity = Granularity.PER_CHANNEL  # FULLY_CONNECTED's own
    integer_only: bool = False
    input_type: TensorType = TensorType.FLOAT32
    output_type: TensorType = TensorType.FLOAT32
    bias_correction: bool = True
    int16x8_bias: TensorType = TensorType.INT64  # INT32 when asked (TF's private flag)
    accuracy: bool = False  # Optimize.ACCURACY: equalization, chosen ranges, clipped weights
