"""The lowering table: one row per TF op type → a handler that emits TFLite-level IR ops.

Weight layouts change on the way (TF conv filters are HWIO, TFLite's are OHWI; MatMul's
``[in, out]`` becomes FULLY_CONNECTED's ``[out, in]``); constant weights are transposed in
numpy, dynamic ones through a TRANSPOSE op. Activations stay separate ops here and are fused
by ``passes.fuse_activations``. The rows for ops beyond CNNs are ``tf_math_ops``'s, the
loop and tensor-list rows ``tf_loops``'s; what rows share is in ``tf_rows``.
"""

from __future__ import annotations

import numpy as np

from quantkit.frontend import tf_loops, tf_math_ops
from quantkit.frontend.builder import zero_bias
from quantkit.frontend.tf_context import TFContext
from quantkit.frontend.tf_rows import (Handler, binary, check_nhwc, hw, int32_operand,
                                       padding_attr, reduce_op, tensor_type, unary)
from quantkit.ir import options as o
from quantkit.ir.graph import Tensor
from quantkit.quantize.fake_quant import fake_quant as fake_quantized
from quantkit.types import OpType, TrainedRange


def _transposed(ctx: TFContext, tensor: Tensor, perm: tuple[int, ...], suffix: str) -> Tensor:
    shape = None if tensor.shape is None else tuple(tensor.shape[p] for p in perm)
    out = ctx.new_tensor(suffix, tensor.dtype, shape)
    return _keeping_range(tensor, ctx.emit(
        OpType.TRANSPOSE, [tensor, ctx.constant(f"{suffix}/perm", perm, np.int32)], out=out))


def _keeping_range(source: Tensor, moved: Tensor) -> Tensor:
    """A weight's layout change keeps the range a FakeQuant trained for it."""
    if source.is_const and moved.is_const:
        moved.trained_range = source.trained_range
    return moved


def _reshaped(ctx: TFContext, tensor: Tensor, shape: tuple[int, ...], suffix: str) -> Tensor:
    out = ctx.new_tensor(suffix, tensor.dtype, tuple(None if d == -1 else d for d in shape))
    return _keeping_range(tensor, ctx.emit(
        OpType.RESHAPE, [tensor, ctx.constant(f"{suffix}/shape", shape, np.int32)], out=out))


# --- convolutions and matmul -------------------------------------------------------------
def conv2d(ctx: TFContext) -> None:
    check_nhwc(ctx)
    x, w = ctx.input(0), ctx.input(1)
    sh, sw = hw(ctx.attr("strides"))
    dh, dw = hw(ctx.attr("dilations"))
    w_ohwi = _transposed(ctx, w, (3, 0, 1, 2), "filter_ohwi")
    bias = zero_bias(ctx, w.shape[3], w.dtype)
    ctx.emit(OpType.CONV_2D, [x, w_ohwi, bias],
             o.Conv2DOptions(padding_attr(ctx), sw, sh, dilation_w_factor=dw, dilation_h_factor=dh))


def depthwise_conv2d(ctx: TFContext) -> None:
    check_nhwc(ctx)
    x, w = ctx.input(0), ctx.input(1)
    kh, kw, cin, mult = w.shape
    sh, sw = hw(ctx.attr("strides"))
    dh, dw = hw(ctx.attr("dilations"))
    w_1hwc = _reshaped(ctx, w, (1, kh, kw, cin * mult), "filter_1hwc")
    bias = zero_bias(ctx, cin * mult, w.dtype)
    ctx.emit(OpType.DEPTHWISE_CONV_2D, [x, w_1hwc, bias],
             o.DepthwiseConv2DOptions(padding_attr(ctx), sw, sh, mult, dilation_w_factor=dw,
                                      dilation_h_factor=dh))


