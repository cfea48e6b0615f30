"""The op table: one ``OpSpec`` row per TFLite op type quantkit writes or reads options of.

Sources of the facts, each row checked by the tests that iterate over this table:

* integer rules: the TFLite int8 quantization spec; ``lacks``: the rows LiteRT (2.3, each run
  by ``tests/test_quantize_rules.py``) has no kernel for in a scheme (int16: they refuse INT16,
  except PRELU, which runs but is wrong, 7 dB). NEG has no rule on purpose: LiteRT's int8 NEG
  computes ``q_out = −q_in`` and ignores the zero points, right only for ``z_out = −z_in``.
* versions: TF's ``op_version.cc`` and ``runtime_version.cc``, as its converter writes them
  (``quantkit.tflite_io.versions`` explains the choices; ``tests/test_versions_vs_tf.py``).
* fusable activations: LiteRT's CONV_2D/ADD/MUL kernels clamp only the RELU family (a fused
  TANH is silently ignored, FULLY_CONNECTED refuses it); CONCATENATION has the field but its
  kernel refuses any activation.
* options required: the convolutions and pools refuse zero strides; PACK, SHAPE, ARG_MAX and
  ARG_MIN refuse; SPLIT crashes the process; SOFTMAX, LEAKY_RELU and CONCATENATION silently
  compute with beta = 0, alpha = 0, axis = 0.

Adding an op that needs no new mechanism: one row here (plus its lowering row); see README.
"""

from __future__ import annotations

import numpy as np

from quantkit.ir import options as o
from quantkit.ops import fold as f
from quantkit.ops.conditions import (ALWAYS, BroadcastAbove4D, GroupedConv, HasInput,
                                     InputCount, MulRescaleAtLeastOne, NonDefault, PerChannel,
                                     RankAbove, Types, both, either)
from quantkit.ops.spec import (ALL, BiasCorrection, FusedKernel, Hybrid, Int16Quirks, OpSpec,
                               OutputRule, QuantRule, WeightLayout)
from quantkit.types import Activation, OpType, QuantMode, QuantParams, TensorType

T = OpType
I8, I16, F32 = "int8", "int16", "float32"
INT16, UINT8 = QuantMode.INT16X8, QuantMode.LEGACY_UINT8

# --- shared pieces ----------------------------------------------------------------------------
OWN_1, OWN_2 = QuantRule((0,)), QuantRule((0, 1))
SHARED_1, SHARED_ALL = QuantRule((0,), OutputRule.SHARED), QuantRule(ALL, OutputRule.SHARED)
BOUNDED = QuantRule(ALL, OutputRule.SHARED, constants_clamp=True)  # MAXIMUM, MINIMUM


def fixed(scale: float, zero_point: int) -> QuantRule:
    """Output parameters fixed by the spec: ``r = scale·(q − zero_point)`` (int8)."""
    return QuantRule((0,), OutputRule.FIXED, QuantParams((scale,), (zero_point,)))


RELUS = frozenset({Activation.RELU, Activation.RELU6, Activation.RELU_N1_TO_1})
I16_2 = Int16Quirks(min_version=2)  # TF's int16x8 quantizer: at least version 2

INT8_ONLY = ((2, Types(in0=I8)), (1, ALWAYS))
INT8_OR_UINT8 = ((2, Types(in0=(I8, "uint8"))), (1, ALWAYS))
INT8_OR_INT16 = ((2, Types(in0=(I8, I16))), (1, ALWAYS))
INT16_3_INT8_2 = ((3, Types(in0=I16)), (2, Types(in0=I8)), (1, ALWAYS))
INT16_IO_3_INT8_2 = ((3, Types(in0=I16, out0=I16)), (2, Types(in0=I8)), (1, ALWAYS))
MAXMIN = ((4, Types(in0=I16, out0=I16)), (3, BroadcastAbove4D()), (2, Types(in0=I8)),
          (1, ALWAYS))
