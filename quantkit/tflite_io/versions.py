"""Operator versions and minimum runtime versions, as tables.

Facts from TF's ``tensorflow/compiler/mlir/lite/tools/versioning/op_version.cc``
(``GetBuiltinOperatorVersion``) and ``runtime_version.cc`` (``FindMinimumRuntimeVersionForOp``).

``VERSION_RULES`` maps an op type to ordered rows ``(version, condition)``: the first row whose
condition holds for the op gives its version, the order in which TF checks its cases. The last
row of every op is unconditional, so an op that is in the table always gets a version.

Rules kept on purpose:

* An op type with no row raises ``ConversionError`` naming the op and listing what the table
  covers. TF silently uses version 1 for unlisted ops, but some ops start above 1
  (``BROADCAST_TO`` starts at 2), so a guessed version could make LiteRT refuse the model.
* ``CUSTOM`` ops have version 1 and no runtime requirement; TF's runtime table has no rows for
  them either.
* Only rows for element types quantkit writes (float32, float16, int32, int64, int16, int8,
  uint8, bool) are kept; TF's int4/int2/uint32/string/bfloat16 cases are left out.
* Options missing from the IR dataclasses (``pot_scale_int16``, ``quantized_bias_type``,
  ``asymmetric_quantize_inputs``, ``offset``) read as their schema defaults, so their rows are
  inert until the IR grows those fields.
* Float32 and int8 versions equal what TF 2.21's converter writes (tests check). For 16x8 models
  (int16 activations, int8 weights) TF's converter instead stamps the int8 versions of its old
  quantizer (int16 LOGISTIC: 2 there, 3 here); these tables follow ``op_version.cc``, which keys
  the int16 CONV_2D / DEPTHWISE_CONV_2D / FULLY_CONNECTED rows on int16 *weights*, so 16x8
  convolutions get version 1 here (LiteRT runs them: kernels check types, not versions).
"""

from __future__ import annotations

from typing import Iterable

from quantkit.ir.graph import Op
from quantkit.tflite_io.op_conditions import (
    ALWAYS,
    BroadcastAbove4D,
    Condition,
    GroupedConv,
    HasInput,
    InputCount,
    MulRescaleAtLeastOne,
    NonDefault,
    Not,
    PerChannel,
    Quantized,
    RankAbove,
    Types,
    both,
    either,
)
from quantkit.types import Activation, ConversionError, OpType, Phase

# --- the version table -----------------------------------------------------------------------

I8, I16, F32 = "int8", "int16", "float32"
INT8_ONLY = ((2, Types(in0=I8)), (1, ALWAYS))
INT8_OR_UINT8 = ((2, Types(in0=(I8, "uint8"))), (1, ALWAYS))
INT8_OR_INT16 = ((2, Types(in0=(I8, I16))), (1, ALWAYS))
INT16_3_INT8_2 = ((3, Types(in0=I16)), (2, Types(in0=I8)), (1, ALWAYS))
INT16_IO_3_INT8_2 = ((3, Types(in0=I16, out0=I16)), (2, Types(in0=I8)), (1, ALWAYS))
ALWAYS_1 = ((1, ALWAYS),)
HYBRID = Types(in0=F32, in1=I8, out0=F32)  # float activations, int8 weights

