"""A float ``.tflite`` model of any origin → quantkit's IR, one graph per signature.

The IR is TFLite-level already, so each operator becomes one IR op with the options the reader
decoded; what a float model may hold besides is resolved here:

* float16 weights behind DEQUANTIZE (TF's float16 mode) and sparse weights behind DENSIFY
  (``Optimize.EXPERIMENTAL_SPARSITY``) become float32 constants (``densify``);
* without a SignatureDef, subgraph 0 is the model: inputs and outputs by position, named after
  their tensors; with signatures, each one is a graph (two signatures of one subgraph are two
  graphs), its inputs and outputs in the signature's order;
* custom ops are kept (with their options) as float CUSTOM ops when ``allow_custom_ops``;
* a WHILE's condition and body subgraphs become graphs its options hold (as
  ``frontend.tf_while`` lowers a TF loop), their inputs and outputs by position;
* a model that is already quantized (tensors with quantization parameters, QUANTIZE, or integer
  weights behind DEQUANTIZE) is refused, and every op the op table (``quantkit.ops``) lacks is
  listed in one error.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from quantkit.frontend.densify import densify
from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.ops import OPS
from quantkit.tflite_io.checked import MalformedModelError
from quantkit.tflite_io.options_codec import subgraph_fields
from quantkit.tflite_io.reader import ModelInfo, SubgraphInfo, TensorInfo, read_model
from quantkit.types import ConversionError, OpType, Phase

# Ops that only carry a float model's weights in a compact form: resolved into constants.
_WEIGHT_CARRIERS = frozenset({OpType.DEQUANTIZE, OpType.DENSIFY})
# Ops the table knows that a float model cannot hold (they belong to quantized models).
_QUANTIZED_ONLY = frozenset({OpType.QUANTIZE, OpType.DEQUANTIZE})
@dataclass(frozen=True)
class TFLiteSource:
    """A read, checked ``.tflite`` model and what error messages call it."""

    model: ModelInfo
    where: str  # the file's path, or "the given .tflite bytes"


@dataclass(frozen=True)
class _Entry:
    """One graph to build: a subgraph with the signature names of its inputs and outputs."""

    key: str
    subgraph: int
    inputs: dict[int, str]  # tensor index → signature name
    outputs: dict[int, str]


def load(model: Any) -> TFLiteSource:
    """Read and check a ``.tflite`` model given as a path or as bytes.

    Raises:
        ConversionError: (capture) the file is missing or unreadable, or not a well-formed
            TFLite model (naming the file, the field and its byte).
    """
    if isinstance(model, (bytes, bytearray, memoryview)):
        data, where = bytes(model), "the given .tflite bytes"
    elif isinstance(model, (str, os.PathLike)):
        where = os.fspath(model)
        try:
            with open(where, "rb") as f:
                data = f.read()
        except OSError as e:
            raise ConversionError(Phase.CAPTURE, f"{where}: cannot read it "
                                  f"({e.strerror or e})") from None
    else:
        raise ConversionError(Phase.CAPTURE, f"from_tflite takes a path or bytes, not "
                              f"{type(model).__name__}")
    try:
        return TFLiteSource(read_model(data), where)
    except MalformedModelError as e:
        raise ConversionError(Phase.CAPTURE, f"{where}: {e}") from None


def lower_tflite(source: TFLiteSource, allow_custom_ops: bool = False) -> list[Graph]:
    """The IR graphs of ``source``, one per signature (subgraph 0 when it has none).

    Raises:
        ConversionError: (lowering) the model is quantized already, or has ops quantkit does
            not know (all listed), or custom ops without ``allow_custom_ops``.
    """
    model, where = source.model, source.where
    entries = _entries(model)
    used = _reachable(model, [e.subgraph for e in entries], where)
    for i in used:
        _refuse_quantized(model.subgraphs[i], where)
    _refuse_unknown_ops([model.subgraphs[i] for i in used], where, allow_custom_ops)
    # each signature's graphs of its own (passes edit a loop's condition and body in place)
    return [_graph(model.subgraphs[e.subgraph], e, where, _Subgraphs(model, where))
            for e in entries]


def _reachable(model: ModelInfo, roots: list[int], where: str) -> list[int]:
    """``roots`` and every subgraph their ops run (a WHILE's condition and body), each once."""
    found = list(dict.fromkeys(roots))
    for i in found:  # grows while it is read
        sub = model.subgraphs[i]
        for op in sub.ops:
            for field in subgraph_fields(op.options):
                index = getattr(op.options, field, None)
                if not isinstance(index, int) or not 0 < index < len(model.subgraphs):
                    name = sub.tensors[op.outputs[0]].name if op.outputs else "?"
                    raise ConversionError(Phase.LOWERING, f"{where}: {op.type.name} op "
                                          f"{name!r}: its {field} {index!r} is not a "
                                          "subgraph it can run (the model's are 1 to "
                                          f"{len(model.subgraphs) - 1}; 0 is the main one)")
                if index not in found:
                    found.append(index)
    return found


class _Subgraphs:
    """The graphs of the subgraphs ops run, built once each (a WHILE's condition and body:
    inputs and outputs by position, no signature)."""

    def __init__(self, model: ModelInfo, where: str):
        self.model, self.where = model, where
        self.built: dict[int, Graph] = {}
        self.building: set[int] = set()

    def options(self, info: Any) -> Any:
        """``info``'s options with each subgraph index its graph."""
        fields = subgraph_fields(info.options)
        if not fields:
            return info.options
        return dataclasses.replace(info.options, **{f: self.graph(getattr(info.options, f))
                                                    for f in fields})

    def graph(self, index: int) -> Graph:
        if index not in self.built:
            if index in self.building:
                raise ConversionError(Phase.LOWERING, f"{self.where}: subgraph {index} runs "
                                      "itself (a loop within its own body)")
            self.building.add(index)
            sub = self.model.subgraphs[index]
            graph = _graph(sub, _Entry("", index, {}, {}), self.where, self)
            graph.input_names, graph.output_names = [], []  # no signature: by position
            self.built[index] = graph
        return self.built[index]


def model_inputs(source: TFLiteSource) -> list[tuple[str, tuple[int | None, ...], np.dtype]]:
    """The first graph's inputs, as ``lower_tflite`` orders and names them: (name, shape with
    None for a dynamic dim, dtype)."""
    entry = _entries(source.model)[0]
    sub = source.model.subgraphs[entry.subgraph]
    result = []
    for i in _ordered(sub.inputs, entry.inputs):
        t = _tensor(sub.tensors[i], source.where)
        result.append((entry.inputs.get(i, t.name), tuple(t.shape or ()), np.dtype(t.dtype)))
    return result


def _entries(model: ModelInfo) -> list[_Entry]:
    if not model.signatures:  # inputs and outputs by position, named after their tensors
        sub = model.subgraphs[0]
        return [_Entry("serving_default", 0, {i: sub.tensors[i].name for i in sub.inputs},
                       {i: sub.tensors[i].name for i in sub.outputs})]
    return [_Entry(s.key, s.subgraph_index, {i: n for n, i in s.inputs.items()},
                   {i: n for n, i in s.outputs.items()}) for s in model.signatures]


def _refuse_quantized(sub: SubgraphInfo, where: str) -> None:
    """A model with quantization parameters or QUANTIZE ops, or integer weights behind
    DEQUANTIZE (a dynamic-range or weight-only model), is quantized already."""
    quantized = [t for t in sub.tensors if t.quant is not None
                 and t.dtype is not None and t.dtype.kind in "iu"]
    for op in sub.ops:
        if op.type is OpType.QUANTIZE:
            quantized.append(sub.tensors[op.outputs[0]])
        if op.type is OpType.DEQUANTIZE:
            source = sub.tensors[op.inputs[0]]
            if source.dtype != np.float16:
                quantized.append(source)
    if quantized:
        t = quantized[0]
        raise ConversionError(
            Phase.LOWERING, f"{where}: the model is already quantized ({len(quantized)} "
            f"quantized tensor(s), e.g. {t.name!r} of type {t.dtype}); from_tflite takes a "
            "float model")


def _refuse_unknown_ops(subgraphs: list[SubgraphInfo], where: str,
                        allow_custom_ops: bool) -> None:
    unknown, custom = [], []
    for sub in subgraphs:
        for op in sub.ops:
            out = sub.tensors[op.outputs[0]].name if op.outputs else "?"
            if op.type is OpType.CUSTOM:
                if not allow_custom_ops:
                    custom.append(f"  CUSTOM {op.custom_code!r} (output {out!r})")
            elif op.type not in OPS and op.type not in _WEIGHT_CARRIERS:
                unknown.append(f"  {op.type.name} (output {out!r})")
    if not unknown and not custom:
        return
    listed = "\n".join(unknown + custom)
    hint = ("\nSet `allow_custom_ops=True` to keep custom ops (float, your runtime must "
            "provide them)." if custom else "")
    supported = ", ".join(sorted(t.name for t in OPS if t not in _QUANTIZED_ONLY))
    raise ConversionError(
        Phase.LOWERING, f"{where}: {len(unknown) + len(custom)} op(s) quantkit cannot convert:"
        f"\n{listed}{hint}\nSupported builtins: {supported}")


def _graph(sub: SubgraphInfo, entry: _Entry, where: str, nested: _Subgraphs) -> Graph:
    tensors: dict[int, Tensor] = {}

    def tensor(i: int) -> Tensor | None:
        if i < 0:
            return None
        if i not in tensors:
            tensors[i] = _tensor(sub.tensors[i], where)
        return tensors[i]

    ops = []
    for info in sub.ops:
        inputs = [tensor(i) for i in info.inputs]
        if info.type in _WEIGHT_CARRIERS:  # its output becomes a float32 constant
            tensors[info.outputs[0]] = _resolved(info.type, inputs[0], sub.tensors[
                info.outputs[0]], where)
            continue
        outputs = [tensor(i) for i in info.outputs]
        ops.append(Op(info.type, inputs, outputs, nested.options(info), name=outputs[0].name,
                      custom_code=info.custom_code, custom_options=info.custom_options,
                      intermediates=[tensor(i) for i in info.intermediates]))
    graph = Graph(ops=ops, signature_key=entry.key, name=sub.name or "main")
    graph.inputs = [tensor(i) for i in _ordered(sub.inputs, entry.inputs)]
    graph.outputs = [tensor(i) for i in _ordered(sub.outputs, entry.outputs)]
    graph.input_names = [entry.inputs.get(i, sub.tensors[i].name)
                         for i in _ordered(sub.inputs, entry.inputs)]
    graph.output_names = [entry.outputs.get(i, sub.tensors[i].name)
                          for i in _ordered(sub.outputs, entry.outputs)]
    graph.remove_dead_ops()
    return graph


def _ordered(positional: tuple[int, ...], named: dict[int, str]) -> list[int]:
    """The signature's order (the names a signature runner and list samples go by; TF writes
    them sorted), then any tensor of the subgraph it leaves out."""
    return [*named, *(i for i in positional if i not in named)]


def _tensor(info: TensorInfo, where: str) -> Tensor:
    """The IR tensor of a tensor entry (constants copied: the reader's are views of the file;
    sparse ones densified to their ``shape``); ``shape_signature`` (−1: dynamic) wins over
    ``shape``. A variable (a fused RNN's state) stays one, without data."""
    if info.dtype is None:
        raise ConversionError(Phase.LOWERING, f"{where}: tensor {info.name!r} has an element "
                              "type quantkit does not convert")
    dims = info.shape_signature if info.shape_signature is not None else info.shape
    shape = None if dims is None else tuple(None if d < 0 else d for d in dims)
    data = None
    if info.data is not None:
        if info.sparsity is not None:  # the buffer holds the stored values only
            try:
                data = densify(info.data.view(info.dtype), info.shape or (), info.sparsity)
            except ValueError as e:
                raise ConversionError(Phase.LOWERING, f"{where}: sparse tensor "
                                      f"{info.name!r}: {e}") from None
        else:
            data = np.array(info.data)
        shape = data.shape
    # a fused RNN's state (UNIDIRECTIONAL_SEQUENCE_LSTM/RNN) stays a variable tensor
    return Tensor(info.name, info.dtype, shape, data, is_variable=info.is_variable)


def _resolved(op_type: OpType, source: Tensor | None, out: TensorInfo, where: str) -> Tensor:
    """DENSIFY (its input is dense already, see ``_tensor``) or DEQUANTIZE of a float16
    constant, as a constant named after the op's output."""
    if source is None or source.data is None:
        raise ConversionError(Phase.LOWERING, f"{where}: {op_type.name} {out.name!r} of an "
                              "activation (only constant weights can be expanded)")
    data = source.data.astype(np.float32) if op_type is OpType.DEQUANTIZE else source.data
    return Tensor(out.name, data.dtype, data.shape, data)