def conv2d_transpose(ctx: TFContext) -> None:
    """Conv2DBackpropInput(output_shape, filter HW(Cout)(Cin), x) → TRANSPOSE_CONV."""
    check_nhwc(ctx)
    out_shape, w, x = ctx.input(0), ctx.input(1), ctx.input(2)
    sh, sw = hw(ctx.attr("strides"))
    if hw(ctx.attr("dilations")) != (1, 1):
        raise ctx.error("dilated transposed convolution has no TFLite builtin")
    static = ctx.output_tensor().shape
    if not out_shape.is_const and static is not None and None not in static:
        out_shape = ctx.constant("output_shape", static, np.int32)
    # Else keep the computed shape (Keras's from a dynamic batch): LiteRT's kernel checks the
    # output batch against the input's, so a batch fixed at 1 fails for any other batch.
    w_ohwi = _transposed(ctx, w, (2, 0, 1, 3), "filter_ohwi")
    # No bias input (TF's converter writes none either): a bias makes it version 3. A
    # following BiasAdd still folds in (passes.fold_batchnorm fills the slot).
    ctx.emit(OpType.TRANSPOSE_CONV, [out_shape, w_ohwi, x, None],
             o.TransposeConvOptions(padding_attr(ctx), sw, sh))


def matmul(ctx: TFContext) -> None:
    x, w = ctx.input(0), ctx.input(1)
    if ctx.attr("transpose_a"):
        raise ctx.error("MatMul with transpose_a")
    w_oi = w if ctx.attr("transpose_b") else _transposed(ctx, w, (1, 0), "weights_oi")
    units = w_oi.shape[0]
    ctx.emit(OpType.FULLY_CONNECTED, [x, w_oi, zero_bias(ctx, units, w.dtype)],
             o.FullyConnectedOptions())


def batch_matmul(ctx: TFContext) -> None:
    """x @ W with a constant 2-D W → FULLY_CONNECTED on N-D input; else BATCH_MATMUL."""
    x, w = ctx.input(0), ctx.input(1)
    adj_x, adj_y = bool(ctx.attr("adj_x")), bool(ctx.attr("adj_y"))
    if w.is_const and w.data.ndim == 2 and not adj_x:
        w_oi = w if adj_y else _transposed(ctx, w, (1, 0), "weights_oi")
        ctx.emit(OpType.FULLY_CONNECTED, [x, w_oi, zero_bias(ctx, w_oi.shape[0], w.dtype)],
                 o.FullyConnectedOptions(keep_num_dims=True))
    else:
        ctx.emit(OpType.BATCH_MATMUL, [x, w], o.BatchMatMulOptions(adj_x, adj_y))


def bias_add(ctx: TFContext) -> None:
    check_nhwc(ctx)
    ctx.emit(OpType.ADD, ctx.inputs(), o.AddOptions())


def fused_batch_norm(ctx: TFContext) -> None:
    """Inference BatchNorm: y = x·a + b, a = γ/√(σ² + ε), b = β − μ·a (folded by passes)."""
    check_nhwc(ctx)
    if ctx.attr("is_training"):
        raise ctx.error("BatchNorm in training mode; trace the model with training=False")
    gamma, beta, mean, var = (ctx.const_input(i).astype(np.float64) for i in range(1, 5))
    scale = gamma / np.sqrt(var + ctx.attr("epsilon"))
    x = ctx.input(0)
    scaled = ctx.emit(OpType.MUL, [x, ctx.constant("scale", scale, x.dtype)], o.MulOptions(),
                      out=ctx.new_tensor("scaled", x.dtype, x.shape))
    ctx.emit(OpType.ADD, [scaled, ctx.constant("offset", beta - mean * scale, x.dtype)],
             o.AddOptions())


# --- pooling and reductions ----------------------------------------------------------------
def _pool(op_type: OpType) -> Handler:
    def handler(ctx: TFContext) -> None:
        check_nhwc(ctx)
        kh, kw = hw(ctx.attr("ksize"))
        sh, sw = hw(ctx.attr("strides"))
        ctx.emit(op_type, [ctx.input(0)], o.Pool2DOptions(padding_attr(ctx), sw, sh, kw, kh))
    return handler


