"""Operator versions and minimum runtime versions, as tables.

Facts from TF's ``tensorflow/compiler/mlir/lite/tools/versioning/op_version.cc``
(``GetBuiltinOperatorVersion``) and ``runtime_version.cc`` (``FindMinimumRuntimeVersionForOp``),
checked against what TF 2.21's converter writes for the same ops in each of its modes
(``tests/test_versions_vs_tf.py``, which also lists the rows TF cannot write and why).

``VERSION_RULES`` maps an op type to ordered rows ``(version, condition)``: the first row whose
condition holds for the op gives its version, the order in which TF checks its cases. The last
row of every op is unconditional, so an op that is in the table always gets a version.

Rules kept on purpose:

* An op type with no row raises ``ConversionError`` naming the op and listing what the table
  covers. TF silently uses version 1 for unlisted ops, but some ops start above 1
  (``BROADCAST_TO`` starts at 2), so a guessed version could make LiteRT refuse the model.
* The table has rows for exactly the op types quantkit's lowerings, passes and quantizer can
  emit (a test reads them from the source): a type nothing emits has no rows until something
  does. ``CUSTOM`` ops have version 1 and no runtime requirement, as in TF's tables.
* Within a type, only rows that something quantkit writes can reach: not TF's int4/int2/
  uint32/string/bfloat16 cases, int16 weights, two-input FULLY_CONNECTED (quantkit always
  writes the bias slot), symmetric hybrid FULLY_CONNECTED (quantkit asks for asymmetric
  inputs, as TF does), per-channel QUANTIZE/DEQUANTIZE, STRIDED_SLICE's ``offset`` (not in
  the IR), nor the int16 rows keyed on ``pot_scale_int16``/``quantized_bias_type``, which only
  int16x8 models set (versioned as below).
* Where TF's converter writes another version than ``op_version.cc`` and LiteRT runs the model
  either way, the table follows the converter: its versions are what LiteRT receives from TF
  (and what selective op resolvers register). int16 integer (unquantized) ADD is 1 and MUL 4,
  where op_version.cc says 5 and 7.

int16x8 models (int16 activations, int8 weights) are versioned as TF's converter writes them:
it quantizes them with its older quantizer (``tensorflow/lite/tools/optimize``), which does not
use op_version.cc. Every op of a type in that quantizer's table keeps the version of its float
form, raised to the type's minimum (``INT16X8_MIN_VERSIONS``); so int16 LOGISTIC is 2
(op_version.cc: 3), a 16x8 CONV_2D 3 (op_version.cc: 8), and int32 shape arithmetic in the
model is raised too (STRIDED_SLICE 2). QUANTIZE float → int16 is 1, an int16 requantize 2,
DEQUANTIZE int16 → float 2. One difference is kept: TF also raises to 2 a QUANTIZE that
follows an op left float, whose OperatorCode the input's QUANTIZE then shares; quantkit writes
1 there (which QUANTIZE follows a float op is a fact of the graph, not of the op). LiteRT runs
every one of these versions: its kernels check tensor types, not versions. The model's
``min_runtime_version`` follows its versions, so an int16x8 model names as old a runtime as
TF's versions do, older than LiteRT's int16 kernels (TF's own metadata keeps the float model's).
"""

from __future__ import annotations

from typing import Iterable

import numpy as np