PADS = ((5, Types(in0="bool")), (4, RankAbove(4)), (3, Types(in0=I16)), (2, Types(in0=I8)),
        (1, ALWAYS))
ALWAYS_1 = ((1, ALWAYS),)
HYBRID = Types(in0=F32, in1=I8, out0=F32)  # float activations, int8 weights
POOL_RUNTIME = ("1.5.0", "1.14.0", "2.3.0")
MAXMIN_RUNTIME = ("1.14.0", "1.14.0", "2.3.0", "2.3.0")
PADS_RUNTIME = ("1.14.0", "2.4.0", "2.6.0", "2.20.0")

# --- ops with weights -------------------------------------------------------------------------
WEIGHTED = (
    OpSpec(T.CONV_2D, o.Conv2DOptions, True, WeightLayout(1, 2, 0, 3, pads_input=True),
           BiasCorrection.CONV, fusable=RELUS, quant=OWN_1, hybrid=Hybrid(True, False),
           int16=Int16Quirks(bias_type_option=True, min_version=3),
           versions=((6, GroupedConv()), (3, Types(in0=I8, in1=I8, out0=I8)),
                     (5, both(HYBRID, PerChannel("in1", 0))), (2, HYBRID), (1, ALWAYS)),
           runtime=("1.5.0", "1.14.0", "1.14.0", "2.3.0", "2.4.0", "2.9.0", "2.11.0",
                    "2.15.0")),
    OpSpec(T.DEPTHWISE_CONV_2D, o.DepthwiseConv2DOptions, True,
           WeightLayout(1, 2, 3, 3, pads_input=True), BiasCorrection.DEPTHWISE, fusable=RELUS,
           quant=OWN_1, hybrid=Hybrid(True, False),
           # LiteRT's int16 depthwise kernel takes int64 biases only
           int16=Int16Quirks(bias=TensorType.INT64, min_version=3),
           versions=((6, both(HYBRID, PerChannel("in1", 3))), (4, HYBRID),
                     (3, Types(in0=I8, in1=I8, out0=I8)),
                     (2, either(NonDefault("dilation_w_factor", 1),
                                NonDefault("dilation_h_factor", 1))),
                     (1, ALWAYS)),
           runtime=("1.5.0", "1.12.0", "1.14.0", "2.2.0", "2.3.0", "2.3.0", "2.11.0")),
    OpSpec(T.FULLY_CONNECTED, o.FullyConnectedOptions, weights=WeightLayout(1, 2, 0, 1),
           bias_correction=BiasCorrection.FC, fusable=RELUS, quant=OWN_1,
           fold=f.fully_connected,  # an RNN's matmul of its zero initial state
           hybrid=Hybrid(True, True), int16=Int16Quirks(bias_type_option=True, min_version=4),
           versions=((12, both(HYBRID, PerChannel("in1", 0))),
                     (5, NonDefault("keep_num_dims", False)),
                     (4, Types(in0=I8, in1=I8, out0=I8)),
                     (9, both(HYBRID, NonDefault("asymmetric_quantize_inputs", False))),
                     (1, ALWAYS)),
           runtime=("1.5.0", "1.10.0", "1.14.0", "1.14.0", "2.0.0", "2.1.0", "2.3.0", "2.3.0",
                    "2.3.0", "2.11.0", "2.15.0", "2.17.0", "2.18.0", "2.21.0")),
    OpSpec(T.TRANSPOSE_CONV, o.TransposeConvOptions, True,
           WeightLayout(1, 3, 0, 3, activation_input=2), fusable=RELUS, quant=QuantRule((2,)),
           hybrid=Hybrid(True, False), int16=Int16Quirks(bias_type_option=True, min_version=3),
           versions=((4, NonDefault("fused_activation_function", Activation.NONE)),
                     (3, both(InputCount(4), HasInput(3))), (2, Types(in1=I8)), (1, ALWAYS)),
           runtime=("1.9.0", "2.2.0", "2.3.0", "2.13.0", "2.15.0")),
    OpSpec(T.BATCH_MATMUL, o.BatchMatMulOptions, quant=OWN_2, lacks=frozenset({UINT8}),
           hybrid=Hybrid(False, True), int16=I16_2,
           versions=((3, Types(in0=I16)), (2, Types(in0=I8)),
                     (4, both(HYBRID, NonDefault("asymmetric_quantize_inputs", False))),
                     (1, ALWAYS)),
           runtime=("2.3.0", "2.3.0", "2.4.0", "2.5.0")),
)

