"""quantkit.tflite_io.versions: a case per version-table row and per int16x8 rule.

What TF's converter writes for the same ops is checked in ``test_versions_vs_tf.py``; for the
rows it cannot write (its ``NOT_FROM_TF`` says which and why) these cases are the only check.
"""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import quantkit
from quantkit.ir import options as o
from quantkit.ir.graph import Op, Tensor
from quantkit.ops import OPS
from quantkit.ops.conditions import ALWAYS
from quantkit.tflite_io import versions
from quantkit.types import Activation, ConversionError, OpType, Padding, QuantParams, TensorType

SHAPE4 = (1, 4, 4, 8)
RANK5 = (1, 2, 3, 4, 5)


def make_op(op_type: OpType, io: str, options=None, shapes=None, quant=None) -> Op:
    """An op from a type spec such as ``"int8 int8 -> int8"`` (``-``: an absent input).

    Tensors are [1,4,4,8] unless ``shapes`` names them by role (``{"in1": (8, 3, 3, 8)}``); the
    output type defaults to the first input's.
    """
    ins, _, outs = io.partition("->")
    in_types, out_types = ins.split(), outs.split() or [ins.split()[0]]
    shapes, quant = shapes or {}, quant or {}

    def tensor(role: str, dtype: str) -> Tensor | None:
        if dtype == "-":
            return None
        return Tensor(role, np.dtype(dtype), shapes.get(role, SHAPE4), quant=quant.get(role))

    return Op(
        op_type,
        [tensor(f"in{i}", d) for i, d in enumerate(in_types)],
        [tensor(f"out{i}", d) for i, d in enumerate(out_types)],
        options,
        name=f"{op_type.name.lower()}_op",
    )


def per_channel(n: int, axis: int) -> QuantParams:
    return QuantParams(tuple(0.1 * (i + 1) for i in range(n)), (0,) * n, axis)


Q = QuantParams((0.5,), (0,))
BROADCAST_5D = {"in0": RANK5, "in1": (1, 1, 1, 1, 5)}
HYBRID_W = {"in1": (8, 3, 3, 8)}


# UNIDIRECTIONAL_SEQUENCE_LSTM's 24 inputs: input, 8 weights, 3 peepholes, 4 biases,
# projection weights and bias, 2 states, 4 layer norms (absent: "-")
LSTM_FLOAT = "float32 " + "float32 " * 8 + "- " * 3 + "float32 " * 4 + "- - float32 float32" \
    + " -" * 4 + " -> float32"
LSTM_HYBRID = "float32 " + "int8 " * 8 + "- " * 3 + "float32 " * 4 + "- - float32 float32" \
    + " -" * 4 + " -> float32"


def case(op: str, version: int, io: str, label: str = "", **kw):
    return pytest.param(OpType[op], version, io, kw, id=f"{op}-v{version}-{label or io}")


def group(ops: list[str], rows: list[tuple[int, str]]) -> list:
    return [case(op, v, io) for op in ops for v, io in rows]


