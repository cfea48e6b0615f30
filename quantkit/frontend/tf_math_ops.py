"""Lowering rows for what models beyond CNNs use (issue #12): attention (Einsum, masks),
embeddings (comparisons, SelectV2), Conv3D, activations without a builtin (SELU, softplus)
and math, split and arg ops. ``tf_ops.LOWERINGS`` takes these rows in."""

from __future__ import annotations

import numpy as np

from quantkit.frontend import einsum as einsum_lowering
from quantkit.frontend import tf_loops
from quantkit.frontend.builder import zero_bias
from quantkit.frontend.tf_context import TFContext
from quantkit.frontend.tf_rows import (Handler, binary, check_nhwc, int32_operand, padding_attr,
                                       reduce_op, tensor_type, unary)
from quantkit.ir import options as o
from quantkit.types import OpType


def einsum(ctx: TFContext) -> None:
    if len(ctx.node.inputs) != 2:
        raise ctx.error(f"Einsum with {len(ctx.node.inputs)} operands (only two)")
    einsum_lowering.lower(ctx, ctx.attr("equation"), ctx.input(0), ctx.input(1))


def conv3d(ctx: TFContext) -> None:
    """Conv3D: TFLite's CONV_3D keeps TF's DHWIO filter; a zero bias slot for the fold."""
    check_nhwc(ctx)
    x, w = ctx.input(0), ctx.input(1)
    _, sd, sh, sw, _ = (int(v) for v in ctx.attr("strides"))
    _, dd, dh, dw, _ = (int(v) for v in ctx.attr("dilations"))
    ctx.emit(OpType.CONV_3D, [x, w, zero_bias(ctx, w.shape[4], w.dtype)],
             o.Conv3DOptions(padding_attr(ctx), sd, sw, sh, dilation_d_factor=dd,
                             dilation_w_factor=dw, dilation_h_factor=dh))


def selu(ctx: TFContext) -> None:
    """selu(x) = λ·(x > 0 ? x : α(eˣ − 1)) = λ·leaky_relu(elu(x), α): three builtins."""
    x = ctx.input(0)
    elu = ctx.emit(OpType.ELU, [x], out=ctx.new_tensor("elu", x.dtype, x.shape))
    leaky = ctx.emit(OpType.LEAKY_RELU, [elu], o.LeakyReluOptions(_SELU_ALPHA),
                     out=ctx.new_tensor("leaky", x.dtype, x.shape))
    ctx.emit(OpType.MUL, [leaky, ctx.constant("scale", np.float32(_SELU_SCALE))], o.MulOptions())


_SELU_ALPHA, _SELU_SCALE = 1.6732632423543772, 1.0507009873554805


def softplus(ctx: TFContext) -> None:
    """softplus(x) = log(1 + eˣ), as TF's converter writes it (EXP, ADD, LOG)."""
    x = ctx.input(0)
    e = ctx.emit(OpType.EXP, [x], out=ctx.new_tensor("exp", x.dtype, x.shape))
    one_plus = ctx.emit(OpType.ADD, [e, ctx.constant("one", np.float32(1.0))], o.AddOptions(),
                        out=ctx.new_tensor("one_plus_exp", x.dtype, x.shape))
    ctx.emit(OpType.LOG, [one_plus])


def select(ctx: TFContext) -> None:
    ctx.emit(OpType.SELECT_V2, ctx.inputs())


def logical_and(ctx: TFContext) -> None:
    """``ones_like(x) & mask`` (Keras's causal attention mask) is ``mask``: a FILL of True
    leaves the other operand, which SELECT_V2 broadcasts as the FILL would have."""
    a, b = ctx.inputs()
    for fill, other in ((a, b), (b, a)):
        op = ctx.producer(fill, OpType.FILL)
        if op is not None and op.inputs[1].is_const and bool(np.all(op.inputs[1].data)):
            ctx.alias(other)
            return
    ctx.emit(OpType.LOGICAL_AND, [a, b])


def fill(ctx: TFContext) -> None:
    """A constant where it can be (``tf_loops.constant_fill``), else FILL."""
    if not tf_loops.constant_fill(ctx):
        ctx.emit(OpType.FILL, [int32_operand(ctx, 0, "dims"), ctx.input(1)])


def matrix_band_part(ctx: TFContext) -> None:
    """No builtin: only a constant band (Keras's causal mask of a static length) folds."""
    x, lower, upper = (ctx.const_input(i) for i in range(3))
    rows, cols = np.indices(x.shape[-2:])
    lower, upper = int(lower), int(upper)
    keep = ((lower < 0) | (rows - cols <= lower)) & ((upper < 0) | (cols - rows <= upper))
    ctx.alias(ctx.constant("band", np.where(keep, x, np.zeros_like(x))))


def tf_range(ctx: TFContext) -> None:
    ctx.emit(OpType.RANGE, ctx.inputs())


def split(ctx: TFContext) -> None:
    """Split(axis, x) → SPLIT(axis, x)."""
    n = int(ctx.attr("num_split"))
    ctx.emit(OpType.SPLIT, [int32_operand(ctx, 0, "axis"), ctx.input(1)], o.SplitOptions(n),
             results=n)


def split_v(ctx: TFContext) -> None:
    """SplitV(x, sizes, axis) → SPLIT_V(x, sizes, axis)."""
    n = int(ctx.attr("num_split"))
    ctx.emit(OpType.SPLIT_V, [ctx.input(0), int32_operand(ctx, 1, "size_splits"),
                              int32_operand(ctx, 2, "axis")], o.SplitVOptions(n), results=n)


def _arg(op_type: OpType, options: type) -> Handler:
    def handler(ctx: TFContext) -> None:
        out_type = tensor_type(ctx, ctx.output_tensor().dtype)
        ctx.emit(op_type, [ctx.input(0), int32_operand(ctx, 1, "axis")], options(out_type))
    return handler


def power(ctx: TFContext) -> None:
    """x², the common case, is SQUARE; other exponents POW (float only in LiteRT)."""
    y = ctx.input(1)
    if y.is_const and y.data.size == 1 and float(y.data.reshape(-1)[0]) == 2.0:
        ctx.emit(OpType.MUL, [ctx.input(0), ctx.input(0)], o.MulOptions())
        return
    ctx.emit(OpType.POW, ctx.inputs())


LOWERINGS: dict[str, Handler] = {
    "Einsum": einsum,
    "Conv3D": conv3d,
    "Elu": unary(OpType.ELU),
    "Selu": selu,
    "Softplus": softplus,
    "Pow": power,
    "Abs": unary(OpType.ABS),
    "Log": unary(OpType.LOG),
    "Min": reduce_op(OpType.REDUCE_MIN),
    "ArgMax": _arg(OpType.ARG_MAX, o.ArgMaxOptions),
    "ArgMin": _arg(OpType.ARG_MIN, o.ArgMinOptions),
    "Split": split,
    "SplitV": split_v,
    "Less": binary(OpType.LESS),
    "Greater": binary(OpType.GREATER),
    "LessEqual": binary(OpType.LESS_EQUAL),
    "GreaterEqual": binary(OpType.GREATER_EQUAL),
    "Equal": binary(OpType.EQUAL),
    "SelectV2": select,
    "LogicalAnd": logical_and,
    "Fill": fill,
    "MatrixBandPart": matrix_band_part,
    "Range": tf_range,
}
