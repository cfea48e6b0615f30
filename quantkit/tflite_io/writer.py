"""Serialize IR graphs to a TFLite flatbuffer (schema v3, file identifier ``TFL3``).

Flatbuffer indices (tensors, buffers, operator codes) are assigned here and nowhere else.
Buffer 0 is the empty sentinel and every activation points at it; constants with the same bytes
share one buffer, its data 16-byte aligned in the file; metadata buffers come last. All tables are
built with the generated functions of the ``tflite`` package, never with slot numbers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import flatbuffers
import numpy as np

from quantkit.ir.graph import Graph, Op, Tensor, subgraphs
from quantkit.tflite_io import schema
from quantkit.tflite_io.options_codec import check_options, write_options
from quantkit.tflite_io.versions import is_int16x8_model, min_runtime_version, op_version
from quantkit.types import ConversionError, OpType, Phase, TensorType

_Buffer = schema.module("Buffer")
_Metadata = schema.module("Metadata")
_Model = schema.module("Model")
_Operator = schema.module("Operator")
_OperatorCode = schema.module("OperatorCode")
_Quant = schema.module("QuantizationParameters")
_SignatureDef = schema.module("SignatureDef")
_SubGraph = schema.module("SubGraph")
_Tensor = schema.module("Tensor")
_TensorMap = schema.module("TensorMap")

# The Python flatbuffers builder cannot address more than 2 GiB.
_MAX_MODEL_BYTES = flatbuffers.Builder.MAX_BUFFER_SIZE - (1 << 20)


def _error(message: str) -> ConversionError:
    return ConversionError(Phase.WRITING, message)


class _OpCode(NamedTuple):
    type: OpType
    custom_code: str | None
    version: int


@dataclass
class _Plan:
    """Every index the file needs, decided before anything is built."""

    payloads: list[memoryview] = field(default_factory=lambda: [memoryview(b"")])
    const_buffer: dict[Tensor, int] = field(default_factory=dict)  # by identity (eq=False)
    op_codes: dict[_OpCode, int] = field(default_factory=dict)  # insertion order = first use
    op_code_of: dict[Op, int] = field(default_factory=dict)
    # the signature graphs first, then those ops' options reference (loop bodies)
    subgraph_index: dict[Graph, int] = field(default_factory=dict)


def write_model(
    graphs: list[Graph], *, description: str = "quantkit", metadata: dict[str, bytes] | None = None
) -> bytes:
    """Serialize IR subgraphs to TFLite flatbuffer bytes.

    Args:
        graphs: one Graph per signature; subgraph ``i`` gets the SignatureDef keyed
            ``graphs[i].signature_key``. The graphs their ops' options reference (a WHILE's
            condition and body) follow them, each once (``ir.graph.subgraphs``).
        description: the model's description string.
        metadata: extra metadata entries (name → bytes), each in its own buffer, after
            ``min_runtime_version`` which is always written.

    Returns:
        The model; the same graphs always give the same bytes.

    Raises:
        ConversionError: (phase WRITING) naming the op or tensor that cannot be written: an
            element type TFLite lacks, options with no schema table, an op with no version rule,
            bad quantization parameters, mismatched signature names, ...
    """
    if not graphs:
        raise _error("no subgraphs to write")
    _check_signature_keys(graphs)
    plan = _plan(graphs)
    entries = _metadata_entries(plan, metadata)
    payloads = plan.payloads + [payload for _, payload in entries]
    size_hint = sum(p.nbytes + schema.CONST_ALIGNMENT for p in payloads) + (1 << 16)
    if size_hint > _MAX_MODEL_BYTES:
        raise _error(f"model needs {size_hint} bytes; flatbuffers cannot address more than 2 GiB")

    b = flatbuffers.Builder(size_hint)
    buffers = [_write_buffer(b, p) for p in payloads]
    written, signatures = [], []
    for i, g in enumerate(plan.subgraph_index):
        index = {t: k for k, t in enumerate(g.tensors())}
        written.append(_write_subgraph(b, g, index, plan))
        if i < len(graphs):
            signatures.append(_write_signature(b, g, i, index))
    op_codes = [_write_op_code(b, key) for key in plan.op_codes]
    first_meta = len(plan.payloads)
    metas = [_write_metadata(b, name, first_meta + k) for k, (name, _) in enumerate(entries)]

    desc = b.CreateString(description)
    op_codes_vec = _offsets(b, _Model.ModelStartOperatorCodesVector, op_codes)
    subgraphs_vec = _offsets(b, _Model.ModelStartSubgraphsVector, written)
    buffers_vec = _offsets(b, _Model.ModelStartBuffersVector, buffers)
    metadata_vec = _offsets(b, _Model.ModelStartMetadataVector, metas)
    signatures_vec = _offsets(b, _Model.ModelStartSignatureDefsVector, signatures)
    _Model.ModelStart(b)
    _Model.ModelAddVersion(b, schema.SCHEMA_VERSION)
    _Model.ModelAddOperatorCodes(b, op_codes_vec)
    _Model.ModelAddSubgraphs(b, subgraphs_vec)
    _Model.ModelAddDescription(b, desc)
    _Model.ModelAddBuffers(b, buffers_vec)
    _Model.ModelAddMetadata(b, metadata_vec)
    _Model.ModelAddSignatureDefs(b, signatures_vec)
    b.Finish(_Model.ModelEnd(b), file_identifier=schema.FILE_IDENTIFIER)
    # One copy out of the builder (Output() slices a bytearray, bytes() would copy it again).
    return memoryview(b.Bytes)[b.Head() :].tobytes()


# --- planning --------------------------------------------------------------------------------


def _plan(graphs: list[Graph]) -> _Plan:
    plan = _Plan()
    by_content: dict[tuple[int, bytes], list[int]] = {}  # (size, digest) → buffer indices
    plan.subgraph_index = {g: k for k, g in enumerate(subgraphs(graphs))}
    int16x8 = is_int16x8_model(op for g in plan.subgraph_index for op in g.ops)
    for g in plan.subgraph_index:
        for t in g.tensors():
            if t.is_const and t not in plan.const_buffer:
                plan.const_buffer[t] = _buffer_for(plan, by_content, _const_bytes(t))
        for op in g.ops:
            check_options(op.type, op.options, f"{op.type.name} op {op.name!r}")
            key = _OpCode(op.type, _custom_code(op), op_version(op, int16x8))
            plan.op_code_of[op] = plan.op_codes.setdefault(key, len(plan.op_codes))
    return plan


def _buffer_for(plan: _Plan, by_content: dict, payload: memoryview) -> int:
    """The buffer holding exactly ``payload``'s bytes, shared by every constant with the same
    bytes (as TF's converter shares them: zero biases, repeated axes and shapes)."""
    key = (payload.nbytes, hashlib.blake2b(payload, digest_size=16).digest())
    for index in by_content.get(key, []):
        if plan.payloads[index] == payload:
            return index
    by_content.setdefault(key, []).append(len(plan.payloads))
    plan.payloads.append(payload)
    return len(plan.payloads) - 1


def _metadata_entries(plan: _Plan, extra: dict[str, bytes] | None) -> list[tuple[str, memoryview]]:
    """``min_runtime_version`` (16 bytes, NUL-padded, as TF writes it) then the caller's."""
    runtime = min_runtime_version((key.type, key.version) for key in plan.op_codes)
    encoded = runtime.encode()
    if len(encoded) >= schema.MIN_RUNTIME_BYTES:
        raise _error(f"min_runtime_version {runtime!r} does not fit in 16 bytes")
    padded = encoded.ljust(schema.MIN_RUNTIME_BYTES, b"\0")
    entries = [(schema.MIN_RUNTIME_METADATA, memoryview(padded))]
    for name, value in (extra or {}).items():
        if name == schema.MIN_RUNTIME_METADATA:
            raise _error(f"metadata name {name!r} is reserved; the writer computes it")
        entries.append((name, memoryview(bytes(value))))
    return entries


def _custom_code(op: Op) -> str | None:
    if op.type == OpType.CUSTOM:
        if not op.custom_code:
            raise _error(f"CUSTOM op {op.name!r} has no custom_code")
        return op.custom_code
    if op.custom_code is not None:
        raise _error(f"{op.type.name} op {op.name!r} is a builtin but has custom_code set")
    return None


def _tensor_type(t: Tensor) -> TensorType:
    ttype = schema.NUMPY_TO_TFLITE.get(np.dtype(t.dtype))
    if ttype is None:
        supported = ", ".join(d.name for d in schema.NUMPY_TO_TFLITE)
        raise _error(
            f"tensor {t.name!r} has dtype {np.dtype(t.dtype).name}; quantkit writes {supported}"
        )
    return ttype


def _const_bytes(t: Tensor) -> memoryview:
    """The constant's data as little-endian bytes (a view when no conversion is needed)."""
    _tensor_type(t)
    data = np.asarray(t.data)
    if data.dtype != np.dtype(t.dtype):
        raise _error(
            f"constant {t.name!r}: data is {data.dtype}, the tensor says {np.dtype(t.dtype)}"
        )
    if t.static_shape and data.shape != tuple(t.shape):
        raise _error(f"constant {t.name!r}: data shape {data.shape} != tensor shape {t.shape}")
    little = np.ascontiguousarray(data, dtype=data.dtype.newbyteorder("<"))
    return memoryview(little.reshape(-1).view(np.uint8))


def _check_signature_keys(graphs: list[Graph]) -> None:
    keys = [g.signature_key for g in graphs]
    duplicates = sorted({k for k in keys if keys.count(k) > 1})
    if duplicates:
        raise _error(f"signature keys must be unique across subgraphs; repeated: {duplicates}")


def _signature_names(g: Graph, names: list[str], tensors: list[Tensor], what: str) -> list[str]:
    """Signature names for ``tensors``; the tensor names when the graph gives none."""
    names = names or [t.name for t in tensors]
    if len(names) != len(tensors):
        raise _error(
            f"graph {g.name!r}: {len(names)} signature {what} names for {len(tensors)} {what}s"
        )
    if len(set(names)) != len(names):
        raise _error(f"graph {g.name!r}: repeated signature {what} names {names}")
    return names


# --- building --------------------------------------------------------------------------------


def _offsets(b: flatbuffers.Builder, start: Callable, offsets: list[int]) -> int:
    start(b, len(offsets))
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _scalars(b: flatbuffers.Builder, values: list[Any], dtype: type) -> int:
    """A vector of scalars, copied in one slice (a per-channel scale vector of a large conv
    has thousands: prepending them one by one took a third of a MobileNetV2 conversion)."""
    return b.CreateNumpyVector(np.asarray(values, dtype=dtype))


def _write_buffer(b: flatbuffers.Builder, payload: memoryview) -> int:
    """A Buffer table; its data (if any) is copied in one slice, 16-byte aligned."""
    if payload.nbytes == 0:  # the sentinel (and zero-size constants): no data vector
        _Buffer.BufferStart(b)
        return _Buffer.BufferEnd(b)
    n = payload.nbytes
    b.StartVector(1, n, schema.CONST_ALIGNMENT)
    # One bulk copy: the builder grows downwards, so the data goes just below the head.
    b.head -= n
    b.Bytes[b.head : b.head + n] = payload
    data = b.EndVector()
    _Buffer.BufferStart(b)
    _Buffer.BufferAddData(b, data)
    return _Buffer.BufferEnd(b)


def _write_subgraph(b: flatbuffers.Builder, g: Graph, index: dict[Tensor, int], plan: _Plan) -> int:
    tensors = [_write_tensor(b, t, plan.const_buffer.get(t, 0)) for t in index]
    operators = [_write_operator(b, op, index, plan) for op in g.ops]
    name = b.CreateString(g.name)
    tensors_vec = _offsets(b, _SubGraph.SubGraphStartTensorsVector, tensors)
    inputs_vec = _scalars(b, [index[t] for t in g.inputs], np.int32)
    outputs_vec = _scalars(b, [index[t] for t in g.outputs], np.int32)
    operators_vec = _offsets(b, _SubGraph.SubGraphStartOperatorsVector, operators)
    _SubGraph.SubGraphStart(b)
    _SubGraph.SubGraphAddTensors(b, tensors_vec)
    _SubGraph.SubGraphAddInputs(b, inputs_vec)
    _SubGraph.SubGraphAddOutputs(b, outputs_vec)
    _SubGraph.SubGraphAddOperators(b, operators_vec)
    _SubGraph.SubGraphAddName(b, name)
    return _SubGraph.SubGraphEnd(b)


def _checked_dims(t: Tensor) -> list[int | None]:
    dims = list(t.shape or ())
    if any(d is not None and (not isinstance(d, (int, np.integer)) or d < 0) for d in dims):
        raise _error(f"tensor {t.name!r} has an invalid shape {t.shape}")
    return dims


def _write_tensor(b: flatbuffers.Builder, t: Tensor, buffer: int) -> int:
    ttype = _tensor_type(t)
    name = b.CreateString(t.name)
    shape = signature = quant = None
    if t.shape is not None:  # unknown rank: no shape at all, has_rank false
        dims = _checked_dims(t)
        shape = _scalars(b, [1 if d is None else int(d) for d in dims], np.int32)
        if None in dims:  # as TF: shape_signature only for dynamic shapes
            signature = _scalars(b, [-1 if d is None else int(d) for d in dims], np.int32)
    if t.quant is not None:
        quant = _write_quant(b, t)
    _Tensor.TensorStart(b)
    _Tensor.TensorAddName(b, name)
    _Tensor.TensorAddType(b, int(ttype))
    _Tensor.TensorAddBuffer(b, buffer)
    if shape is not None:
        _Tensor.TensorAddShape(b, shape)
        _Tensor.TensorAddHasRank(b, True)
    if signature is not None:
        _Tensor.TensorAddShapeSignature(b, signature)
    if quant is not None:
        _Tensor.TensorAddQuantization(b, quant)
    if t.is_variable:
        _Tensor.TensorAddIsVariable(b, True)
    return _Tensor.TensorEnd(b)


def _write_quant(b: flatbuffers.Builder, t: Tensor) -> int:
    q = t.quant
    if not q.scales or len(q.scales) != len(q.zero_points):
        raise _error(
            f"tensor {t.name!r}: {len(q.scales)} scales and {len(q.zero_points)} zero points"
        )
    if q.axis is not None:
        dims = list(t.shape or ())
        if not 0 <= q.axis < len(dims) or dims[q.axis] not in (None, len(q.scales)):
            raise _error(
                f"tensor {t.name!r} shape {t.shape}: quantization axis {q.axis} "
                f"does not fit {len(q.scales)} scales"
            )
    scales = _scalars(b, [float(s) for s in q.scales], np.float32)
    zero_points = _scalars(b, [int(z) for z in q.zero_points], np.int64)
    _Quant.QuantizationParametersStart(b)
    _Quant.QuantizationParametersAddScale(b, scales)
    _Quant.QuantizationParametersAddZeroPoint(b, zero_points)
    _Quant.QuantizationParametersAddQuantizedDimension(b, q.axis or 0)
    return _Quant.QuantizationParametersEnd(b)


def _write_operator(b: flatbuffers.Builder, op: Op, index: dict[Tensor, int], plan: _Plan) -> int:
    opcode = plan.op_code_of[op]
    options = None
    if op.options is not None:
        options = write_options(b, op.options, f"{op.type.name} op {op.name!r}",
                                plan.subgraph_index)
    inputs = [-1 if t is None else index[t] for t in op.inputs]  # -1: absent optional input
    inputs_vec = _scalars(b, inputs, np.int32)
    outputs = [index[t] for t in op.outputs]
    outputs_vec = _scalars(b, outputs, np.int32)
    custom = None if op.custom_options is None else b.CreateByteVector(op.custom_options)
    intermediates = None
    if op.intermediates:
        intermediates = _scalars(b, [index[t] for t in op.intermediates], np.int32)
    _Operator.OperatorStart(b)
    _Operator.OperatorAddOpcodeIndex(b, opcode)
    _Operator.OperatorAddInputs(b, inputs_vec)
    _Operator.OperatorAddOutputs(b, outputs_vec)
    if options is not None:
        _Operator.OperatorAddBuiltinOptionsType(b, options[0])
        _Operator.OperatorAddBuiltinOptions(b, options[1])
    if custom is not None:  # a custom op's options, kept as read (a .tflite's custom ops)
        _Operator.OperatorAddCustomOptions(b, custom)
    if intermediates is not None:
        _Operator.OperatorAddIntermediates(b, intermediates)
    return _Operator.OperatorEnd(b)


def _write_op_code(b: flatbuffers.Builder, key: _OpCode) -> int:
    custom = b.CreateString(key.custom_code) if key.custom_code is not None else None
    code = int(key.type)
    _OperatorCode.OperatorCodeStart(b)
    # Readers take max(deprecated_builtin_code, builtin_code); codes > 127 need the placeholder.
    deprecated = min(code, schema.PLACEHOLDER_FOR_GREATER_OP_CODES)
    _OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, deprecated)
    _OperatorCode.OperatorCodeAddBuiltinCode(b, code)
    _OperatorCode.OperatorCodeAddVersion(b, key.version)
    if custom is not None:
        _OperatorCode.OperatorCodeAddCustomCode(b, custom)
    return _OperatorCode.OperatorCodeEnd(b)


