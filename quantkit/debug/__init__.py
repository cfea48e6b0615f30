"""Find and fix accuracy loss: the quantization debugger, its ranking, accuracy control.

``QuantizationDebugger`` (TF's API) measures each quantized layer against the float model;
``QuantizationDebugger.ranking()`` ranks the layers by the error each adds on its own;
``AccuracyControl`` (``converter.accuracy_control``) promotes the worst layers to int16 or
float until a metric is within budget.
"""

from quantkit.debug.accuracy import AccuracyControl, AccuracyReport, DropType
from quantkit.debug.debugger import QuantizationDebugger, QuantizationDebugOptions
from quantkit.debug.ranking import Ranking, RankRow

__all__ = ["AccuracyControl", "AccuracyReport", "DropType", "QuantizationDebugOptions",
           "QuantizationDebugger", "Ranking", "RankRow"]
