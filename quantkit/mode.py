"""Resolve the converter's attributes, once and up front, into one ``ConversionMode``.

TF re-derives its mode from the attributes at every step (``QuantizationMode.is_*``); here the
attributes are read once, every combination TF rejects is rejected with TF's reason, and the
rest of the pipeline only looks at the resolved value.
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np
import tensorflow as tf

from quantkit.types import (ConversionError, ConversionMode, Granularity, Optimize, OpsSet,
                            Phase, QuantMode, TensorType)

_QUANTIZING = {Optimize.DEFAULT, Optimize.OPTIMIZE_FOR_SIZE, Optimize.OPTIMIZE_FOR_LATENCY,
               Optimize.ACCURACY}
_IO_TYPES = {tf.float32: TensorType.FLOAT32, tf.int8: TensorType.INT8, tf.uint8: TensorType.UINT8,
             tf.int16: TensorType.INT16}
_INT16X8_OPS = OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8


def as_tf_dtype(value: Any, attribute: str) -> tf.DType | None:
    """A TF dtype from a TF or numpy dtype (what TF's converter accepts), None for None."""
    if value is None:
        return None
    try:
        return tf.as_dtype(np.dtype(value) if not isinstance(value, tf.DType) else value)
    except TypeError:
        raise ConversionError(Phase.OPTIONS, f"{attribute}={value!r} is not a dtype") from None


def resolve_mode(*, optimizations: Iterable[Any], representative_dataset: Any,
                 supported_ops: Iterable[OpsSet], supported_types: Iterable[Any],
                 inference_input_type: Any, inference_output_type: Any,
                 granularity: Granularity = Granularity.PER_CHANNEL,
                 bias_correction: bool = True, legacy_uint8: bool = False,
                 int16x8_bias_type: Any = None, dense_per_tensor: bool = False,
                 trained_ranges: bool = False) -> ConversionMode:
    """The conversion mode the attributes ask for, as TF decides it (``lite.py``'s
    ``QuantizationMode``); a ``ConversionError`` with TF's reason for what TF rejects.

    ``legacy_uint8`` (quantkit's own) asks for TF1-era uint8 models; ``int16x8_bias_type``
    is TF's private ``_experimental_full_integer_quantization_bias_type``. ``trained_ranges``:
    the model is quantization-aware trained (its FakeQuant ranges stand in for calibration, so
    full integer quantization needs no ``representative_dataset``, as in TF).
    """
    ranged = representative_dataset is not None or trained_ranges  # activations get ranges
    ops = {_member(OpsSet, v, "target_spec.supported_ops") for v in supported_ops}
    types = {as_tf_dtype(t, "target_spec.supported_types") for t in supported_types}
    in_type = as_tf_dtype(inference_input_type, "inference_input_type") or tf.float32
    out_type = as_tf_dtype(inference_output_type, "inference_output_type") or tf.float32
    if OpsSet.SELECT_TF_OPS in ops:
        raise ConversionError(
            Phase.OPTIONS, "target_spec.supported_ops has SELECT_TF_OPS: quantkit writes TFLite "
            "builtin ops only (no Flex delegate ops); list the TF ops it lacks with "
            "`allow_custom_ops=True` or convert them with tf.lite")
    chosen = {_member(Optimize, v, "optimizations") for v in optimizations}
    quantizing = bool(chosen & _QUANTIZING)
    int16x8 = _INT16X8_OPS in ops
    # As TF: int8 is required by the INT8 op set or by supported_types == {int8}; ops may stay
    # float only when TFLITE_BUILTINS is in the op set.
    int8_required = OpsSet.TFLITE_BUILTINS_INT8 in ops or types == {tf.int8}
    integer_only = OpsSet.TFLITE_BUILTINS not in ops
    integer_target = int8_required or int16x8 or legacy_uint8
    if int8_required and types and min(t.size for t in types) != 1:
        raise ConversionError(Phase.OPTIONS, "TFLITE_BUILTINS_INT8 requires smallest supported "
                              "type to be INT8.")
    if integer_target and not ranged:
        raise ConversionError(Phase.OPTIONS, "For full integer quantization, a "
                              "`representative_dataset` must be specified.")
    dense = Granularity.PER_TENSOR if dense_per_tensor else granularity
    common = dict(granularity=granularity, dense_granularity=dense,
                  bias_correction=bool(bias_correction), accuracy=Optimize.ACCURACY in chosen)
    bias = as_tf_dtype(int16x8_bias_type, "_experimental_full_integer_quantization_bias_type")
    # as TF: an integer target makes it full integer even with float16 among the types
    integer = ranged and quantizing and (
        integer_target or tf.float16 not in types)
    if bias is not None and not integer:
        raise ConversionError(Phase.OPTIONS, "`full_integer_quantization_bias_type` is only "
                              "supported for full integer quantization.")
    if not quantizing:
        if integer_target:
            raise ConversionError(
                Phase.OPTIONS, "integer targets (TFLITE_BUILTINS_INT8, the int16x8 op set, "
                "supported_types=[tf.int8], legacy_uint8) need quantization: set "
                "`optimizations=[Optimize.DEFAULT]`")
        _check_io_types(in_type, out_type, [tf.float32])
        return ConversionMode()
    if tf.float16 in types and not integer_target:
        _check_io_types(in_type, out_type, [tf.float32])
        return ConversionMode(QuantMode.FLOAT16, **common)
    if not ranged:
        if (in_type, out_type) != (tf.float32, tf.float32):
            raise ConversionError(
                Phase.OPTIONS, f"inference_input_type=tf.{in_type.name}, inference_output_type="
                f"tf.{out_type.name}: integer model inputs and outputs need full integer "
                "quantization, so a `representative_dataset` must be specified.")
        return ConversionMode(QuantMode.DYNAMIC_RANGE, **common)
    if legacy_uint8:
        _check_io_types(in_type, out_type, [tf.float32, tf.uint8])
        quant = QuantMode.LEGACY_UINT8
    elif int16x8:
        _check_io_types(in_type, out_type, [tf.float32, tf.int16])
        quant = QuantMode.INT16X8
    else:
        _check_io_types(in_type, out_type, [tf.float32, tf.int8, tf.uint8])
        quant = QuantMode.FULL_INTEGER
    if bias not in ((None, tf.int32, tf.int64) if int16x8 else (None, tf.int32)):
        wanted = "`dtypes.int32` or `dtypes.int64` for Int16Quant" if int16x8 else \
            "`dtypes.int32` for Int8Quant"
        raise ConversionError(Phase.OPTIONS, f"Expected bias type to be {wanted}. Current "
                              f"setting bias type: {bias!r}")
    return ConversionMode(quant, integer_only=integer_only, input_type=_IO_TYPES[in_type],
                          output_type=_IO_TYPES[out_type],
                          int16x8_bias=TensorType.INT32 if bias == tf.int32 else TensorType.INT64,
                          **common)


def _member(enum_type: type, value: Any, attribute: str) -> Any:
    """quantkit's member for ``value``, which may also be TF's (``tf.lite.OpsSet.X``) or a
    name, so scripts that mix the two modules mean what they say."""
    name = value if isinstance(value, str) else getattr(value, "name", None)
    if isinstance(value, enum_type):
        return value
    if name in enum_type.__members__:
        return enum_type[name]
    raise ConversionError(Phase.OPTIONS, f"{attribute}: {value!r} is not one of "
                          f"{', '.join(enum_type.__members__)}")


def _check_io_types(in_type: tf.DType, out_type: tf.DType, allowed: list[tf.DType]) -> None:
    if in_type not in allowed or out_type not in allowed:
        names = [f"tf.{t.name}" for t in allowed]
        wanted = names[0] if len(names) == 1 else f"in {names}"
        raise ConversionError(
            Phase.OPTIONS, f"The inference_input_type and inference_output_type must be "
            f"{wanted} (got tf.{in_type.name} and tf.{out_type.name}).")