# --- elementwise arithmetic -------------------------------------------------------------------
ARITHMETIC = (
    OpSpec(T.ADD, o.AddOptions, fusable=RELUS, quant=OWN_2,
           int16=Int16Quirks(general_scaling=True, min_version=2),
           versions=((6, Types(in0="float16")), (4, Types(in0="int64")), (2, Types(in0=I8)),
                     (1, ALWAYS)),
           runtime=("1.5.0", "1.14.0", "2.4.0", "2.6.0", "2.13.0", "2.23.0"),
           fold=f.elementwise(np.add)),
    OpSpec(T.SUB, o.SubOptions, fusable=RELUS, quant=OWN_2,
           int16=Int16Quirks(general_scaling=True, min_version=2),
           versions=((4, Types(in0="int64")), (3, BroadcastAbove4D()), (2, Types(in0=I8)),
                     (1, ALWAYS)),
           runtime=("1.6.0", "1.14.0", "2.3.0", "2.4.0", "2.4.0"),
           fold=f.elementwise(np.subtract)),
    OpSpec(T.MUL, o.MulOptions, fusable=RELUS, quant=OWN_2, int16=I16_2,
           versions=((8, Types(in0="float16")), (5, Types(in0="int64")), (4, Types(in0=I16)),
                     (3, MulRescaleAtLeastOne()), (2, Types(in0=I8)), (1, ALWAYS)),
           runtime=("1.5.0", "1.14.0", "1.15.0", "2.3.0", "2.6.0", "2.11.0", "2.13.0",
                    "2.23.0"),
           fold=f.elementwise(np.multiply)),
    OpSpec(T.DIV, o.DivOptions, fusable=RELUS,
           versions=((2, BroadcastAbove4D()), (1, ALWAYS)), runtime=("1.6.0", "2.3.0"),
           fold=f.elementwise(np.divide)),
    OpSpec(T.SQUARED_DIFFERENCE, quant=OWN_2, lacks=frozenset({INT16, UINT8}), int16=I16_2,
           versions=INT8_ONLY, runtime=("1.13.1", "2.5.0"),
           fold=f.elementwise(lambda a, b: (a - b) ** 2)),
    OpSpec(T.MAXIMUM, quant=BOUNDED, int16=I16_2, versions=MAXMIN, runtime=MAXMIN_RUNTIME,
           fold=f.elementwise(np.maximum)),
    OpSpec(T.MINIMUM, quant=BOUNDED, int16=I16_2, versions=MAXMIN, runtime=MAXMIN_RUNTIME,
           fold=f.elementwise(np.minimum)),
    OpSpec(T.PRELU, quant=OWN_2, lacks=frozenset({INT16}), versions=ALWAYS_1,
           runtime=("1.8.0",)),
)

