"""quantkit: a post-training quantization toolkit with ``tf.lite.TFLiteConverter``'s API.

    conv = quantkit.TFLiteConverter.from_keras_model(model)
    tflite_bytes = conv.convert()
"""

import os as _os

# TF's C++ logging is not quantkit's output; users who want it can set the variable first.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from quantkit._tf_import import import_tensorflow as _import_tensorflow  # noqa: E402

_import_tensorflow()  # without the native banner TF prints whatever the log level

from calibration import CalibrationStats, ObserverKind  # noqa: E402
from quantkit import datasets, litert  # noqa: E402
from quantkit.calibrate import CalibrationOptions  # noqa: E402
from quantkit.presets import Preset  # noqa: E402
from quantkit.converter import RepresentativeDataset, TargetSpec, TFLiteConverter  # noqa: E402
from quantkit.types import (ConversionError, Granularity, NotYetSupportedError,  # noqa: E402
                            Optimize, OpsSet)
from quantkit import bench  # noqa: E402
from quantkit.bench import benchmark  # noqa: E402

from quantkit._version import __version__  # noqa: E402

__all__ = ["TFLiteConverter", "TargetSpec", "RepresentativeDataset", "Optimize", "OpsSet",
           "Granularity", "Preset", "CalibrationOptions", "CalibrationStats", "ObserverKind",
           "datasets", "litert", "bench", "benchmark", "ConversionError", "NotYetSupportedError", "__version__"]