VERSION_CASES = [
    case("ADD", 6, "float16 float16"),
    case("ADD", 4, "int64 int64"),
    case("ADD", 1, "int16 int16 -> int16", "int16-integer"),  # as TF (op_version.cc: 5)
    case("ADD", 2, "int8 int8"),
    case("ADD", 1, "float32 float32"),
    case("SUB", 4, "int64 int64"),
    case("SUB", 3, "float32 float32", "broadcast-5d", shapes=BROADCAST_5D),
    case("SUB", 2, "int8 int8"),
    case("SUB", 1, "float32 float32"),
    case("MUL", 8, "float16 float16"),
    case("MUL", 5, "int64 int64"),
    case("MUL", 4, "int16 int16", "int16-integer"),  # as TF (op_version.cc: 7)
    case("MUL", 3, "int8 int8 -> int8", "rescale-ge-1",
         quant={"in0": Q, "in1": QuantParams((4.0,), (0,)), "out0": QuantParams((1.0,), (0,))}),
    case("MUL", 2, "int8 int8 -> int8", quant={"in0": Q, "in1": Q, "out0": Q}),
    case("MUL", 1, "float32 float32"),
    case("DIV", 2, "float32 float32", "broadcast-5d", shapes=BROADCAST_5D),
    case("DIV", 1, "float32 float32"),
    case("CONV_2D", 6, "float32 float32 float32", "grouped", shapes={"in1": (8, 3, 3, 4)}),
    case("CONV_2D", 3, "int8 int8 int32 -> int8"),
    case("CONV_2D", 5, "float32 int8 float32 -> float32", "hybrid-per-channel", shapes=HYBRID_W,
         quant={"in1": per_channel(8, 0)}),
    case("CONV_2D", 2, "float32 int8 float32 -> float32", "hybrid", shapes=HYBRID_W,
         quant={"in1": Q}),
    case("CONV_2D", 1, "float32 float32 float32"),
    case("DEPTHWISE_CONV_2D", 6, "float32 int8 float32 -> float32", "hybrid-per-channel",
         quant={"in1": per_channel(8, 3)}),
    case("DEPTHWISE_CONV_2D", 4, "float32 int8 float32 -> float32", "hybrid", quant={"in1": Q}),
    case("DEPTHWISE_CONV_2D", 3, "int8 int8 int32 -> int8", "int8-dilated",
         options=o.DepthwiseConv2DOptions(Padding.SAME, dilation_w_factor=2)),
    case("DEPTHWISE_CONV_2D", 2, "float32 float32 float32", "dilated",
         options=o.DepthwiseConv2DOptions(Padding.SAME, dilation_h_factor=2)),
    case("DEPTHWISE_CONV_2D", 1, "float32 float32 float32",
         options=o.DepthwiseConv2DOptions(Padding.SAME)),
    case("FULLY_CONNECTED", 12, "float32 int8 float32 -> float32", "hybrid-per-channel",
         shapes={"in1": (3, 8)}, quant={"in1": per_channel(3, 0)}),
    case("FULLY_CONNECTED", 5, "float32 float32 -", "keep-num-dims",
         options=o.FullyConnectedOptions(keep_num_dims=True)),
    case("FULLY_CONNECTED", 4, "int8 int8 int32 -> int8"),
    case("FULLY_CONNECTED", 9, "float32 int8 float32 -> float32", "hybrid-asymmetric",
         shapes={"in1": (3, 8)}, quant={"in1": Q},
         options=o.FullyConnectedOptions(asymmetric_quantize_inputs=True)),
    case("FULLY_CONNECTED", 1, "float32 float32 -", "absent-bias"),
    case("TRANSPOSE_CONV", 4, "int32 float32 float32 -> float32", "fused-relu",
         options=o.TransposeConvOptions(Padding.SAME, fused_activation_function=Activation.RELU)),
    case("TRANSPOSE_CONV", 3, "int32 float32 float32 float32 -> float32", "bias"),
    case("TRANSPOSE_CONV", 2, "int32 int8 int8 -> int8"),
    case("TRANSPOSE_CONV", 1, "int32 float32 float32 - -> float32", "absent-bias"),
    *group(["MAX_POOL_2D", "AVERAGE_POOL_2D", "LOGISTIC", "TANH"],
           [(3, "int16 -> int16"), (2, "int8"), (1, "float32")]),
    *group(["MEAN", "REDUCE_MAX", "SOFTMAX", "RELU6", "RSQRT", "CONCATENATION"],
           [(3, "int16"), (2, "int8"), (1, "float32")]),
    *group(["RELU"], [(3, "int16"), (2, "int8"), (2, "uint8"), (1, "float32")]),
    *group(["MAXIMUM", "MINIMUM"], [(4, "int16 int16 -> int16"), (2, "int8 int8"),
                                    (1, "float32 float32")]),
    case("MAXIMUM", 3, "float32 float32", "broadcast-5d", shapes=BROADCAST_5D),
    case("MINIMUM", 3, "float32 float32", "broadcast-5d", shapes=BROADCAST_5D),
    *group(["PAD", "PADV2"], [(5, "bool int32"), (3, "int16 int32"), (2, "int8 int32"),
                              (1, "float32 int32")]),
    case("PAD", 4, "float32 int32", "rank-5", shapes={"in0": RANK5}),
    case("PADV2", 4, "float32 int32", "rank-5", shapes={"in0": RANK5}),
    case("TRANSPOSE", 8, "float32 int32", "rank-7", shapes={"in0": (1,) * 7}),
    case("TRANSPOSE", 6, "float32 int32", "rank-6", shapes={"in0": (1,) * 6}),
    case("TRANSPOSE", 5, "int16 int32"),
    case("TRANSPOSE", 4, "float32 int32", "rank-5", shapes={"in0": RANK5}),
    *group(["TRANSPOSE"], [(3, "bool int32"), (2, "int8 int32"), (1, "float32 int32")]),
    case("STRIDED_SLICE", 6, "float32 int32 int32 int32", "ellipsis",
         options=o.StridedSliceOptions(ellipsis_mask=1)),
    case("STRIDED_SLICE", 6, "float32 int32 int32 int32", "new-axis",
         options=o.StridedSliceOptions(new_axis_mask=2)),
    case("STRIDED_SLICE", 4, "float32 int32 int32 int32", "rank-5", shapes={"in0": RANK5}),
    *group(["STRIDED_SLICE"], [(3, "bool int32 int32 int32"), (2, "int8 int32 int32 int32"),
                               (1, "float32 int32 int32 int32")]),
    case("RESIZE_BILINEAR", 4, "int16 int32"),
    case("RESIZE_BILINEAR", 3, "int8 int32", "half-pixel",
         options=o.ResizeBilinearOptions(half_pixel_centers=True)),
    case("RESIZE_BILINEAR", 2, "int8 int32", options=o.ResizeBilinearOptions()),
    case("RESIZE_BILINEAR", 1, "float32 int32", options=o.ResizeBilinearOptions()),
    case("RESIZE_NEAREST_NEIGHBOR", 4, "int16 int32"),
    case("RESIZE_NEAREST_NEIGHBOR", 3, "float32 int32", "half-pixel",
         options=o.ResizeNearestNeighborOptions(half_pixel_centers=True)),
    case("RESIZE_NEAREST_NEIGHBOR", 3, "int8 int32", "align-corners",
         options=o.ResizeNearestNeighborOptions(align_corners=True)),
    *group(["RESIZE_NEAREST_NEIGHBOR"], [(2, "int8 int32"), (1, "float32 int32")]),
    *group(["LEAKY_RELU"], [(2, "int16"), (1, "int8"), (1, "float32")]),
    *group(["SQRT", "REDUCE_PROD", "EXP"], [(2, "int8"), (2, "int16"), (1, "float32")]),
    *group(["PACK"], [(2, "int8 int8"), (3, "int16 int16 -> int16"), (1, "float32 float32")]),
    *group(["CAST"], [(5, "float16 -> float32"), (5, "float32 -> float16"), (3, "int8 -> float32"),
                      (3, "float32 -> int8"), (1, "float32 -> int32")]),
    case("QUANTIZE", 2, "int16 -> int16", "requantize", quant={"in0": Q, "out0": Q}),
    case("QUANTIZE", 1, "float32 -> int16", quant={"out0": Q}),  # as TF (op_version.cc: 2)
    case("QUANTIZE", 1, "float32 -> int8", quant={"out0": Q}),
    case("QUANTIZE", 1, "int8 -> int8", "requantize", quant={"in0": Q, "out0": Q}),
    case("DEQUANTIZE", 3, "float16 -> float32"),
    case("DEQUANTIZE", 2, "int16 -> float32", quant={"in0": Q}),  # as TF (op_version.cc: 3)
    case("DEQUANTIZE", 2, "int8 -> float32", quant={"in0": Q}),
    case("DEQUANTIZE", 1, "uint8 -> float32"),
    case("GATHER", 6, "float32 int16"),
    case("GATHER", 5, "float32 int32", "batch-dims", options=o.GatherOptions(batch_dims=1)),
    *group(["GATHER"], [(4, "int16 int32"), (3, "bool int32"), (2, "int8 int32"),
                        (1, "float32 int32")]),
    *group(["RESHAPE", "SQUEEZE", "EXPAND_DIMS", "SHAPE", "RELU_N1_TO_1", "PRELU", "HARD_SWISH",
            "CUSTOM", "NEG", "SQUARE"], [(1, "int8"), (1, "float32")]),
    *group(["SUM", "SQUARED_DIFFERENCE", "DEPTH_TO_SPACE"],
           [(2, "int8"), (1, "int16"), (1, "float32")]),
    *group(["BATCH_MATMUL"], [(3, "int16 int16"), (2, "int8 int8"),
                              (1, "float32 int8 -> float32"), (1, "float32 float32")]),
    case("BATCH_MATMUL", 4, "float32 int8 -> float32", "hybrid-asymmetric",
         options=o.BatchMatMulOptions(asymmetric_quantize_inputs=True)),
    *group(["GELU"], [(2, "int8"), (2, "uint8"), (1, "float32")]),
    *group(["TILE"], [(3, "int8 int32"), (1, "float32 int32")]),
    # --- issue #12 ---
    *group(["CONV_3D"], [(1, "float32 float32 float32")]),
    *group(["ELU", "POW", "LOGICAL_AND", "RANGE"], [(1, "float32")]),
    *group(["FILL"], [(3, "int32 int8"), (3, "int32 int16"), (2, "int32 bool"),
                      (1, "int32 float32")]),
    *group(["ABS"], [(3, "int16"), (2, "int8"), (1, "float32")]),
    *group(["LOG"], [(2, "int8"), (2, "int16"), (1, "float32")]),
    *group(["REDUCE_MIN"], [(3, "int16 int32"), (2, "int8 int32"), (1, "float32 int32")]),
    *group(["ARG_MAX", "ARG_MIN"], [(2, "int8 int32 -> int32"), (1, "float32 int32 -> int32")]),
    *group(["SPLIT"], [(3, "int32 int16"), (2, "int32 int8"), (1, "int32 float32")]),
    *group(["UNPACK"], [(4, "int16 -> int16"), (3, "bool"), (2, "int8"), (2, "uint8"),
                        (1, "float32")]),
    *group(["SPLIT_V"], [(3, "int16 int32 int32"), (2, "int8 int32 int32"),
                         (1, "float32 int32 int32")]),
    *group(["LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL", "EQUAL"],
           [(2, "int8 int8 -> bool"), (1, "float32 float32 -> bool")]),
    *group(["SELECT_V2"], [(1, "bool int8 int8 -> int8"), (2, "bool int16 int16 -> int16"),
                           (1, "bool float32 float32 -> float32")]),
    # fused sequence ops (float32 and hybrid: int8 weights, float activations)
    case("UNIDIRECTIONAL_SEQUENCE_RNN", 3, "float32 int8 int8 float32 float32 -> float32",
         "hybrid-asymmetric", options=o.SequenceRNNOptions(asymmetric_quantize_inputs=True)),
    case("UNIDIRECTIONAL_SEQUENCE_RNN", 2, "float32 int8 int8 float32 float32 -> float32",
         "hybrid", options=o.SequenceRNNOptions()),
    case("UNIDIRECTIONAL_SEQUENCE_RNN", 1, "float32 float32 float32 float32 float32",
         options=o.SequenceRNNOptions()),
    case("UNIDIRECTIONAL_SEQUENCE_LSTM", 4, LSTM_FLOAT, "diagonal",
         options=o.UnidirectionalSequenceLSTMOptions(diagonal_recurrent_tensors=True)),
    case("UNIDIRECTIONAL_SEQUENCE_LSTM", 3, LSTM_HYBRID, "hybrid-asymmetric",
         options=o.UnidirectionalSequenceLSTMOptions(asymmetric_quantize_inputs=True)),
    case("UNIDIRECTIONAL_SEQUENCE_LSTM", 2, LSTM_HYBRID, "hybrid",
         options=o.UnidirectionalSequenceLSTMOptions()),
    case("UNIDIRECTIONAL_SEQUENCE_LSTM", 1, LSTM_FLOAT,
         options=o.UnidirectionalSequenceLSTMOptions()),
    case("UNIDIRECTIONAL_SEQUENCE_LSTM", 1, "int8 int8 int8 -> int8", "int8",
         options=o.UnidirectionalSequenceLSTMOptions()),
    # CIFG (no input gate): op_version.cc reads input 2, the input-to-forget weights
    case("UNIDIRECTIONAL_SEQUENCE_LSTM", 2, "float32 - int8 -> float32", "cifg-hybrid",
         options=o.UnidirectionalSequenceLSTMOptions()),
    # loops (frontend.tf_while): the loop variables of a Keras RNN; a list item written
    case("WHILE", 1, "int32 float32 float32 -> int32 float32 float32",
         options=o.WhileOptions(1, 2)),
    case("DYNAMIC_UPDATE_SLICE", 1, "float32 float32 int32"),
]