# --- activations and other unary math ---------------------------------------------------------
UNARY = (
    OpSpec(T.RELU, activation=Activation.RELU, quant=OWN_1, int16=I16_2,
           versions=((3, Types(in0=I16)), (2, Types(in0=(I8, "uint8"))), (1, ALWAYS)),
           runtime=("1.5.0", "2.1.0", "2.5.0"), fold=f.elementwise(lambda x: np.maximum(x, 0))),
    OpSpec(T.RELU6, activation=Activation.RELU6, quant=OWN_1, int16=I16_2,
           versions=INT16_3_INT8_2, runtime=("1.5.0", "1.14.0", "2.5.0"),
           fold=f.elementwise(lambda x: np.clip(x, 0, 6))),
    OpSpec(T.RELU_N1_TO_1, activation=Activation.RELU_N1_TO_1, quant=OWN_1,
           lacks=frozenset({INT16}), versions=ALWAYS_1, runtime=("1.5.0",)),
    OpSpec(T.LEAKY_RELU, o.LeakyReluOptions, True, quant=OWN_1, int16=I16_2,
           versions=((2, Types(in0=I16)), (1, ALWAYS)), runtime=("1.13.1", "2.3.0")),
    OpSpec(T.HARD_SWISH, quant=OWN_1, lacks=frozenset({INT16}), versions=ALWAYS_1,
           runtime=("1.15.0",)),
    OpSpec(T.GELU, o.GeluOptions, quant=OWN_1, int16=I16_2, versions=INT8_OR_UINT8,
           runtime=("2.9.0", "2.9.0")),
    OpSpec(T.RSQRT, quant=OWN_1, lacks=frozenset({UINT8}), int16=I16_2,
           versions=INT16_3_INT8_2, runtime=("1.10.0", "2.5.0", "2.15.0"),
           fold=f.elementwise(lambda x: 1 / np.sqrt(x))),
    OpSpec(T.EXP, quant=OWN_1, lacks=frozenset({UINT8}), int16=I16_2, versions=INT8_OR_INT16,
           runtime=("1.7.0", "2.12.0"), fold=f.elementwise(np.exp)),
    OpSpec(T.SQRT, versions=INT8_OR_INT16, runtime=("1.10.0", "2.21.0"),
           fold=f.elementwise(np.sqrt)),
    OpSpec(T.NEG, versions=ALWAYS_1, runtime=("1.9.0",), fold=f.elementwise(np.negative)),
    OpSpec(T.SQUARE, versions=ALWAYS_1, runtime=("1.12.0",), fold=f.elementwise(np.square)),
    OpSpec(T.SOFTMAX, o.SoftmaxOptions, True, quant=fixed(1 / 256, -128), int16=I16_2,
           versions=INT16_3_INT8_2, runtime=("1.5.0", "1.14.0", "2.3.0")),
    OpSpec(T.LOGISTIC, quant=fixed(1 / 256, -128), int16=I16_2, versions=INT16_IO_3_INT8_2,
           runtime=("1.14.0", "1.14.0", "2.3.0"),
           fold=f.elementwise(lambda x: 1 / (1 + np.exp(-x)))),
    OpSpec(T.TANH, activation=Activation.TANH, quant=fixed(1 / 128, 0), int16=I16_2,
           versions=INT16_IO_3_INT8_2, runtime=("1.14.0", "1.14.0", "2.3.0"),
           fold=f.elementwise(np.tanh)),
)

# --- pooling and reductions -------------------------------------------------------------------
REDUCING = (
    OpSpec(T.MAX_POOL_2D, o.Pool2DOptions, True, fusable=RELUS, quant=SHARED_1, int16=I16_2,
           versions=INT16_IO_3_INT8_2, runtime=POOL_RUNTIME),
    OpSpec(T.AVERAGE_POOL_2D, o.Pool2DOptions, True, fusable=RELUS, quant=SHARED_1,
           int16=I16_2, versions=INT16_IO_3_INT8_2, runtime=POOL_RUNTIME),
    OpSpec(T.MEAN, o.ReducerOptions, quant=OWN_1, int16=I16_2, versions=INT16_3_INT8_2,
           runtime=("1.6.0", "1.14.0", "2.4.0"), fold=f.reduce(np.mean)),
    OpSpec(T.SUM, o.ReducerOptions, quant=OWN_1, int16=I16_2, versions=INT8_ONLY,
           runtime=("1.10.0", "1.15.0"), fold=f.reduce(np.sum)),
    OpSpec(T.REDUCE_MAX, o.ReducerOptions, quant=SHARED_1, int16=I16_2,
           versions=INT16_3_INT8_2, runtime=("1.11.0", "1.14.0", "2.5.0"),
           fold=f.reduce(np.max)),
    OpSpec(T.REDUCE_PROD, o.ReducerOptions, int16=I16_2, versions=INT8_OR_INT16,
           runtime=("1.11.0", "2.6.0"), fold=f.reduce(np.prod)),
)

