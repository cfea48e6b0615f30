"""What the writer and the reader share about the TFLite schema binding (the ``tflite`` package).

The package's ``__init__`` star-imports every generated module, so ``tflite.Model`` is the
*class*; the generated builder functions (``ModelStart``, ``ModelAddVersion``, ...) live in the
*module* ``tflite.Model``, which ``module()`` returns.
"""

from __future__ import annotations

import functools
import importlib
from types import ModuleType

import numpy as np
from tflite.BuiltinOperator import BuiltinOperator
from tflite.BuiltinOptions import BuiltinOptions
from tflite.TensorType import TensorType as SchemaTensorType

from quantkit.types import NUMPY_TENSOR_TYPES, TensorType, schema_enum_members

FILE_IDENTIFIER = b"TFL3"
SCHEMA_VERSION = 3
MIN_RUNTIME_METADATA = "min_runtime_version"
MIN_RUNTIME_BYTES = 16  # TF writes the version string NUL-padded into a 16-byte buffer
CONST_ALIGNMENT = 16  # constant buffers start on 16-byte boundaries (mmap-friendly, as TF)
# Builtin codes above 127 do not fit the int8 `deprecated_builtin_code`; they store this.
PLACEHOLDER_FOR_GREATER_OP_CODES = BuiltinOperator.PLACEHOLDER_FOR_GREATER_OP_CODES

# Element types quantkit writes.
NUMPY_TO_TFLITE: dict[np.dtype, TensorType] = NUMPY_TENSOR_TYPES

# Element types the reader turns into numpy dtypes (it reads what TF writes, too).
TFLITE_TO_NUMPY: dict[int, np.dtype] = {
    **{int(t): d for d, t in NUMPY_TO_TFLITE.items()},
    SchemaTensorType.FLOAT64: np.dtype(np.float64),
    SchemaTensorType.COMPLEX64: np.dtype(np.complex64),
    SchemaTensorType.COMPLEX128: np.dtype(np.complex128),
    SchemaTensorType.UINT16: np.dtype(np.uint16),
    SchemaTensorType.UINT32: np.dtype(np.uint32),
    SchemaTensorType.UINT64: np.dtype(np.uint64),
}


# Every element type of the schema, code → name (STRING, INT4, ... included).
TENSOR_TYPE_NAMES: dict[int, str] = {v: k for k, v in schema_enum_members(SchemaTensorType).items()}

# Union member name (= options table name) ↔ BuiltinOptions code.
OPTIONS_CODES: dict[str, int] = schema_enum_members(BuiltinOptions)
OPTIONS_NAMES: dict[int, str] = {v: k for k, v in OPTIONS_CODES.items()}


@functools.cache
def module(table: str) -> ModuleType | None:
    """The generated module of schema table ``table`` (e.g. ``"Conv2DOptions"``); None if none."""
    if not table.isidentifier():
        return None
    try:
        return importlib.import_module(f"tflite.{table}")
    except ModuleNotFoundError:
        return None


def camel(snake: str) -> str:
    """Field name → generated accessor name: ``dilation_w_factor`` → ``DilationWFactor``."""
    return "".join(part[:1].upper() + part[1:] for part in snake.split("_"))