from quantkit.ir.graph import Op, Tensor
from quantkit.tflite_io.op_conditions import (
    ALWAYS,
    BroadcastAbove4D,
    Condition,
    GroupedConv,
    HasInput,
    InputCount,
    MulRescaleAtLeastOne,
    NonDefault,
    PerChannel,
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
        (4, Types(in0="int64")),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.SUB: (
        (4, Types(in0="int64")),
        (3, BroadcastAbove4D()),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.MUL: (
        (8, Types(in0="float16")),
        (5, Types(in0="int64")),
        (4, Types(in0=I16)),
        (3, MulRescaleAtLeastOne()),
        (2, Types(in0=I8)),
        (1, ALWAYS),
    ),
    OpType.DIV: ((2, BroadcastAbove4D()), (1, ALWAYS)),
    OpType.CONV_2D: (
        (6, GroupedConv()),
        (3, Types(in0=I8, in1=I8, out0=I8)),
        (5, both(HYBRID, PerChannel("in1", 0))),
        (2, HYBRID),
        (1, ALWAYS),
    ),
    OpType.DEPTHWISE_CONV_2D: (
        (6, both(HYBRID, PerChannel("in1", 3))),
        (4, HYBRID),
        (3, Types(in0=I8, in1=I8, out0=I8)),
        (2, either(NonDefault("dilation_w_factor", 1), NonDefault("dilation_h_factor", 1))),
        (1, ALWAYS),
    ),
    OpType.FULLY_CONNECTED: (
        (12, both(HYBRID, PerChannel("in1", 0))),
        (5, NonDefault("keep_num_dims", False)),
        (4, Types(in0=I8, in1=I8, out0=I8)),
        (9, both(HYBRID, NonDefault("asymmetric_quantize_inputs", False))),
        (1, ALWAYS),
    ),
    OpType.TRANSPOSE_CONV: (
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
    # int16 as TF's int16x8 quantizer writes them (op_version.cc: QUANTIZE to int16 2,
    # DEQUANTIZE from int16 3).
    OpType.QUANTIZE: ((2, Types(in0=I16, out0=I16)), (1, ALWAYS)),
    OpType.DEQUANTIZE: ((3, Types(in0="float16")), (2, Types(in0=(I8, I16))), (1, ALWAYS)),
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

# --- int16x8 models -------------------------------------------------------------------------
# TF's converter quantizes int16x8 models with its older quantizer (tensorflow/lite/tools/
# optimize), whose versions do not come from op_version.cc: every op of a type it lists keeps
# the version of its float form, raised to the type's minimum (operator_property.cc's
# `version`, the type's int8 version; model_utils.cc's SetOperatorCodeVersion). Types listed
# there with minimum 1 are left out here: their rows give the same.
INT16X8_MIN_VERSIONS: dict[OpType, int] = {
    OpType.CONV_2D: 3,
    OpType.DEPTHWISE_CONV_2D: 3,
    OpType.TRANSPOSE_CONV: 3,
    OpType.FULLY_CONNECTED: 4,
    OpType.TILE: 3,
    **dict.fromkeys((
        OpType.ADD, OpType.SUB, OpType.MUL, OpType.SQUARED_DIFFERENCE, OpType.BATCH_MATMUL,
        OpType.MAXIMUM, OpType.MINIMUM, OpType.MAX_POOL_2D, OpType.AVERAGE_POOL_2D,
        OpType.MEAN, OpType.SUM, OpType.REDUCE_MAX, OpType.REDUCE_PROD, OpType.RELU,
        OpType.RELU6, OpType.LEAKY_RELU, OpType.LOGISTIC, OpType.TANH, OpType.SOFTMAX,
        OpType.GELU, OpType.EXP, OpType.RSQRT, OpType.CONCATENATION, OpType.PACK, OpType.PAD,
        OpType.PADV2, OpType.TRANSPOSE, OpType.STRIDED_SLICE, OpType.GATHER,
        OpType.RESIZE_BILINEAR, OpType.RESIZE_NEAREST_NEIGHBOR,
    ), 2),
}
_FLOAT32 = np.dtype(np.float32)
_INT16 = np.dtype(np.int16)


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


def is_int16x8_model(ops: Iterable[Op]) -> bool:
    """Whether a model with these ops is an int16x8 one: some tensor is quantized int16."""
    return any(t is not None and t.quant is not None and np.dtype(t.dtype) == _INT16
               for op in ops for t in (*op.inputs, *op.outputs))


def op_version(op: Op, int16x8: bool = False) -> int:
    """The schema version of ``op``: the first row of ``VERSION_RULES[op.type]`` that holds.

    In an int16x8 model, an op whose type has a minimum in ``INT16X8_MIN_VERSIONS`` gets
    ``max(version of its float form, minimum)``, as TF's int16x8 quantizer writes it.

    Args:
        op: an IR op; its tensors' dtypes, shapes and quantization and its options are read.
        int16x8: the op is in an int16x8 model (``is_int16x8_model`` of all its ops).

    Returns:
        The operator version to write in the op's ``OperatorCode``.

    Raises:
        ConversionError: the op type has no rows (the message lists the covered op types).
    """
    minimum = INT16X8_MIN_VERSIONS.get(op.type) if int16x8 else None
    if minimum is not None:
        return max(_first_row(float_form(op)), minimum)
    return _first_row(op)


def float_form(op: Op) -> Op:
    """``op`` before quantization: each quantized tensor as float32."""
    def unquantized(t: Tensor | None) -> Tensor | None:
        return t if t is None or t.quant is None else Tensor(t.name, _FLOAT32, t.shape)

    return Op(op.type, [unquantized(t) for t in op.inputs], [unquantized(t) for t in op.outputs],
              op.options, op.name, op.custom_code)


def _first_row(op: Op) -> int:
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