# --- values that move without rescaling -------------------------------------------------------
MOVING = (
    OpSpec(T.RESHAPE, quant=SHARED_1, versions=ALWAYS_1, runtime=("1.5.0",), fold=f.reshape),
    OpSpec(T.SQUEEZE, o.SqueezeOptions, quant=SHARED_1,
           versions=ALWAYS_1,  # version 2 is for string tensors
           runtime=("1.6.0", "2.5.0"), fold=f.squeeze),
    OpSpec(T.EXPAND_DIMS, quant=SHARED_1, versions=ALWAYS_1, runtime=("1.10.0",),
           fold=f.expand_dims),
    OpSpec(T.TRANSPOSE, quant=SHARED_1, int16=I16_2,
           versions=((8, RankAbove(6)), (6, RankAbove(5)), (5, Types(in0=I16)),
                     (4, RankAbove(4)), (3, Types(in0="bool")), (2, Types(in0=I8)),
                     (1, ALWAYS)),
           runtime=("1.6.0", "1.14.0", "1.15.0", "2.3.0", "2.4.0", "2.12.0", "2.14.4",
                    "2.22.0"),
           fold=f.transpose),
    OpSpec(T.PAD, quant=SHARED_1, int16=I16_2, versions=PADS,
           runtime=("1.5.0", *PADS_RUNTIME), fold=f.pad),
    OpSpec(T.PADV2, quant=QuantRule((0, 2), OutputRule.SHARED), int16=I16_2, versions=PADS,
           runtime=("1.9.0", *PADS_RUNTIME)),
    OpSpec(T.STRIDED_SLICE, o.StridedSliceOptions, quant=SHARED_1, int16=I16_2,
           versions=((6, either(NonDefault("ellipsis_mask", 0), NonDefault("new_axis_mask", 0))),
                     (4, RankAbove(4)), (3, Types(in0="bool")), (2, Types(in0=I8)),
                     (1, ALWAYS)),
           runtime=("1.6.0", "1.14.0", "2.1.0", "2.2.0", "2.5.0", "2.6.0", "2.14.0",
                    "2.14.0"),
           fold=f.strided_slice),
    OpSpec(T.GATHER, o.GatherOptions, quant=SHARED_1, int16=I16_2,
           versions=((6, Types(in1=I16)), (5, NonDefault("batch_dims", 0)),
                     (4, Types(in0=I16)), (3, Types(in0="bool")), (2, Types(in0=I8)),
                     (1, ALWAYS)),
           runtime=("1.6.0", "1.14.0", "1.15.0", "2.4.0", "2.5.0", "2.13.0", "2.15.0"),
           fold=f.gather),
    OpSpec(T.TILE, quant=SHARED_1, int16=Int16Quirks(min_version=3),
           versions=((3, Types(in0=I8)), (1, ALWAYS)), runtime=("1.10.1", "2.2.0", "2.8.0")),
    OpSpec(T.RESIZE_NEAREST_NEIGHBOR, o.ResizeNearestNeighborOptions, quant=SHARED_1,
           int16=I16_2,
           versions=((4, Types(in0=I16)),
                     (3, either(NonDefault("half_pixel_centers", False),
                                NonDefault("align_corners", False))),
                     (2, Types(in0=I8)), (1, ALWAYS)),
           runtime=("1.13.1", "1.14.0", "2.3.0", "2.4.0")),
    OpSpec(T.RESIZE_BILINEAR, o.ResizeBilinearOptions, quant=SHARED_1, int16=I16_2,
           versions=((4, Types(in0=I16)), (3, NonDefault("half_pixel_centers", False)),
                     (2, Types(in0=I8)), (1, ALWAYS)),
           runtime=("1.7.0", "1.14.0", "2.2.0", "2.5.0")),
    OpSpec(T.CONCATENATION, o.ConcatenationOptions, True, quant=SHARED_ALL, int16=I16_2,
           versions=INT16_3_INT8_2, runtime=("1.5.0", "1.14.0", "2.3.0", "2.14.0", "2.21.0"),
           fold=f.concatenation),
    OpSpec(T.PACK, o.PackOptions, True, quant=SHARED_ALL, int16=I16_2,
           versions=((2, Types(in0=I8)), (3, Types(in0=I16, out0=I16)), (1, ALWAYS)),
           runtime=("1.11.0", "1.14.0", "2.3.0", "2.13.0"), fold=f.pack),
    # LiteRT's kernel refuses int16 (TF's int16x8 quantizer leaves it float, at version 2)
    OpSpec(T.DEPTH_TO_SPACE, o.DepthToSpaceOptions, True, quant=SHARED_1,
           lacks=frozenset({INT16}), int16=I16_2, versions=INT8_ONLY,
           runtime=("2.1.0", "2.5.0")),
)