# --- elementwise -----------------------------------------------------------------------------
def softmax(ctx: TFContext) -> None:
    ctx.emit(OpType.SOFTMAX, [ctx.input(0)], o.SoftmaxOptions(1.0))


def leaky_relu(ctx: TFContext) -> None:
    ctx.emit(OpType.LEAKY_RELU, [ctx.input(0)], o.LeakyReluOptions(float(ctx.attr("alpha"))))


def cast(ctx: TFContext) -> None:
    x, out = ctx.input(0), ctx.output_tensor()
    if np.dtype(x.dtype) == np.dtype(out.dtype):
        ctx.alias(x)
        return
    ctx.emit(OpType.CAST, [x], o.CastOptions(tensor_type(ctx, x.dtype),
                                             tensor_type(ctx, out.dtype)))


# --- shapes and data movement -------------------------------------------------------------------
def reshape(ctx: TFContext) -> None:
    ctx.emit(OpType.RESHAPE, [ctx.input(0), int32_operand(ctx, 1, "shape")])


def squeeze(ctx: TFContext) -> None:
    ctx.emit(OpType.SQUEEZE, [ctx.input(0)],
             o.SqueezeOptions(tuple(int(d) for d in ctx.attr("squeeze_dims"))))


def expand_dims(ctx: TFContext) -> None:
    ctx.emit(OpType.EXPAND_DIMS, [ctx.input(0), int32_operand(ctx, 1, "axis")])


def transpose(ctx: TFContext) -> None:
    """Transpose → TRANSPOSE; of a TRANSPOSE this lowering emitted, one with the composed
    permutation (``transpose(transpose(x, p), q) = transpose(x, p[q])``), none when that is
    the identity (a fused RNN's time-major output, which Keras turns back to batch-major)."""
    perm = ctx.const_input(1).astype(np.int32)
    x = ctx.input(0)
    inner = ctx.producer(x, OpType.TRANSPOSE)
    if inner is not None and inner.inputs[1].is_const:
        x, perm = inner.inputs[0], inner.inputs[1].data.astype(np.int32)[perm]
    if np.array_equal(perm, np.arange(len(perm))):
        ctx.alias(x)  # Tensordot transposes by the identity
        return
    ctx.emit(OpType.TRANSPOSE, [x, ctx.constant("perm", perm)])


def concat(ctx: TFContext) -> None:
    values = ctx.inputs()[:-1]
    axis = int(ctx.const_input(len(values)).reshape(-1)[0])
    rank = len(ctx.output_tensor().shape or ())
    ctx.emit(OpType.CONCATENATION, values, o.ConcatenationOptions(axis % rank if rank else axis))


def pack(ctx: TFContext) -> None:
    values = ctx.inputs()
    ctx.emit(OpType.PACK, values, o.PackOptions(len(values), int(ctx.attr("axis"))))


def pad(ctx: TFContext) -> None:
    paddings = ctx.const_input(1).astype(np.int32)
    inputs = [ctx.input(0), ctx.constant("paddings", paddings)]
    if ctx.node.type == "PadV2":
        value = ctx.const_input(2)
        if np.any(value != 0):
            ctx.emit(OpType.PADV2, inputs + [ctx.input(2)])
            return
    ctx.emit(OpType.PAD, inputs)


