"""Conversion metadata: what made the model.

- ``CONVERSION_METADATA`` (unless ``exclude_conversion_metadata``): TF's own record
  (environment: the TF version that traced the model, API version, model type; options:
  optimization modes, custom-op flags), built through TF's generated binding of
  ``conversion_metadata.fbs``, so tools that read TF's models read ours.
- The model's ``description`` names quantkit and its version (``model_description``), where TF
  writes "MLIR Converted.".
- float16 models also get TF's ``reduced_precision_support = fp16accfp32``, a runtime hint
  kept even without conversion metadata.

Nothing more: on a model of a few kilobytes every extra entry shows in the size comparison.
"""

from __future__ import annotations

import enum

import flatbuffers
import tensorflow as tf
from tensorflow.lite.python import conversion_metadata_schema_py_generated as schema

from quantkit.types import ConversionMode, QuantMode


class ModelType(enum.IntEnum):
    """Where the model came from (``ModelType`` in TF's schema)."""

    SAVED_MODEL = schema.ModelType.TF_SAVED_MODEL
    KERAS_MODEL = schema.ModelType.KERAS_MODEL
    CONCRETE_FUNCTIONS = schema.ModelType.TF_CONCRETE_FUNCTIONS
    JAX = schema.ModelType.JAX
    TFLITE = schema.ModelType.NONE  # a .tflite model (the schema has no such origin)


# The optimization mode TF records for each quantization mode (none for float32 and the
# legacy uint8 mode, which TF no longer has).
_OPTIMIZATION_MODES = {
    QuantMode.DYNAMIC_RANGE: schema.ModelOptimizationMode.PTQ_DYNAMIC_RANGE,
    QuantMode.FLOAT16: schema.ModelOptimizationMode.PTQ_FLOAT16,
    QuantMode.FULL_INTEGER: schema.ModelOptimizationMode.PTQ_FULL_INTEGER,
    QuantMode.INT16X8: schema.ModelOptimizationMode.PTQ_INT16,
}


def model_metadata(mode: ConversionMode, model_type: ModelType, allow_custom_ops: bool,
                   exclude_conversion_metadata: bool) -> dict[str, bytes]:
    """The metadata entries for a model converted in ``mode``; with
    ``exclude_conversion_metadata`` only the runtime hint (float16), as TF."""
    entries = {}
    if mode.quant is QuantMode.FLOAT16:  # a runtime hint, not conversion metadata
        entries["reduced_precision_support"] = b"fp16accfp32"
    if exclude_conversion_metadata:
        return entries
    environment = schema.EnvironmentT()
    environment.tensorflowVersion = tf.__version__
    environment.apiVersion = 2
    environment.modelType = int(model_type)
    options = schema.ConversionOptionsT()
    options.modelOptimizationModes = ([_OPTIMIZATION_MODES[mode.quant]]
                                      if mode.quant in _OPTIMIZATION_MODES else [])
    options.allowCustomOps = bool(allow_custom_ops)
    record = schema.ConversionMetadataT()
    record.environment, record.options = environment, options
    builder = flatbuffers.Builder(128)
    builder.Finish(record.Pack(builder))
    entries["CONVERSION_METADATA"] = bytes(builder.Output())
    return entries


def model_description(quantkit_version: str) -> str:
    return f"quantkit {quantkit_version}"