# --- types, shapes and the rest ---------------------------------------------------------------
OTHER = (
    # an integer output: only the input is quantized (SHAPE folds in the pass, constant or not)
    OpSpec(T.SHAPE, o.ShapeOptions, True, quant=OWN_1, versions=ALWAYS_1,
           runtime=("1.10.0",)),
    OpSpec(T.CAST, o.CastOptions,
           versions=((5, either(Types(in0="float16"), Types(out0="float16"))),
                     (3, either(Types(in0=I8), Types(out0=I8))), (1, ALWAYS)),
           runtime=("1.5.0", "2.7.0", "2.8.0", "2.9.0", "2.12.0", "2.15.0", "2.17.0",
                    "2.21.0"),
           fold=f.cast),
    # int16 as TF's int16x8 quantizer writes them (op_version.cc: QUANTIZE to int16 2,
    # DEQUANTIZE from int16 3).
    OpSpec(T.QUANTIZE, versions=((2, Types(in0=I16, out0=I16)), (1, ALWAYS)),
           runtime=("1.14.0", "1.15.0", "2.7.0", "2.21.0", "2.21.0")),
    OpSpec(T.DEQUANTIZE,
           versions=((3, Types(in0="float16")), (2, Types(in0=(I8, I16))), (1, ALWAYS)),
           runtime=("1.13.1", "1.14.0", "1.15.0", "2.2.0", "2.7.0", "2.18.0", "2.21.0",
                    "2.22.0")),
    # TF's tables: version 1, no runtime requirement
    OpSpec(T.CUSTOM, versions=ALWAYS_1, runtime=None),
)