def _packed_item(ctx: TFContext, options: o.StridedSliceOptions) -> Tensor | None:
    """The item ``x[i]`` picks when ``x`` is a PACK (axis 0) this lowering emitted, else None
    (Keras's ``outputs[-1]`` of a loop's stacked outputs)."""
    packed = ctx.producer(ctx.input(0), OpType.PACK)
    begin, strides = ctx.input(1), ctx.input(3)
    if packed is None or packed.options.axis != 0 or not begin.is_const \
            or not strides.is_const or begin.data.size != 1 or strides.data.size != 1:
        return None
    if (options.shrink_axis_mask & 1, options.begin_mask & 1, options.ellipsis_mask,
            options.new_axis_mask, int(strides.data.reshape(-1)[0])) != (1, 0, 0, 0, 1):
        return None
    i = int(begin.data.reshape(-1)[0])
    return packed.inputs[i] if -len(packed.inputs) <= i < len(packed.inputs) else None


def strided_slice(ctx: TFContext) -> None:
    begin, end, strides = (ctx.input(i) for i in (1, 2, 3))
    options = o.StridedSliceOptions(*(int(ctx.attr(m)) for m in (
        "begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")))
    item = _packed_item(ctx, options)
    if item is not None:  # the PACK goes too when nothing else reads it
        ctx.alias(item)
        return
    ctx.emit(OpType.STRIDED_SLICE, [ctx.input(0), begin, end, strides], options)


def shape(ctx: TFContext) -> None:
    out = ctx.output_tensor()
    ctx.emit(OpType.SHAPE, [ctx.input(0)], o.ShapeOptions(tensor_type(ctx, out.dtype)))


def gather(ctx: TFContext) -> None:
    axis = int(ctx.const_input(2).reshape(-1)[0])
    ctx.emit(OpType.GATHER, [ctx.input(0), ctx.input(1)],
             o.GatherOptions(axis, int(ctx.attr("batch_dims"))))


def tile(ctx: TFContext) -> None:
    """Keras 3 ``UpSampling2D(interpolation="nearest")`` repeats rows and columns by TILE."""
    ctx.emit(OpType.TILE, [ctx.input(0), int32_operand(ctx, 1, "multiples")])


def depth_to_space(ctx: TFContext) -> None:
    check_nhwc(ctx)
    ctx.emit(OpType.DEPTH_TO_SPACE, [ctx.input(0)],
             o.DepthToSpaceOptions(int(ctx.attr("block_size"))))


def _resize(op_type: OpType, options: type) -> Handler:
    def handler(ctx: TFContext) -> None:
        ctx.emit(op_type, [ctx.input(0), int32_operand(ctx, 1, "size")],
                 options(bool(ctx.attr("align_corners")), bool(ctx.attr("half_pixel_centers"))))
    return handler


# --- quantization-aware training ------------------------------------------------------------
def fake_quant(ctx: TFContext) -> None:
    """A FakeQuant op leaves no op: on a weight (a constant) it rounds the values once, as the
    trained model computed them; on an activation its trained range is kept on the tensor
    (``Tensor.trained_range``) for the quantizer, and the value passes through unchanged."""
    x = ctx.input(0)
    if ctx.op_type == "FakeQuantWithMinMaxArgs":
        lo, hi = np.float32(ctx.attr("min")), np.float32(ctx.attr("max"))
    else:
        lo, hi = ctx.const_input(1).astype(np.float32), ctx.const_input(2).astype(np.float32)
    bits, narrow = int(ctx.attr("num_bits")), bool(ctx.attr("narrow_range"))
    if x.is_const:
        rounded = ctx.constant("fake_quant", fake_quantized(x.data, lo, hi, bits, narrow))
        per_channel = bool(np.ndim(lo) or np.ndim(hi))  # else one grid: kept per tensor
        rounded.trained_range = TrainedRange(
            tuple(float(v) for v in np.broadcast_to(lo, np.shape(hi) or np.shape(lo)))
            if per_channel else float(lo),
            tuple(float(v) for v in np.broadcast_to(hi, np.shape(lo) or np.shape(hi)))
            if per_channel else float(hi), bits, narrow)
        ctx.alias(rounded)
        return
    if np.ndim(lo) or np.ndim(hi):
        raise ctx.error("a per-channel FakeQuant on an activation: TFLite quantizes "
                        "activations per tensor")
    x.trained_range = TrainedRange(float(lo), float(hi), bits, narrow)
    ctx.alias(x)
