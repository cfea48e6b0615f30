"""Named conversion modes: one table of converter settings the CLI, the benchmarks, the
notebooks and the tests share, applied the same way to quantkit's and to TF's converter.

    conv = quantkit.TFLiteConverter.from_keras_model(model)      # or tf.lite's converter
    quantkit.Preset.INT8.configure(conv, representative_dataset=rep)

Each preset only sets public ``tf.lite.TFLiteConverter`` attributes (and TF's own private
``_experimental_disable_per_channel`` for per-tensor weights, which quantkit honours too), so
both converters are asked for exactly the same thing.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Callable


@dataclasses.dataclass(frozen=True)
class PresetSpec:
    quantize: bool                  # optimizations = [Optimize.DEFAULT]
    calibrated: bool                # needs a representative_dataset
    supported_ops: tuple[str, ...] = ()    # OpsSet member names; () keeps the default
    supported_types: tuple[str, ...] = ()  # tf.DType names
    io_type: str | None = None  # inference_input_type and inference_output_type, by name
    per_tensor: bool = False        # one weight scale per tensor instead of per channel
    summary: str = ""


class Preset(enum.Enum):
    """The conversion modes benchmarked side by side with tf.lite (``--mode`` in the CLI)."""

    FLOAT32 = "float32"
    DYNAMIC_RANGE = "dynamic_range"
    FLOAT16 = "float16"
    INT8 = "int8"
    INT8_PER_TENSOR = "int8_per_tensor"
    INT16X8 = "int16x8"
    UINT8_IO = "uint8_io"

    @property
    def spec(self) -> PresetSpec:
        return PRESETS[self]

    def configure(self, converter: Any, representative_dataset: Callable | None = None) -> Any:
        """Set ``converter`` (quantkit's or tf.lite's) to this mode; returns it.

        Raises ``ValueError`` when the mode needs calibration data and none is given.
        """
        import tensorflow as tf  # here: the CLI lists and checks modes without starting TF

        spec = self.spec
        if spec.calibrated and representative_dataset is None:
            raise ValueError(f"mode {self.value} needs calibration data (a "
                             "representative_dataset)")
        # quantkit accepts tf.lite's enum members as well as its own, TF only its own.
        if spec.quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if spec.calibrated:
            converter.representative_dataset = representative_dataset
        if spec.supported_ops:
            converter.target_spec.supported_ops = [getattr(tf.lite.OpsSet, name)
                                                   for name in spec.supported_ops]
        if spec.supported_types:
            converter.target_spec.supported_types = [tf.as_dtype(t) for t in spec.supported_types]
        if spec.io_type is not None:
            converter.inference_input_type = tf.as_dtype(spec.io_type)
            converter.inference_output_type = tf.as_dtype(spec.io_type)
        if spec.per_tensor:
            converter._experimental_disable_per_channel = True
        return converter


_INT8_ONLY = ("TFLITE_BUILTINS_INT8",)
# The int16 kernels lack some ops (LiteRT has no int16 kernel for them): those stay float.
_INT16X8_WITH_FALLBACK = ("EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8",
                          "TFLITE_BUILTINS")

PRESETS: dict[Preset, PresetSpec] = {
    Preset.FLOAT32: PresetSpec(False, False, summary="float32, no quantization"),
    Preset.DYNAMIC_RANGE: PresetSpec(True, False, summary="int8 weights, float activations"),
    Preset.FLOAT16: PresetSpec(True, False, supported_types=("float16",),
                               summary="float16 weights"),
    Preset.INT8: PresetSpec(True, True, _INT8_ONLY,
                            summary="int8 weights (per channel) and activations, float IO"),
    Preset.INT8_PER_TENSOR: PresetSpec(True, True, _INT8_ONLY, per_tensor=True,
                                       summary="int8, one weight scale per tensor, float IO"),
    Preset.INT16X8: PresetSpec(True, True, _INT16X8_WITH_FALLBACK,
                               summary="int16 activations, int8 weights, float IO"),
    Preset.UINT8_IO: PresetSpec(True, True, _INT8_ONLY, io_type="uint8",
                                summary="int8 inside, uint8 model input and output"),
}