# --- issue #12: attention masks, embeddings, Conv3D, splits, comparisons and math ------------
COMPARE = QuantRule((0, 1))  # both inputs rescaled by the kernel; the output is bool
# LiteRT's int16 comparisons compare the raw codes, whatever the scales: wrong unless equal
NO_INT16 = frozenset({INT16})
COMPARISONS = ((2, Types(in0=I8)), (1, ALWAYS))
COMPARE_RUNTIME = ("1.14.0", "1.14.0")
ISSUE12 = (
    # LiteRT's CONV_3D is float only
    OpSpec(T.CONV_3D, o.Conv3DOptions, True, versions=ALWAYS_1, runtime=("2.4.0",)),
    # LiteRT 2.x registers ELU version 1 only: float (TF's int8 converter leaves it float)
    OpSpec(T.ELU, versions=ALWAYS_1, runtime=("1.14.0",),
           fold=f.elementwise(lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))))),
    OpSpec(T.ABS, quant=OWN_1, lacks=frozenset({UINT8}), int16=I16_2,
           versions=((3, Types(in0=I16)), (2, Types(in0=I8)), (1, ALWAYS)),
           runtime=("1.13.0", "2.4.0", "2.5.0"), fold=f.elementwise(np.abs)),
    OpSpec(T.LOG, quant=OWN_1, lacks=frozenset({UINT8}), int16=I16_2,
           versions=INT8_OR_INT16, runtime=("1.14.0", "2.15.0"), fold=f.elementwise(np.log)),
    OpSpec(T.POW, versions=ALWAYS_1, runtime=("1.10.0",), fold=f.elementwise(np.power)),
    OpSpec(T.REDUCE_MIN, o.ReducerOptions, quant=SHARED_1, int16=I16_2,
           versions=INT16_3_INT8_2, runtime=("1.11.0", "1.14.0", "2.5.0"),
           fold=f.reduce(np.min)),
    OpSpec(T.ARG_MAX, o.ArgMaxOptions, True, quant=OWN_1, lacks=frozenset({INT16}),
           versions=INT8_ONLY, runtime=("1.9.0", "1.14.0")),
    OpSpec(T.ARG_MIN, o.ArgMinOptions, True, quant=OWN_1, lacks=frozenset({INT16}),
           versions=INT8_ONLY, runtime=("1.9.0", "1.14.0")),
    OpSpec(T.SPLIT, o.SplitOptions, True, quant=QuantRule((1,), OutputRule.SHARED),
           int16=I16_2, versions=((3, Types(in1=I16)), (2, Types(in1=I8)), (1, ALWAYS)),
           runtime=("1.5.0", "1.14.0", "2.3.0"), fold=f.split),
    # TF writes int8/uint8 as version 2, bool 3, int16 4 (op_version.cc)
    OpSpec(T.UNPACK, o.UnpackOptions, True, quant=SHARED_1,
           versions=((4, Types(in0=I16, out0=I16)), (3, Types(in0="bool")),
                     (2, Types(in0=(I8, "uint8"))), (1, ALWAYS)),
           runtime=("1.11.0", "1.14.0", "2.2.0", "2.3.0"), fold=f.unpack),
    OpSpec(T.SPLIT_V, o.SplitVOptions, True, quant=SHARED_1, int16=I16_2,
           versions=((3, Types(in0=I16)), (2, Types(in0=I8)), (1, ALWAYS)),
           runtime=("1.13.1", "1.14.0", "2.3.0"), fold=f.split_v),
    OpSpec(T.LESS, quant=COMPARE, lacks=NO_INT16, versions=COMPARISONS,
           runtime=COMPARE_RUNTIME, fold=f.elementwise(np.less)),
    OpSpec(T.LESS_EQUAL, quant=COMPARE, lacks=NO_INT16, versions=COMPARISONS,
           runtime=COMPARE_RUNTIME, fold=f.elementwise(np.less_equal)),
    OpSpec(T.GREATER, quant=COMPARE, lacks=NO_INT16, versions=COMPARISONS,
           runtime=COMPARE_RUNTIME, fold=f.elementwise(np.greater)),
    OpSpec(T.GREATER_EQUAL, quant=COMPARE, lacks=NO_INT16, versions=COMPARISONS,
           runtime=COMPARE_RUNTIME, fold=f.elementwise(np.greater_equal)),
    # float only here: equality of quantized codes is not equality of values
    OpSpec(T.EQUAL, versions=COMPARISONS,
           runtime=COMPARE_RUNTIME, fold=f.elementwise(np.equal)),
    # values move: the two value inputs and the output share parameters
    OpSpec(T.SELECT_V2, quant=QuantRule((1, 2), OutputRule.SHARED, constants_clamp=True),
           int16=I16_2,
           # TF writes int8 as version 1, int16 as 2 (runtime of 2: a guess, not checked)
           versions=((2, Types(in1=I16)), (1, ALWAYS)), runtime=("2.2.0", "2.12.0"),
           fold=f.select),
    OpSpec(T.LOGICAL_AND, versions=ALWAYS_1, runtime=("1.14.0",),
           fold=f.elementwise(np.logical_and)),
    # the fill value's type: TF writes bool (a mask) as version 2
    OpSpec(T.FILL, versions=((3, Types(in1=(I8, I16))), (2, Types(in1="bool")), (1, ALWAYS)),
           runtime=("1.13.0", "2.3.0", "2.5.0"), fold=f.fill),
    OpSpec(T.RANGE, versions=ALWAYS_1, runtime=("1.13.0",), fold=f.arange),
)