# TF ops with no builtin of their own that a pattern pass absorbs into one (Erfc into GELU).
# They are lowered as custom ops; one left over after the passes is an error unless the user
# allows custom ops (``converter`` checks).
ONLY_IN_PATTERNS = {"Erfc": "GELU, 0.5·x·erfc(−x/√2)"}


def lower_custom(ctx: TFContext) -> None:
    """An op with no builtin becomes a custom op named by its TF type (allow_custom_ops)."""
    ctx.emit(OpType.CUSTOM, ctx.inputs(), results=len(ctx.node.outputs),
             custom_code=ctx.node.type)


LOWERINGS: dict[str, Handler] = {
    "Conv2D": conv2d,
    "DepthwiseConv2dNative": depthwise_conv2d,
    "Conv2DBackpropInput": conv2d_transpose,
    "MatMul": matmul,
    "BatchMatMulV2": batch_matmul,
    "BatchMatMulV3": batch_matmul,
    "BiasAdd": bias_add,
    "FusedBatchNormV3": fused_batch_norm,
    "FusedBatchNorm": fused_batch_norm,
    "MaxPool": _pool(OpType.MAX_POOL_2D),
    "AvgPool": _pool(OpType.AVERAGE_POOL_2D),
    "Mean": reduce_op(OpType.MEAN),
    "Max": reduce_op(OpType.REDUCE_MAX),
    "Sum": reduce_op(OpType.SUM),
    "Prod": reduce_op(OpType.REDUCE_PROD),
    "Add": binary(OpType.ADD),
    "AddV2": binary(OpType.ADD),
    "Sub": binary(OpType.SUB),
    "Mul": binary(OpType.MUL),
    "RealDiv": binary(OpType.DIV),
    "Maximum": binary(OpType.MAXIMUM),
    "Minimum": binary(OpType.MINIMUM),
    "SquaredDifference": binary(OpType.SQUARED_DIFFERENCE),
    "Relu": unary(OpType.RELU),
    "Relu6": unary(OpType.RELU6),
    "LeakyRelu": leaky_relu,
    "Sigmoid": unary(OpType.LOGISTIC),
    "Tanh": unary(OpType.TANH),
    "Softmax": softmax,
    "Rsqrt": unary(OpType.RSQRT),
    "Sqrt": unary(OpType.SQRT),
    "Neg": unary(OpType.NEG),
    "Exp": unary(OpType.EXP),
    "Square": unary(OpType.SQUARE),
    "Cast": cast,
    "Reshape": reshape,
    "Squeeze": squeeze,
    "ExpandDims": expand_dims,
    "Transpose": transpose,
    "ConcatV2": concat,
    "Pack": pack,
    "Pad": pad,
    "PadV2": pad,
    "StridedSlice": strided_slice,
    "Shape": shape,
    "GatherV2": gather,
    "Tile": tile,
    "DepthToSpace": depth_to_space,
    "Erfc": lower_custom,
    "FakeQuantWithMinMaxVars": fake_quant,
    "FakeQuantWithMinMaxVarsPerChannel": fake_quant,
    "FakeQuantWithMinMaxArgs": fake_quant,
    "ResizeBilinear": _resize(OpType.RESIZE_BILINEAR, o.ResizeBilinearOptions),
    "ResizeNearestNeighbor": _resize(OpType.RESIZE_NEAREST_NEIGHBOR,
                                     o.ResizeNearestNeighborOptions),
}
# RNNs: the slicing ops of unrolled loops (While and tensor lists: ``lower``).
LOWERINGS.update(tf_loops.LOWERINGS)
# Attention, embeddings, Conv3D, comparisons and math ops (issue #12).
LOWERINGS.update(tf_math_ops.LOWERINGS)
