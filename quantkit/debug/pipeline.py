"""One calibration, many quantizations: the converter's stages, reused by the debugger.

The debugger and accuracy control quantize one model many times (with TF's denylists, or with
layers promoted to int16 or float), always from the same float graphs and the same calibration
statistics. ``Conversion`` captures and calibrates once through the converter's own stages, then
quantizes any recipe on top of the converter's and writes it as ``convert()`` would.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from calibration import CalibrationStats
from quantkit.ir.graph import Graph
from quantkit.quantize.plan import recurrent_int16
from quantkit.quantize.schemes import SCHEMES
from quantkit.recipe import Recipe, Settings
from quantkit.types import ConversionError, ConversionMode, Phase, QuantMode, TensorType

# The activation type of each calibrated mode: TF's `fully_quantize` gives the IO this type.
_ACTIVATION_IO = {QuantMode.FULL_INTEGER: TensorType.INT8, QuantMode.INT16X8: TensorType.INT16,
                  QuantMode.LEGACY_UINT8: TensorType.UINT8}


@dataclass
class Conversion:
    """A converter's float graphs and calibration, ready to be quantized with any recipe."""

    converter: Any
    mode: ConversionMode
    float_graphs: list[Graph]
    stats: CalibrationStats

    @classmethod
    def of(cls, converter: Any, fully_quantize: bool = False) -> "Conversion":
        """Capture and calibrate ``converter``'s model (a calibrated integer mode)."""
        if not converter.optimizations:
            raise ConversionError(Phase.OPTIONS, "debugging and accuracy control need a "
                                  "quantizing converter: set `optimizations=[Optimize.DEFAULT]`")
        if converter.representative_dataset is None:
            raise ConversionError(Phase.OPTIONS, "debugging and accuracy control need the "
                                  "converter's `representative_dataset`")
        mode = converter.resolve_mode()
        if mode.quant not in SCHEMES:
            raise ConversionError(Phase.OPTIONS, "debugging and accuracy control compare "
                                  f"integer models; this converter's mode is {mode.quant.value}")
        graphs = converter._float_graphs()
        stats = converter.calibration_statistics or converter._calibrate(
            graphs, converter.recipe.resolve(graphs, Settings()))
        return cls(converter, mode, graphs, stats).fully_quantized(fully_quantize)

    def fully_quantized(self, fully_quantize: bool) -> "Conversion":
        """The same conversion with the converter's IO types (False), or float IO made
        integer (TF's `fully_quantize`: the activations' type)."""
        mode = self.converter.resolve_mode()
        if fully_quantize:
            io = _ACTIVATION_IO[mode.quant]
            mode = dataclasses.replace(
                mode, input_type=io if mode.input_type is TensorType.FLOAT32 else mode.input_type,
                output_type=io if mode.output_type is TensorType.FLOAT32 else mode.output_type)
        return dataclasses.replace(self, mode=mode)

    def quantize(self, extra: Recipe = Recipe()) -> list[Graph]:
        """The quantized graphs: the converter's recipe, then ``extra``'s rules."""
        recipe = Recipe(tuple(self.converter.recipe.rules) + tuple(extra.rules))
        settings = recurrent_int16(self.float_graphs,
                                   recipe.resolve(self.float_graphs, Settings()), self.mode)
        saved = self.converter.calibration_statistics
        self.converter.calibration_statistics = self.stats  # reused, not recalibrated
        try:
            return self.converter._quantize_integer(self.float_graphs, self.mode, settings)
        finally:
            self.converter.calibration_statistics = saved

    def write(self, graphs: list[Graph]) -> bytes:
        """``graphs`` as ``convert()`` writes them (description and metadata)."""
        return self.converter._write(graphs, self.mode)

    def float_model(self) -> bytes:
        return self.converter._write(self.float_graphs,
                                     dataclasses.replace(self.mode, quant=QuantMode.FLOAT32))