@pytest.mark.parametrize("op_type, expected, io, kw", VERSION_CASES)
def test_op_version(op_type, expected, io, kw):
    assert versions.op_version(make_op(op_type, io, **kw)) == expected


# In an int16x8 model: max(version of the float form, int16.min_version), as TF's int16x8
# quantizer writes it; types without a minimum keep their rows.
A16 = {"in0": Q, "out0": Q}  # int16 activations
W16 = {"in0": Q, "in1": Q, "in2": Q, "out0": Q}  # and quantized weights and bias
INT16X8_CASES = [
    case("CONV_2D", 3, "int16 int8 int64 -> int16", "minimum", quant=W16),
    case("CONV_2D", 6, "int16 int8 int64 -> int16", "grouped-float-form",
         shapes={"in1": (8, 3, 3, 4)}, quant=W16),
    case("FULLY_CONNECTED", 4, "int16 int8 int64 -> int16", "minimum", quant=W16,
         options=o.FullyConnectedOptions(quantized_bias_type=TensorType.INT64)),
    case("FULLY_CONNECTED", 5, "int16 int8 int64 -> int16", "keep-num-dims-float-form",
         quant=W16, options=o.FullyConnectedOptions(keep_num_dims=True)),
    case("TRANSPOSE_CONV", 3, "int32 int8 int16 -> int16", "minimum",
         quant={"in1": Q, "in2": Q, "out0": Q}, options=o.TransposeConvOptions(Padding.SAME)),
    case("TRANSPOSE_CONV", 4, "int32 int8 int16 int64 -> int16", "fused-relu-float-form",
         quant={"in1": Q, "in2": Q, "in3": Q, "out0": Q},
         options=o.TransposeConvOptions(Padding.SAME, fused_activation_function=Activation.RELU)),
    case("ADD", 2, "int16 int16 -> int16", "minimum", quant=A16,
         options=o.AddOptions(pot_scale_int16=False)),
    case("MUL", 2, "int16 int16 -> int16", "minimum", quant=A16),
    case("LOGISTIC", 2, "int16 -> int16", "minimum", quant=A16),
    case("TILE", 3, "int16 int32 -> int16", "minimum", quant=A16),
    case("RESIZE_BILINEAR", 3, "int16 int32 -> int16", "half-pixel-float-form", quant=A16,
         options=o.ResizeBilinearOptions(half_pixel_centers=True)),
    case("STRIDED_SLICE", 2, "int32 int32 int32 int32", "int32-raised-too"),
    case("PACK", 2, "float32 float32", "float-raised-too"),
    case("RESHAPE", 1, "int16 int32 -> int16", "no-minimum", quant=A16),
    case("NEG", 1, "float32", "no-minimum"),
    case("QUANTIZE", 1, "float32 -> int16", "no-minimum", quant={"out0": Q}),
    case("DEQUANTIZE", 2, "int16 -> float32", "no-minimum", quant={"in0": Q}),
]


