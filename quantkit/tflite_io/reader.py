"""Read a TFLite flatbuffer into plain frozen dataclasses (for tests and ``quantkit inspect``).

Reads quantkit's files and TF's alike. Constant data comes back as read-only numpy views into
the given bytes, so reading a large model copies nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quantkit.tflite_io import schema
from quantkit.tflite_io.options_codec import read_options
from quantkit.types import OpType, QuantParams

_Model = schema.module("Model")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor. ``dtype`` is None for element types numpy lacks (string, int4, ...)."""

    name: str
    tflite_type: int  # the schema's TensorType code
    dtype: np.dtype | None
    shape: tuple[int, ...] | None  # None: no shape stored (unknown rank)
    shape_signature: tuple[int, ...] | None  # None when not stored (static shape)
    buffer: int
    quant: QuantParams | None = None
    data: np.ndarray | None = field(default=None, compare=False, repr=False)

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclass(frozen=True)
class OpInfo:
    """One operator; ``inputs`` holds -1 for an absent optional input."""

    type: OpType
    version: int
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]
    options: Any = None  # the quantkit.ir.options dataclass, when quantkit has one
    options_table: str | None = None  # the schema table name of the options union
    custom_code: str | None = None


@dataclass(frozen=True)
class OpCodeInfo:
    type: OpType
    version: int
    custom_code: str | None = None


@dataclass(frozen=True)
class SubgraphInfo:
    name: str
    tensors: tuple[TensorInfo, ...]
    ops: tuple[OpInfo, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]


@dataclass(frozen=True)
class SignatureInfo:
    key: str
    subgraph_index: int
    inputs: dict[str, int]  # signature name → tensor index
    outputs: dict[str, int]


@dataclass(frozen=True)
class ModelInfo:
    version: int
    description: str
    subgraphs: tuple[SubgraphInfo, ...]
    signatures: tuple[SignatureInfo, ...]
    op_codes: tuple[OpCodeInfo, ...]
    metadata: dict[str, bytes]
    min_runtime_version: str  # "" when the model has none


def read_model(data: bytes) -> ModelInfo:
    """Parse a TFLite model.

    Args:
        data: the flatbuffer bytes (schema v3, identifier ``TFL3``).

    Returns:
        Its subgraphs, signatures, operator codes and metadata.

    Raises:
        ValueError: the bytes are not a TFLite model.
    """
    data = bytes(data)
    if len(data) < 8 or not _Model.Model.ModelBufferHasIdentifier(data, 0):
        raise ValueError("not a TFLite model: file identifier TFL3 missing")
    model = _Model.Model.GetRootAs(data, 0)
    buffers = [model.Buffers(i) for i in range(model.BuffersLength())]
    op_codes = tuple(_op_code(model.OperatorCodes(i)) for i in range(model.OperatorCodesLength()))
    metadata = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        metadata[entry.Name().decode()] = bytes(_buffer_bytes(buffers[entry.Buffer()]))
    runtime = metadata.get(schema.MIN_RUNTIME_METADATA, b"").rstrip(b"\0").decode()
    return ModelInfo(
        version=model.Version(),
        description=(model.Description() or b"").decode(),
        subgraphs=tuple(
            _subgraph(model.Subgraphs(i), buffers, op_codes) for i in range(model.SubgraphsLength())
        ),
        signatures=tuple(
            _signature(model.SignatureDefs(i)) for i in range(model.SignatureDefsLength())
        ),
        op_codes=op_codes,
        metadata=metadata,
        min_runtime_version=runtime,
    )


def op_types(data: bytes) -> list[str]:
    """Op type names of the first subgraph, in execution order (e.g. ``["CONV_2D", "ADD"]``)."""
    return [op.type.name for op in read_model(data).subgraphs[0].ops]


def _op_code(code: Any) -> OpCodeInfo:
    # The builtin code is the larger of the two fields (deprecated one holds ≤ 127).
    builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
    custom = code.CustomCode()
    return OpCodeInfo(OpType(builtin), code.Version(), custom.decode() if custom else None)


