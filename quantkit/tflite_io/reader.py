"""Read a TFLite flatbuffer into plain frozen dataclasses (for tests and ``quantkit inspect``).

Reads quantkit's files and TF's alike. Constant data comes back as read-only numpy views into
the given bytes, so reading a large model copies nothing.

Every file is checked as it is read (``checked.py``: offsets, lengths, alignment, UTF-8; here:
the schema version, tensor, buffer, operator-code and subgraph indices, enum values, buffer
sizes against tensor shapes and against the file, quantization parameters against shapes).
A file that fails raises ``MalformedModelError``, a ``ValueError`` naming the field and its
byte position: ``invalid TFLite model: subgraphs[0].inputs[0] at byte 612: tensor index 99
is out of range (the subgraph has 7 tensors)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from quantkit.tflite_io import schema
from quantkit.tflite_io.checked import MalformedModelError, Table, root
from quantkit.tflite_io.options_codec import options_table, read_options
from quantkit.types import OpType, QuantParams

_TENSOR_TYPES = frozenset(schema.TENSOR_TYPE_NAMES)


@dataclass(frozen=True)
class DimensionInfo:
    """One level of a sparse tensor's traversal: DENSE (all ``dense_size`` indices) or
    SPARSE_CSR (per parent position ``p``, the indices ``indices[segments[p]:segments[p+1]]``)."""

    sparse: bool
    dense_size: int
    segments: np.ndarray | None = field(default=None, compare=False, repr=False)
    indices: np.ndarray | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class SparsityInfo:
    """A sparse constant's layout (the schema's ``SparsityParameters``): its stored values
    are the leaves of a traversal over ``traversal_order`` (the tensor's dims, then block dims,
    which split the dims named by ``block_map``), one ``dims`` level per position."""

    traversal_order: tuple[int, ...]
    block_map: tuple[int, ...]
    dims: tuple[DimensionInfo, ...]


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
    sparsity: SparsityInfo | None = field(default=None, compare=False, repr=False)
    is_variable: bool = False

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
    custom_options: bytes | None = None  # a custom op's own options (flexbuffer), as stored
    intermediates: tuple[int, ...] = ()


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
    """Parse and check a TFLite model.

    Args:
        data: the flatbuffer bytes (schema v3, identifier ``TFL3``).

    Returns:
        Its subgraphs, signatures, operator codes and metadata.

    Raises:
        MalformedModelError: (a ValueError) the bytes are not a well-formed TFLite model; the
            message names the field and its byte position.
    """
    data = bytes(data)
    if len(data) < 8 or data[4:8] != schema.FILE_IDENTIFIER:
        raise MalformedModelError("file identifier", 4, f"{data[4:8]!r}, expected "
                                  f"{schema.FILE_IDENTIFIER!r}: not a TFLite model")
    model = root(data, "Model")
    version = model.scalar("version")
    if version != schema.SCHEMA_VERSION:
        raise model.fail("version", f"schema version {version}; quantkit reads version "
                                    f"{schema.SCHEMA_VERSION}")
    buffers = [_buffer(b, data) for b in model.tables("buffers", "Buffer")]
    op_codes = tuple(_op_code(c) for c in model.tables("operator_codes", "OperatorCode"))
    metadata = _metadata(model, buffers)
    subgraph_tables = model.tables("subgraphs", "SubGraph")
    if not subgraph_tables:
        raise model.fail("subgraphs", "the model has no subgraph")
    subgraphs = tuple(_subgraph(sg, buffers, op_codes) for sg in subgraph_tables)
    return ModelInfo(
        version=version,
        description=model.string("description") or "",
        subgraphs=subgraphs,
        signatures=tuple(_signature(s, subgraphs)
                         for s in model.tables("signature_defs", "SignatureDef")),
        op_codes=op_codes,
        metadata=metadata,
        min_runtime_version=_min_runtime(model, metadata),
    )


def op_types(data: bytes) -> list[str]:
    """Op type names of the first subgraph, in execution order (e.g. ``["CONV_2D", "ADD"]``)."""
    return [op.type.name for op in read_model(data).subgraphs[0].ops]


def _index(table: Table, name: str, count: int, what: str) -> int:
    """An index field that must address one of ``count`` ``what``."""
    value = int(table.scalar(name))
    if not 0 <= value < count:
        raise table.fail(name, f"index {value} is out of range (the model has {count} {what})")
    return value


def _indices(table: Table, name: str, count: int, what: str) -> tuple[int, ...]:
    """A vector of tensor indices, each in ``[0, count)`` or −1 (an absent optional tensor)."""
    values = table.array(name, np.int32)
    if values is None:
        return ()
    bad = np.flatnonzero((values < -1) | (values >= count))
    if bad.size:
        i = int(bad[0])
        raise table.fail(name, f"tensor index {int(values[i])} is out of range ({what} has "
                               f"{count} tensors)", item=i)
    return tuple(int(i) for i in values)


def _buffer(buffer: Table, data: bytes) -> np.ndarray:
    """A buffer's bytes: its ``data`` vector, or ``size`` bytes at file ``offset`` (models over
    2 GB keep constants after the flatbuffer; an offset of 0 or 1 means "none", as LiteRT)."""
    offset, size = buffer.scalar("offset"), buffer.scalar("size")
    if offset > 1:
        if offset + size > len(data):
            raise buffer.fail("offset", f"{size} bytes at byte {offset} lie outside the file "
                                        f"({len(data)} bytes)")
        return np.frombuffer(data, np.uint8, size, offset)
    raw = buffer.array("data", np.uint8)
    return np.zeros(0, np.uint8) if raw is None else raw


def _op_code(code: Table) -> OpCodeInfo:
    # The builtin code is the larger of the two fields (the deprecated one holds ≤ 127).
    builtin = max(code.scalar("builtin_code"), code.scalar("deprecated_builtin_code"))
    try:
        op_type = OpType(builtin)
    except ValueError:
        raise code.fail("builtin_code", f"{builtin} is not a builtin operator of the "
                                        f"schema") from None
    version = code.scalar("version")
    if version < 1:
        raise code.fail("version", f"operator version {version} (≥ 1 expected)")
    custom = code.string("custom_code")
    if op_type == OpType.CUSTOM and not custom:
        raise code.fail("custom_code", "a CUSTOM operator code without its custom_code")
    return OpCodeInfo(op_type, version, custom)


def _metadata(model: Table, buffers: list[np.ndarray]) -> dict[str, bytes]:
    return {entry.string("name") or "": bytes(buffers[_index(entry, "buffer", len(buffers),
                                                             "buffers")])
            for entry in model.tables("metadata", "Metadata")}


def _min_runtime(model: Table, metadata: dict[str, bytes]) -> str:
    try:
        return metadata.get(schema.MIN_RUNTIME_METADATA, b"").rstrip(b"\0").decode("ascii")
    except UnicodeDecodeError:
        raise model.fail("metadata", f"{schema.MIN_RUNTIME_METADATA} is not a version "
                                     f"string") from None


def _subgraph(sg: Table, buffers: list[np.ndarray],
              op_codes: tuple[OpCodeInfo, ...]) -> SubgraphInfo:
    tensors = tuple(_tensor(t, buffers) for t in sg.tables("tensors", "Tensor"))
    n = len(tensors)
    return SubgraphInfo(
        name=sg.string("name") or "",
        tensors=tensors,
        ops=tuple(_op(op, op_codes, n) for op in sg.tables("operators", "Operator")),
        inputs=_indices(sg, "inputs", n, "the subgraph"),
        outputs=_indices(sg, "outputs", n, "the subgraph"),
    )


def _dims(t: Table, name: str) -> tuple[int, ...] | None:
    dims = t.array(name, np.int32)
    if dims is None:
        return None
    bad = np.flatnonzero(dims < -1)
    if bad.size:
        raise t.fail(name, f"dimension {int(dims[bad[0]])} (≥ -1 expected)", item=int(bad[0]))
    return tuple(int(d) for d in dims)


def _tensor(t: Table, buffers: list[np.ndarray]) -> TensorInfo:
    tflite_type = t.scalar("type")
    if tflite_type not in _TENSOR_TYPES:
        raise t.fail("type", f"{tflite_type} is not a tensor type of the schema")
    dtype = schema.TFLITE_TO_NUMPY.get(tflite_type)
    shape = _dims(t, "shape")
    buffer = _index(t, "buffer", len(buffers), "buffers")
    return TensorInfo(
        name=t.string("name") or "",
        tflite_type=tflite_type,
        dtype=dtype,
        shape=shape,
        shape_signature=_dims(t, "shape_signature"),
        buffer=buffer,
        quant=_quant(t.table("quantization", "QuantizationParameters"), shape),
        data=_tensor_data(t, buffers[buffer], dtype, shape),
        sparsity=_sparsity(t.table("sparsity", "SparsityParameters")),
        is_variable=bool(t.scalar("is_variable")),
    )


# SparseIndexVector union member → the element type of its ``values``.
_INDEX_VECTORS = {1: ("Int32Vector", np.int32), 2: ("Uint16Vector", np.uint16),
                  3: ("Uint8Vector", np.uint8)}


def _index_vector(dim: Table, name: str) -> np.ndarray | None:
    kind = dim.scalar(f"{name}_type")
    if not kind:
        return None
    if kind not in _INDEX_VECTORS:
        raise dim.fail(f"{name}_type", f"{kind} is not a SparseIndexVector type")
    table_kind, dtype = _INDEX_VECTORS[kind]
    table = dim.table(name, table_kind)
    values = None if table is None else table.array("values", dtype)
    return np.zeros(0, dtype) if values is None else values.astype(np.int64)


def _sparsity(sp: Table | None) -> SparsityInfo | None:
    """The sparse layout (checked where it is densified, against the tensor's shape)."""
    if sp is None:
        return None

    def ints(name: str) -> tuple[int, ...]:
        values = sp.array(name, np.int32)
        return () if values is None else tuple(int(v) for v in values)

    dims = tuple(DimensionInfo(bool(d.scalar("format")), int(d.scalar("dense_size")),
                               _index_vector(d, "array_segments"),
                               _index_vector(d, "array_indices"))
                 for d in sp.tables("dim_metadata", "DimensionMetadata"))
    return SparsityInfo(ints("traversal_order"), ints("block_map"), dims)


def _tensor_data(t: Table, raw: np.ndarray, dtype: np.dtype | None,
                 shape: tuple[int, ...] | None) -> np.ndarray | None:
    """The constant's values in its dtype and shape; raw bytes for types numpy lacks and for
    sparse tensors (their buffer holds only the stored values)."""
    if not raw.size:
        return None
    if dtype is None or t.has("sparsity"):
        return raw
    if shape is None or min(shape, default=0) < 0:
        if raw.size % dtype.itemsize:
            raise t.fail("buffer", f"{raw.size} bytes are not a whole number of {dtype} values")
        return raw.view(dtype)
    needed = math.prod(shape) * dtype.itemsize
    if raw.size != needed:
        raise t.fail("buffer", f"the buffer holds {raw.size} bytes; a {dtype} tensor of shape "
                               f"{shape} takes {needed}")
    return raw.view(dtype).reshape(shape)


def _quant(q: Table | None, shape: tuple[int, ...] | None) -> QuantParams | None:
    """Affine parameters; None when absent or empty (TF writes an empty table for float tensors).

    ``axis`` is the quantized dimension when there is more than one scale or it is nonzero, so a
    per-tensor tensor (written with dimension 0) reads back with ``axis=None``. Per channel,
    the axis must exist and hold one scale per channel (LiteRT checks the same).
    """
    scales = None if q is None else q.array("scale", np.float32)
    if scales is None or not scales.size:
        return None
    zero_points = q.array("zero_point", np.int64)
    if zero_points is not None and zero_points.size not in (0, scales.size):
        raise q.fail("zero_point", f"{zero_points.size} zero points for {scales.size} scales")
    dim = q.scalar("quantized_dimension")
    rank = None if shape is None else len(shape)
    if dim < 0 or (rank is not None and dim >= max(rank, 1)):
        raise q.fail("quantized_dimension", f"axis {dim} of a tensor of rank {rank}")
    channels = None if shape is None else shape[dim] if dim < len(shape) else 1
    if scales.size > 1 and channels is not None and channels != scales.size:
        raise q.fail("scale", f"{scales.size} scales for {channels} channels (axis {dim} of "
                              f"shape {shape})")
    axis = dim if scales.size > 1 or dim != 0 else None
    return QuantParams(tuple(float(s) for s in scales),
                       () if zero_points is None else tuple(int(z) for z in zero_points), axis)


def _op(op: Table, op_codes: tuple[OpCodeInfo, ...], n_tensors: int) -> OpInfo:
    code = op_codes[_index(op, "opcode_index", len(op_codes), "operator codes")]
    options_type = op.scalar("builtin_options_type")
    table_name = schema.OPTIONS_NAMES.get(options_type) if options_type else None
    if options_type and table_name is None:
        raise op.fail("builtin_options_type", f"{options_type} is not an options table of "
                                              f"the schema")
    expected = options_table(code.type)
    if table_name and expected and table_name != expected:
        raise op.fail("builtin_options_type", f"{table_name} for a {code.type.name} operator, "
                                              f"which reads {expected}")
    table = op.table("builtin_options", table_name) if table_name else None
    return OpInfo(
        type=code.type,
        version=code.version,
        inputs=_indices(op, "inputs", n_tensors, "the subgraph"),
        outputs=_indices(op, "outputs", n_tensors, "the subgraph"),
        options=None if table is None else read_options(options_type, table),
        options_table=table_name,
        custom_code=code.custom_code,
        custom_options=_custom_options(op) if code.type == OpType.CUSTOM else None,
        intermediates=_indices(op, "intermediates", n_tensors, "the subgraph"),
    )


def _custom_options(op: Table) -> bytes | None:
    raw = op.array("custom_options", np.uint8)
    return None if raw is None else bytes(raw)


def _signature(sig: Table, subgraphs: tuple[SubgraphInfo, ...]) -> SignatureInfo:
    index = _index(sig, "subgraph_index", len(subgraphs), "subgraphs")
    n = len(subgraphs[index].tensors)

    def tensor_maps(name: str) -> dict[str, int]:
        return {m.string("name") or "": _index(m, "tensor_index", n,
                                                f"tensors in subgraph {index}")
                for m in sig.tables(name, "TensorMap")}

    return SignatureInfo(
        key=sig.string("signature_key") or "",
        subgraph_index=index,
        inputs=tensor_maps("inputs"),
        outputs=tensor_maps("outputs"),
    )