def _write_tensor_map(b: flatbuffers.Builder, name: str, tensor_index: int) -> int:
    name_off = b.CreateString(name)
    _TensorMap.TensorMapStart(b)
    _TensorMap.TensorMapAddName(b, name_off)
    _TensorMap.TensorMapAddTensorIndex(b, tensor_index)
    return _TensorMap.TensorMapEnd(b)


def _write_signature(
    b: flatbuffers.Builder, g: Graph, subgraph: int, index: dict[Tensor, int]
) -> int:
    in_names = _signature_names(g, g.input_names, g.inputs, "input")
    out_names = _signature_names(g, g.output_names, g.outputs, "output")
    inputs = [_write_tensor_map(b, n, index[t]) for n, t in zip(in_names, g.inputs)]
    outputs = [_write_tensor_map(b, n, index[t]) for n, t in zip(out_names, g.outputs)]
    key = b.CreateString(g.signature_key)
    inputs_vec = _offsets(b, _SignatureDef.SignatureDefStartInputsVector, inputs)
    outputs_vec = _offsets(b, _SignatureDef.SignatureDefStartOutputsVector, outputs)
    _SignatureDef.SignatureDefStart(b)
    _SignatureDef.SignatureDefAddInputs(b, inputs_vec)
    _SignatureDef.SignatureDefAddOutputs(b, outputs_vec)
    _SignatureDef.SignatureDefAddSignatureKey(b, key)
    _SignatureDef.SignatureDefAddSubgraphIndex(b, subgraph)
    return _SignatureDef.SignatureDefEnd(b)


def _write_metadata(b: flatbuffers.Builder, name: str, buffer: int) -> int:
    name_off = b.CreateString(name)
    _Metadata.MetadataStart(b)
    _Metadata.MetadataAddName(b, name_off)
    _Metadata.MetadataAddBuffer(b, buffer)
    return _Metadata.MetadataEnd(b)
