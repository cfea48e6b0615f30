"""quantkit: a post-training quantization toolkit with ``tf.lite.TFLiteConverter``'s API.

    conv = quantkit.TFLiteConverter.from_keras_model(model)
    tflite_bytes = conv.convert()

The names below load on first use (PEP 562), so ``import quantkit`` (and the ``quantkit``
command's ``--help``) does not start TensorFlow; the first name that needs it imports TF
without its native start-up banner. Importing quantkit changes no environment variable: set
``TF_CPP_MIN_LOG_LEVEL`` yourself to quiet TF's C++ logging.
"""

from __future__ import annotations

import importlib
from typing import Any

from quantkit._version import __version__

# Public name → the module that defines it.
_EXPORTS: dict[str, str] = {
    "TFLiteConverter": "quantkit.converter",
    "TargetSpec": "quantkit.converter",
    "RepresentativeDataset": "quantkit.converter",
    "Optimize": "quantkit.types",
    "OpsSet": "quantkit.types",
    "Granularity": "quantkit.types",
    "ConversionError": "quantkit.types",
    "NotYetSupportedError": "quantkit.types",
    "Preset": "quantkit.presets",
    "CalibrationOptions": "quantkit.calibrate",
    "CalibrationStats": "calibration",
    "ObserverKind": "calibration",
    "benchmark": "quantkit.bench",
    "Recipe": "quantkit.recipe",
    "Rule": "quantkit.recipe",
    "Select": "quantkit.recipe",
    "Settings": "quantkit.recipe",
    "Precision": "quantkit.recipe",
    "RangeMethod": "quantkit.recipe",
    "WeightRounding": "quantkit.recipe",
    "QuantizationDebugger": "quantkit.debug",
    "QuantizationDebugOptions": "quantkit.debug",
    "AccuracyControl": "quantkit.debug",
    "DropType": "quantkit.debug",
}
# Submodules, and whether they need TF (imported first, without its banner).
_SUBMODULES = {"datasets": False, "litert": False, "bench": True}

__all__ = [*_EXPORTS, *_SUBMODULES, "__version__"]


def __getattr__(name: str) -> Any:
    if name not in _SUBMODULES and name not in _EXPORTS:
        raise AttributeError(f"module 'quantkit' has no attribute {name!r}")
    if _SUBMODULES.get(name, True):
        from quantkit._tf_import import import_tensorflow

        import_tensorflow()  # without the native banner TF prints whatever the log level
    if name in _SUBMODULES:
        value: Any = importlib.import_module(f"quantkit.{name}")
    else:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