# --- issue #12: fused recurrent ops (frontend.tf_rnn); their states are variables ------------
# UNIDIRECTIONAL_SEQUENCE_LSTM's 24 inputs in LiteRT's order: 0 input; 1-4 input-to-{input,
# forget, cell, output} weights; 5-8 recurrent-to-the-same; 9-11 peepholes; 12-15 gate biases;
# 16-17 projection weights and bias; 18 output state, 19 cell state (variables); 20-23 layer
# norm coefficients. Integer (8x8_16: quantize.lstm) reads the rule for input 0 and the
# output; LiteRT has no int16x8 or uint8 kernel for it (TF's int16x8 quantizer refuses it).
# Versions as op_version.cc writes them (its 5, int16 activations, has no LiteRT kernel).
# UNIDIRECTIONAL_SEQUENCE_RNN (input, weights, recurrent weights, bias, hidden state) has
# float and hybrid kernels only (int8 weights per tensor, float activations).
HYBRID_LSTM = Types(in0=F32, in2=I8, out0=F32)
RECURRENT = (
    OpSpec(T.UNIDIRECTIONAL_SEQUENCE_LSTM, o.UnidirectionalSequenceLSTMOptions, True,
           quant=OWN_1, lacks=frozenset({INT16, UINT8}), fused=FusedKernel.LSTM_8X8_16,
           hybrid=Hybrid(False, True, weights_input=1, group=(2, 3, 4, 5, 6, 7, 8, 16)),
           versions=((4, NonDefault("diagonal_recurrent_tensors", False)),
                     (3, both(HYBRID_LSTM, NonDefault("asymmetric_quantize_inputs", False))),
                     (2, HYBRID_LSTM), (1, ALWAYS)),
           runtime=("1.13.1", "1.14.0", "2.3.0", "2.12.0")),
    OpSpec(T.UNIDIRECTIONAL_SEQUENCE_RNN, o.SequenceRNNOptions, True,
           hybrid=Hybrid(False, True, group=(2,)),
           versions=((3, both(Types(in1=I8, out0=F32),
                              NonDefault("asymmetric_quantize_inputs", False))),
                     (2, Types(in1=I8, out0=F32)), (1, ALWAYS)),
           runtime=("1.14.0", "1.14.0", "2.3.0")),
)

# --- issue #12: loops kept as loops (frontend.tf_while), where activations stay float ----------
# WHILE runs its body subgraph while its condition subgraph gives true (WhileOptions: both
# graphs); a tensor list in the body is one tensor, its items written by DYNAMIC_UPDATE_SLICE
# (read by GATHER). Integer rule PAIRED: WHILE copies each loop variable's raw values, so input
# i is read at output i's parameters (quantize.loops quantizes the subgraphs; int8 keeps loops,
# int16x8 and uint8 unroll them: converter.FUSED_RNNS).
LOOPS = (
    OpSpec(T.WHILE, o.WhileOptions, True, quant=QuantRule(ALL, OutputRule.PAIRED),
           versions=ALWAYS_1, runtime=("1.15.0",)),
    OpSpec(T.DYNAMIC_UPDATE_SLICE, versions=ALWAYS_1, runtime=("2.9.0",)),
)

OPS: dict[OpType, OpSpec] = {s.op: s for s in (*WEIGHTED, *ARITHMETIC, *UNARY, *REDUCING,
                                                *MOVING, *OTHER, *ISSUE12, *RECURRENT,
                                                *LOOPS)}