@pytest.mark.parametrize("op_type, expected, io, kw", INT16X8_CASES)
def test_op_version_in_int16x8_model(op_type, expected, io, kw):
    assert versions.op_version(make_op(op_type, io, **kw), int16x8=True) == expected


def test_int16x8_model_has_a_quantized_int16_tensor():
    assert versions.is_int16x8_model([make_op(OpType.RELU, "int16", quant={"out0": Q})])
    assert not versions.is_int16x8_model([make_op(OpType.RELU, "int16")])  # int16 integers
    assert not versions.is_int16x8_model([make_op(OpType.RELU, "int8", quant=A16)])


def test_every_table_row_has_a_case():
    covered = {(p.values[0], p.values[1]) for p in VERSION_CASES}
    rows = {(op, v) for op, spec in OPS.items() for v, _ in spec.versions}
    assert rows - covered == set()


def test_every_row_ends_unconditionally_and_has_a_runtime():
    for op, spec in OPS.items():
        if not spec.versions:
            continue
        assert spec.versions[-1][1] is ALWAYS, op.name
        for v, _ in spec.versions:
            if spec.runtime is not None:
                assert versions.runtime_version(op, v), (op.name, v)


def test_min_runtime_version_compares_numerically():
    assert versions.min_runtime_version([(OpType.CONV_2D, 1), (OpType.CONV_2D, 3)]) == "1.14.0"
    assert versions.min_runtime_version([(OpType.RESIZE_BILINEAR, 3), (OpType.ADD, 2)]) == "2.2.0"
    assert versions.min_runtime_version([(OpType.CUSTOM, 1)]) == ""
    with pytest.raises(ConversionError, match="CONV_2D version 99"):
        versions.min_runtime_version([(OpType.CONV_2D, 99)])


