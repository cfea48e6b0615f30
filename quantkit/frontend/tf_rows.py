"""What the TF lowering rows (``tf_ops``, ``tf_math_ops``) share: readers of a node's
attributes and operands, and the row makers for TF ops that map one to one onto a builtin."""

from __future__ import annotations

from typing import Callable

import numpy as np

from quantkit.frontend.tf_context import TFContext
from quantkit.ir import options as o
from quantkit.ir.graph import Tensor
from quantkit.types import NUMPY_TENSOR_TYPES, OpType, Padding, TensorType

Handler = Callable[[TFContext], None]


def padding_attr(ctx: TFContext) -> Padding:
    """The node's ``padding`` attribute (SAME or VALID; TF's EXPLICIT is refused)."""
    padding = ctx.attr("padding")
    if padding not in ("SAME", "VALID"):
        raise ctx.error(f"padding {padding!r} is not supported (only SAME and VALID)")
    return Padding[padding]


def check_nhwc(ctx: TFContext) -> None:
    """TFLite's convolutions and pools are channels-last only."""
    fmt = ctx.attr("data_format")
    if fmt not in ("NHWC", "NDHWC"):
        raise ctx.error(f"data_format {fmt!r}; TFLite runs NHWC only")


def hw(values: list[int]) -> tuple[int, int]:
    """(h, w) from an NHWC strides/dilations/ksize attribute."""
    return int(values[1]), int(values[2])


def int32_operand(ctx: TFContext, index: int, suffix: str) -> Tensor:
    """Input ``index`` (a shape, axis or size): a constant as int32, as TFLite wants it, or the
    dynamic tensor as it is."""
    tensor = ctx.input(index)
    return ctx.constant(suffix, tensor.data, np.int32) if tensor.is_const else tensor


def reduce_op(op_type: OpType) -> Handler:
    """A reduction over constant axes (``keep_dims`` kept)."""
    def handler(ctx: TFContext) -> None:
        axes = ctx.const_input(1).astype(np.int32).reshape(-1)
        ctx.emit(op_type, [ctx.input(0), ctx.constant("axes", axes)],
                 o.ReducerOptions(bool(ctx.attr("keep_dims"))))
    return handler


BINARY_OPTIONS = {OpType.ADD: o.AddOptions, OpType.SUB: o.SubOptions, OpType.MUL: o.MulOptions,
                   OpType.DIV: o.DivOptions}


def binary(op_type: OpType) -> Handler:
    """A one-to-one elementwise op of two operands (options only where the schema has them)."""
    make_options = BINARY_OPTIONS.get(op_type)

    def handler(ctx: TFContext) -> None:
        ctx.emit(op_type, ctx.inputs(), make_options() if make_options else None)
    return handler


def unary(op_type: OpType) -> Handler:
    """A one-to-one op of one operand and no options."""
    def handler(ctx: TFContext) -> None:
        ctx.emit(op_type, [ctx.input(0)])
    return handler


def tensor_type(ctx: TFContext, dtype: np.dtype) -> TensorType:
    """The schema's tensor type of a numpy dtype; an error naming the node if it has none."""
    if np.dtype(dtype) not in NUMPY_TENSOR_TYPES:
        raise ctx.error(f"dtype {np.dtype(dtype).name} has no TFLite tensor type")
    return NUMPY_TENSOR_TYPES[np.dtype(dtype)]