def _buffer_bytes(buffer: Any) -> np.ndarray:
    if buffer is None or buffer.DataIsNone():
        return np.zeros(0, np.uint8)
    return buffer.DataAsNumpy()


def _subgraph(sg: Any, buffers: list[Any], op_codes: tuple[OpCodeInfo, ...]) -> SubgraphInfo:
    return SubgraphInfo(
        name=(sg.Name() or b"").decode(),
        tensors=tuple(_tensor(sg.Tensors(i), buffers) for i in range(sg.TensorsLength())),
        ops=tuple(_op(sg.Operators(i), op_codes) for i in range(sg.OperatorsLength())),
        inputs=tuple(int(i) for i in _ints(sg, "Inputs")),
        outputs=tuple(int(i) for i in _ints(sg, "Outputs")),
    )


def _ints(table: Any, name: str) -> np.ndarray:
    if getattr(table, f"{name}IsNone")():
        return np.zeros(0, np.int32)
    return getattr(table, f"{name}AsNumpy")()


def _tensor(t: Any, buffers: list[Any]) -> TensorInfo:
    dtype = schema.TFLITE_TO_NUMPY.get(t.Type())
    shape = None if t.ShapeIsNone() else tuple(int(d) for d in _ints(t, "Shape"))
    signature = None
    if not t.ShapeSignatureIsNone():
        signature = tuple(int(d) for d in _ints(t, "ShapeSignature"))
    raw = _buffer_bytes(buffers[t.Buffer()]) if t.Buffer() < len(buffers) else np.zeros(0, np.uint8)
    data = None
    if raw.size:
        data = raw if dtype is None else raw.view(dtype)
        if dtype is not None and shape is not None and data.size == int(np.prod(shape)):
            data = data.reshape(shape)
    return TensorInfo(
        name=(t.Name() or b"").decode(),
        tflite_type=t.Type(),
        dtype=dtype,
        shape=shape,
        shape_signature=signature,
        buffer=t.Buffer(),
        quant=_quant(t.Quantization()),
        data=data,
    )


def _quant(q: Any) -> QuantParams | None:
    """Affine parameters; None when absent or empty (TF writes an empty table for float tensors).

    ``axis`` is the quantized dimension when there is more than one scale or it is nonzero, so a
    per-tensor tensor (written with dimension 0) reads back with ``axis=None``.
    """
    if q is None or q.ScaleIsNone() or q.ScaleLength() == 0:
        return None
    scales = tuple(float(s) for s in q.ScaleAsNumpy())
    zero_points = tuple(int(z) for z in q.ZeroPointAsNumpy()) if not q.ZeroPointIsNone() else ()
    dim = q.QuantizedDimension()
    axis = dim if len(scales) > 1 or dim != 0 else None
    return QuantParams(scales, zero_points, axis)


def _op(op: Any, op_codes: tuple[OpCodeInfo, ...]) -> OpInfo:
    code = op_codes[op.OpcodeIndex()]
    options_type = op.BuiltinOptionsType()
    return OpInfo(
        type=code.type,
        version=code.version,
        inputs=tuple(int(i) for i in _ints(op, "Inputs")),
        outputs=tuple(int(i) for i in _ints(op, "Outputs")),
        options=read_options(options_type, op.BuiltinOptions()),
        options_table=schema.OPTIONS_NAMES.get(options_type) if options_type else None,
        custom_code=code.custom_code,
    )


def _signature(sig: Any) -> SignatureInfo:
    def tensor_maps(name: str) -> dict[str, int]:
        n = getattr(sig, f"{name}Length")()
        maps = [getattr(sig, name)(i) for i in range(n)]
        return {m.Name().decode(): m.TensorIndex() for m in maps}

    return SignatureInfo(
        key=(sig.SignatureKey() or b"").decode(),
        subgraph_index=sig.SubgraphIndex(),
        inputs=tensor_maps("Inputs"),
        outputs=tensor_maps("Outputs"),
    )