# The packages that create ops: the lowering tables (frontend), the passes, the quantizer.
EMITTING_PACKAGES = ("frontend", "passes", "quantize")
# Named by a frontend only to be read and removed: the .tflite frontend turns DENSIFY's sparse
# weights into dense constants (quantkit/frontend/tflite_frontend.py).
READ_ONLY = {OpType.DENSIFY}


def op_types_named_in(package: str) -> set[OpType]:
    """Every ``OpType.X`` the modules of ``quantkit/<package>`` name (read from their source)."""
    named = set()
    for path in sorted((Path(quantkit.__file__).parent / package).glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id == "OpType":
                named.add(OpType[node.attr])
    return named


def test_table_has_rows_for_exactly_the_op_types_quantkit_emits():
    """Issue #10: rows for ops nothing emits go until something emits them; and an op type
    something can emit without rows would fail at writing. An op type is emittable when the
    lowerings, passes or quantizer name it (a superset of what they create: names only matched
    against would count too, and none is today)."""
    emitted = set().union(*(op_types_named_in(p) for p in EMITTING_PACKAGES)) - READ_ONLY
    table = {t for t, spec in OPS.items() if spec.versions}
    assert (sorted(t.name for t in table - emitted), sorted(t.name for t in emitted - table)) \
        == ([], [])
    assert {t for t, spec in OPS.items() if spec.runtime} \
        == table - {t for t, spec in OPS.items() if spec.runtime is None}


def test_op_without_version_rule_is_an_error():
    with pytest.raises(ConversionError,
                       match=r"IF \(op 'if_op'\).*covers: ABS, ADD, ARG_MAX"):
        versions.op_version(make_op(OpType.IF, "float32"))