VERSION_RULES: dict[OpType, tuple[tuple[int, Condition], ...]] = {
    OpType.ADD: (
        (6, Types(in0="float16")),
        (5, both(Types(in0=I16), Not(Quantized("in0")))),
        (4, Types(in0="int64")),
        (3, both(Types(in0=I16, out0=I16), NonDefault("pot_scale_int16", True))),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.SUB: (
        (5, both(Types(in0=I16, out0=I16), NonDefault("pot_scale_int16", True))),
        (4, Types(in0="int64")),
        (3, BroadcastAbove4D()),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.MUL: (
        (8, Types(in0="float16")),
        (7, both(Types(in0=I16), Not(either(Quantized("in0"), Quantized("in1"))))),
        (5, Types(in0="int64")),
        (4, Types(in0=I16)),
        (3, MulRescaleAtLeastOne()),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.DIV: ((2, BroadcastAbove4D()), (1, ALWAYS)),
    OpType.CONV_2D: (
        (8, both(Types(in0=I16, in1=I8, out0=I16), NonDefault("quantized_bias_type", 0))),
        (6, GroupedConv()),
        # TF keys the int16 kernel on int16 *weights*: 16x8 (int8 weights) falls through to 1.
        (4, Types(in0=I16, in1=I16, out0=I16)),
        (3, Types(in0=I8, in1=I8, out0=I8)),
        (5, both(HYBRID, PerChannel("in1", 0))),
        (2, HYBRID),
        (1, ALWAYS),
    ),
    OpType.DEPTHWISE_CONV_2D: (
        (5, Types(in0=I16, in1=I16, out0=I16)),
        (6, both(HYBRID, PerChannel("in1", 3))),
        (4, HYBRID),
        (3, Types(in0=I8, in1=I8, out0=I8)),
        (2, either(NonDefault("dilation_w_factor", 1), NonDefault("dilation_h_factor", 1))),
        (1, ALWAYS),
    ),
    OpType.FULLY_CONNECTED: (
        (12, both(HYBRID, PerChannel("in1", 0))),
        (11, both(Types(in0=I16, in1=I8, out0=I16), NonDefault("quantized_bias_type", 0))),
        (7, Types(in0=I16, in1=I16, out0=I16)),
        (6, InputCount(2)),
        (5, NonDefault("keep_num_dims", False)),
        (4, Types(in0=I8, in1=I8, out0=I8)),
        (9, both(HYBRID, NonDefault("asymmetric_quantize_inputs", False))),
        (3, HYBRID),
        (1, ALWAYS),
    ),
    OpType.TRANSPOSE_CONV: (
        (5, both(Types(in0=I16, in1=I8, out0=I16), NonDefault("quantized_bias_type", 0))),
        (4, NonDefault("fused_activation_function", Activation.NONE)),
        (3, both(InputCount(4), HasInput(3))),
        (2, Types(in1=I8)),
        (1, ALWAYS),
    ),
    OpType.MAX_POOL_2D: INT16_IO_3_INT8_2,
    OpType.AVERAGE_POOL_2D: INT16_IO_3_INT8_2,
    OpType.LOGISTIC: INT16_IO_3_INT8_2,
    OpType.TANH: INT16_IO_3_INT8_2,
    OpType.MEAN: INT16_3_INT8_2,
    OpType.REDUCE_MAX: INT16_3_INT8_2,
    OpType.SOFTMAX: INT16_3_INT8_2,
    OpType.RELU6: INT16_3_INT8_2,
    OpType.RSQRT: INT16_3_INT8_2,
    OpType.CONCATENATION: INT16_3_INT8_2,
    OpType.RELU: ((3, Types(in0=I16)), (2, Types(in0=(I8, "uint8"))), (1, ALWAYS)),
    OpType.MAXIMUM: (
        (4, Types(in0=I16, out0=I16)),
        (3, BroadcastAbove4D()),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.MINIMUM: (
        (4, Types(in0=I16, out0=I16)),
        (3, BroadcastAbove4D()),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.PAD: (
        (5, Types(in0="bool")),
        (4, RankAbove(4)),
        (3, Types(in0=I16)),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.PADV2: (
        (5, Types(in0="bool")),
        (4, RankAbove(4)),
        (3, Types(in0=I16)),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.TRANSPOSE: (
        (8, RankAbove(6)),
        (6, RankAbove(5)),
        (5, Types(in0=I16)),
        (4, RankAbove(4)),
        (3, Types(in0="bool")),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.STRIDED_SLICE: (
        (8, NonDefault("offset", False)),
        (6, either(NonDefault("ellipsis_mask", 0), NonDefault("new_axis_mask", 0))),
        (4, RankAbove(4)),
        (3, Types(in0="bool")),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.RESIZE_BILINEAR: (
        (4, Types(in0=I16)),
        (3, NonDefault("half_pixel_centers", False)),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.RESIZE_NEAREST_NEIGHBOR: (
        (4, Types(in0=I16)),
        (3, either(NonDefault("half_pixel_centers", False), NonDefault("align_corners", False))),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.LEAKY_RELU: ((2, Types(in0=I16)), (1, ALWAYS)),
    OpType.SQRT: INT8_OR_INT16,
    OpType.PACK: ((2, Types(in0=I8)), (3, Types(in0=I16, out0=I16)), (1, ALWAYS)),
    OpType.CAST: (
        (5, either(Types(in0="float16"), Types(out0="float16"))),
        (3, either(Types(in0=I8), Types(out0=I8))),
        (1, ALWAYS),
    ),
    OpType.QUANTIZE: ((3, PerChannel("out0")), (2, Types(out0=I16)), (1, ALWAYS)),
    OpType.DEQUANTIZE: (
        (3, Types(in0=(I16, "float16"))),
        (5, both(Types(in0=I8), PerChannel("in0"))),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.GATHER: (
        (6, Types(in1=I16)),
        (5, NonDefault("batch_dims", 0)),
        (4, Types(in0=I16)),
        (3, Types(in0="bool")),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.RESHAPE: ALWAYS_1,
    OpType.SQUEEZE: ALWAYS_1,  # version 2 is for string tensors
    OpType.EXPAND_DIMS: ALWAYS_1,
    OpType.SHAPE: ALWAYS_1,
    OpType.RELU_N1_TO_1: ALWAYS_1,
    OpType.PRELU: ALWAYS_1,
    OpType.HARD_SWISH: ALWAYS_1,
    OpType.CUSTOM: ALWAYS_1,
    OpType.BATCH_MATMUL: (
        (3, Types(in0=I16)),
        (2, Types(in0=I8)),
        (4, both(HYBRID, NonDefault("asymmetric_quantize_inputs", False))),
        (1, ALWAYS),
    ),
    OpType.GELU: INT8_OR_UINT8,
    OpType.SUM: INT8_ONLY,
    OpType.REDUCE_PROD: INT8_OR_INT16,
    OpType.EXP: INT8_OR_INT16,
    OpType.NEG: ALWAYS_1,
    OpType.SQUARE: ALWAYS_1,
    OpType.SQUARED_DIFFERENCE: INT8_ONLY,
    OpType.TILE: ((3, Types(in0=I8)), (1, ALWAYS)),
}

# --- the runtime table -----------------------------------------------------------------------
# RUNTIME_VERSIONS[op][v - 1]: the first TFLite runtime that runs version v of op.
# None would mark a version that does not exist (TF's table has such gaps: BROADCAST_TO's v1).

_MAXMIN = ("1.14.0", "1.14.0", "2.3.0", "2.3.0")
_PADS = ("1.14.0", "2.4.0", "2.6.0", "2.20.0")

RUNTIME_VERSIONS: dict[OpType, tuple[str | None, ...]] = {
    OpType.ADD: ("1.5.0", "1.14.0", "2.4.0", "2.6.0", "2.13.0", "2.23.0"),
    OpType.SUB: ("1.6.0", "1.14.0", "2.3.0", "2.4.0", "2.4.0"),
    OpType.MUL: ("1.5.0", "1.14.0", "1.15.0", "2.3.0", "2.6.0", "2.11.0", "2.13.0", "2.23.0"),
    OpType.DIV: ("1.6.0", "2.3.0"),
    OpType.CONV_2D: ("1.5.0", "1.14.0", "1.14.0", "2.3.0", "2.4.0", "2.9.0", "2.11.0", "2.15.0"),
    OpType.DEPTHWISE_CONV_2D: ("1.5.0", "1.12.0", "1.14.0", "2.2.0", "2.3.0", "2.3.0", "2.11.0"),
    OpType.FULLY_CONNECTED: (
        "1.5.0", "1.10.0", "1.14.0", "1.14.0", "2.0.0", "2.1.0", "2.3.0",
        "2.3.0", "2.3.0", "2.11.0", "2.15.0", "2.17.0", "2.18.0", "2.21.0",
    ),  # fmt: skip
    OpType.TRANSPOSE_CONV: ("1.9.0", "2.2.0", "2.3.0", "2.13.0", "2.15.0"),
    OpType.MAX_POOL_2D: ("1.5.0", "1.14.0", "2.3.0"),
    OpType.AVERAGE_POOL_2D: ("1.5.0", "1.14.0", "2.3.0"),
    OpType.LOGISTIC: ("1.14.0", "1.14.0", "2.3.0"),
    OpType.TANH: ("1.14.0", "1.14.0", "2.3.0"),
    OpType.MEAN: ("1.6.0", "1.14.0", "2.4.0"),
    OpType.REDUCE_MAX: ("1.11.0", "1.14.0", "2.5.0"),
    OpType.SOFTMAX: ("1.5.0", "1.14.0", "2.3.0"),
    OpType.RELU6: ("1.5.0", "1.14.0", "2.5.0"),
    OpType.RSQRT: ("1.10.0", "2.5.0", "2.15.0"),
    OpType.CONCATENATION: ("1.5.0", "1.14.0", "2.3.0", "2.14.0", "2.21.0"),
    OpType.RELU: ("1.5.0", "2.1.0", "2.5.0"),
    OpType.MAXIMUM: _MAXMIN,
    OpType.MINIMUM: _MAXMIN,
    OpType.PAD: ("1.5.0", *_PADS),
    OpType.PADV2: ("1.9.0", *_PADS),
    OpType.TRANSPOSE: (
        "1.6.0", "1.14.0", "1.15.0", "2.3.0", "2.4.0", "2.12.0", "2.14.4", "2.22.0",
    ),  # fmt: skip
    OpType.STRIDED_SLICE: (
        "1.6.0", "1.14.0", "2.1.0", "2.2.0", "2.5.0", "2.6.0", "2.14.0", "2.14.0",
    ),  # fmt: skip
    OpType.RESIZE_BILINEAR: ("1.7.0", "1.14.0", "2.2.0", "2.5.0"),
    OpType.RESIZE_NEAREST_NEIGHBOR: ("1.13.1", "1.14.0", "2.3.0", "2.4.0"),
    OpType.LEAKY_RELU: ("1.13.1", "2.3.0"),
    OpType.SQRT: ("1.10.0", "2.21.0"),
    OpType.PACK: ("1.11.0", "1.14.0", "2.3.0", "2.13.0"),
    OpType.CAST: ("1.5.0", "2.7.0", "2.8.0", "2.9.0", "2.12.0", "2.15.0", "2.17.0", "2.21.0"),
    OpType.QUANTIZE: ("1.14.0", "1.15.0", "2.7.0", "2.21.0", "2.21.0"),
    OpType.DEQUANTIZE: (
        "1.13.1", "1.14.0", "1.15.0", "2.2.0", "2.7.0", "2.18.0", "2.21.0", "2.22.0",
    ),  # fmt: skip
    OpType.GATHER: ("1.6.0", "1.14.0", "1.15.0", "2.4.0", "2.5.0", "2.13.0", "2.15.0"),
    OpType.RESHAPE: ("1.5.0",),
    OpType.SQUEEZE: ("1.6.0", "2.5.0"),
    OpType.EXPAND_DIMS: ("1.10.0",),
    OpType.SHAPE: ("1.10.0",),
    OpType.RELU_N1_TO_1: ("1.5.0",),
    OpType.PRELU: ("1.8.0",),
    OpType.HARD_SWISH: ("1.15.0",),
    OpType.BATCH_MATMUL: ("2.3.0", "2.3.0", "2.4.0", "2.5.0"),
    OpType.GELU: ("2.9.0", "2.9.0"),
    OpType.SUM: ("1.10.0", "1.15.0"),
    OpType.REDUCE_PROD: ("1.11.0", "2.6.0"),
    OpType.EXP: ("1.7.0", "2.12.0"),
    OpType.NEG: ("1.9.0",),
    OpType.SQUARE: ("1.12.0",),
    OpType.SQUARED_DIFFERENCE: ("1.13.1", "2.5.0"),
    OpType.TILE: ("1.10.1", "2.2.0", "2.8.0"),
}

# Ops whose versions need no runtime entry (TF's runtime table has none for them).
NO_RUNTIME_REQUIREMENT = frozenset({OpType.CUSTOM})


# --- lookups ---------------------------------------------------------------------------------


def op_version(op: Op) -> int:
    """The schema version of ``op``: the first row of ``VERSION_RULES[op.type]`` that holds.

    Args:
        op: an IR op; its tensors' dtypes, shapes and quantization and its options are read.

    Returns:
        The operator version to write in the op's ``OperatorCode``.

    Raises:
        ConversionError: the op type has no rows (the message lists the covered op types).
    """
    rows = VERSION_RULES.get(op.type)
    if rows is None:
        covered = ", ".join(sorted(t.name for t in VERSION_RULES))
        raise ConversionError(
            Phase.WRITING,
            f"no operator-version rule for {op.type.name} (op {op.name!r}); "
            f"quantkit/tflite_io/versions.py covers: {covered}",
        )
    for version, condition in rows:
        if condition(op):
            return version
    raise AssertionError(f"the rows of {op.type.name} end without an unconditional row")


def runtime_version(op_type: OpType, version: int) -> str | None:
    """The first runtime that runs ``version`` of ``op_type``; None for ops with no requirement.

    Raises:
        ConversionError: the (op, version) pair is not in ``RUNTIME_VERSIONS``.
    """
    if op_type in NO_RUNTIME_REQUIREMENT:
        return None
    row = RUNTIME_VERSIONS.get(op_type, ())
    found = row[version - 1] if 1 <= version <= len(row) else None
    if found is None:
        raise ConversionError(
            Phase.WRITING, f"no minimum runtime version known for {op_type.name} version {version}"
        )
    return found


def _version_key(v: str) -> tuple[int, ...]:
    return tuple(int(part) for part in v.split("."))


def min_runtime_version(op_versions: Iterable[tuple[OpType, int]]) -> str:
    """The oldest TFLite runtime that runs every (op type, version) pair given.

    Args:
        op_versions: the (op type, version) pairs a model uses; CUSTOM ops are skipped.

    Returns:
        A version string such as ``"2.3.0"``; ``""`` when no pair has a requirement.

    Raises:
        ConversionError: a pair is not in ``RUNTIME_VERSIONS``.
    """
    found = [runtime_version(t, v) for t, v in op_versions]
    known = [v for v in found if v is not None]
    return max(known, key=_version_key) if known else ""
