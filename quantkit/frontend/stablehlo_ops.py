"""The StableHLO lowering table: one row per StableHLO op → a handler that emits TFLite IR.

Layouts change on the way as in ``tf_ops``: convolutions run NHWC with OHWI filters (any
``dim_numbers`` is transposed there; Flax's NHWC/HWIO needs only the filter transposed,
which folds), FULLY_CONNECTED takes ``[out, in]`` weights. Elementwise ops read their
operands unbroadcast (see ``stablehlo_context``). What JAX spells as a composition (softmax,
sigmoid, mean, ReLU) is lowered op by op here and recognized by ``stablehlo_patterns``.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from quantkit.frontend.builder import zero_bias
from quantkit.frontend.stablehlo_context import Comparison, StableHLOContext, tensor_type
from quantkit.frontend.stablehlo_patterns import all_equal
from quantkit.ir import options as o
from quantkit.ir.graph import Tensor, const
from quantkit.passes.pad import same_padding
from quantkit.types import NUMPY_TENSOR_TYPES, OpType, Padding

Handler = Callable[[StableHLOContext], None]


# --- helpers --------------------------------------------------------------------------------
def _permuted(ctx: StableHLOContext, x: Tensor, perm: tuple[int, ...], suffix: str) -> Tensor:
    """``x`` transposed so that new axis k is old axis ``perm[k]`` (a constant folds)."""
    if perm == tuple(range(len(perm))):
        return x
    out = ctx.new_tensor(suffix, x.dtype, [x.shape[p] for p in perm])
    return ctx.emit(OpType.TRANSPOSE, [x, ctx.constant(f"{suffix}/perm", perm, np.int32)],
                    out=out)


def _broadcast_shape(*tensors: Tensor) -> tuple[int, ...]:
    return tuple(np.broadcast_shapes(*(t.shape for t in tensors)))


def _spatial_padding(ctx: StableHLOContext, x: Tensor, pads: Any, window: tuple[int, int],
                     strides: tuple[int, int], dilations: tuple[int, int] = (1, 1),
                     same_ok: bool = True, explicit_ok: bool = True) -> tuple[Tensor, Padding]:
    """NHWC ``x`` and the padding for its op: VALID or SAME when ``pads`` (``[[top, bottom],
    [left, right]]``) is one of them, else an explicit zero PAD then VALID."""
    pads = np.asarray(pads, np.int64).reshape(2, 2)
    if not pads.any():
        return x, Padding.VALID
    same = [same_padding(x.shape[1 + i], window[i], strides[i], dilations[i]) for i in (0, 1)]
    if same_ok and [tuple(p) for p in pads.tolist()] == same:
        return x, Padding.SAME
    if not explicit_ok or (pads < 0).any():
        raise ctx.error(f"padding {pads.tolist()} is neither VALID nor SAME (SAME here would "
                        f"be {same})")
    paddings = np.array([[0, 0], *pads.tolist(), [0, 0]], np.int32)
    shape = [d + int(p.sum()) for d, p in zip(x.shape, paddings)]
    out = ctx.new_tensor("padded", x.dtype, shape)
    return ctx.emit(OpType.PAD, [x, ctx.constant("paddings", paddings)], out=out), Padding.VALID


def _combiner(ctx: StableHLOContext) -> str:
    """The op a reduce/reduce_window body applies to its two arguments."""
    block = ctx.op.regions[0].blocks[0]
    ops = [op.operation for op in block.operations]
    if len(ops) != 2 or ops[1].name != "stablehlo.return" \
            or set(ops[0].operands) != set(block.arguments):
        raise ctx.error(f"the reduction body {[op.name for op in ops]} is not one binary op")
    return ops[0].name


def _identity(combiner: str, dtype: np.dtype) -> float | None:
    if combiner == "stablehlo.maximum":
        return -np.inf if np.issubdtype(dtype, np.floating) else np.iinfo(dtype).min
    return {"stablehlo.add": 0, "stablehlo.multiply": 1}.get(combiner)


def _init_is_identity(ctx: StableHLOContext, combiner: str, x: Tensor) -> bool:
    identity = _identity(combiner, x.dtype)
    return identity is not None and bool(np.all(ctx.const_input(1) == identity))


# --- convolution and matmul ---------------------------------------------------------------------
def convolution(ctx: StableHLOContext) -> None:
    from jaxlib.mlir.dialects import stablehlo as sh  # optional dependency (the jax extra)

    dn = sh.ConvDimensionNumbers(ctx.op.attributes["dimension_numbers"])
    spatial = list(dn.input_spatial_dimensions)
    if len(spatial) != 2:
        raise ctx.error(f"{len(spatial)}-D convolution: only 2-D has a TFLite builtin here")
    if any(d != 1 for d in ctx.attr("lhs_dilation", [1, 1])) or any(
            ctx.attr("window_reversal", [False, False])) or ctx.attr("batch_group_count", 1) != 1:
        raise ctx.error("transposed (lhs_dilation), reversed or batch-grouped convolutions "
                        "are not supported")
    x = _permuted(ctx, ctx.input(0), (dn.input_batch_dimension, *spatial,
                                      dn.input_feature_dimension), "input_nhwc")
    w = _permuted(ctx, ctx.input(1), (dn.kernel_output_feature_dimension,
                                      *dn.kernel_spatial_dimensions,
                                      dn.kernel_input_feature_dimension), "filter_ohwi")
    sh_, sw = ctx.attr("window_strides", [1, 1])
    dh, dw = ctx.attr("rhs_dilation", [1, 1])
    x, padding = _spatial_padding(ctx, x, ctx.attr("padding", np.zeros((2, 2))),
                                  tuple(w.shape[1:3]), (sh_, sw), (dh, dw))
    out_perm = (dn.output_batch_dimension, *dn.output_spatial_dimensions,
                dn.output_feature_dimension)
    dtype, shape = tensor_type(ctx.op.results[0])
    nhwc = None if out_perm == (0, 1, 2, 3) else ctx.new_tensor(
        "nhwc", dtype, [shape[p] for p in out_perm])
    groups, cout, cin = ctx.attr("feature_group_count", 1), w.shape[0], x.shape[3]
    if groups == 1:
        y = ctx.emit(OpType.CONV_2D, [x, w, zero_bias(ctx, cout, w.dtype)],
                     o.Conv2DOptions(padding, sw, sh_, dilation_w_factor=dw,
                                     dilation_h_factor=dh), out=nhwc)
    elif groups == cin and w.shape[3] == 1:  # depthwise: output channel c·m + j
        w_1hwc = _permuted(ctx, w, (3, 1, 2, 0), "filter_1hwc")
        y = ctx.emit(OpType.DEPTHWISE_CONV_2D, [x, w_1hwc, zero_bias(ctx, cout, w.dtype)],
                     o.DepthwiseConv2DOptions(padding, sw, sh_, cout // cin,
                                              dilation_w_factor=dw, dilation_h_factor=dh),
                     out=nhwc)
    else:
        raise ctx.error(f"feature_group_count={groups} with {cin} input channels: only 1 "
                        "(convolution) or the channel count (depthwise) is supported")
    if nhwc is not None:
        back = tuple(int(p) for p in np.argsort(out_perm))
        ctx.emit(OpType.TRANSPOSE, [y, ctx.constant("output_perm", back, np.int32)])


def dot_general(ctx: StableHLOContext) -> None:
    """x·W with a constant 2-D W over x's last axis → FULLY_CONNECTED; batch-leading
    ``[B..., M, K]·[B..., K, N]`` (either side transposed) → BATCH_MATMUL."""
    from jaxlib.mlir.dialects import stablehlo as sh  # optional dependency (the jax extra)

    dn = sh.DotDimensionNumbers(ctx.op.attributes["dot_dimension_numbers"])
    lb, rb = list(dn.lhs_batching_dimensions), list(dn.rhs_batching_dimensions)
    lc, rc = list(dn.lhs_contracting_dimensions), list(dn.rhs_contracting_dimensions)
    x, w = ctx.input(0), ctx.input(1)
    rank = len(x.shape)
    if not lb and rank >= 2 and lc == [rank - 1] and w.is_const and w.data.ndim == 2:
        w_oi = w.data.T if rc == [0] else w.data
        ctx.emit(OpType.FULLY_CONNECTED, [x, ctx.constant("weights_oi", w_oi),
                                          zero_bias(ctx, w_oi.shape[0], w.dtype)],
                 o.FullyConnectedOptions(keep_num_dims=rank > 2))
        return
    nb = len(lb)
    if lb != list(range(nb)) or rb != lb or len(lc) != 1 or len(rc) != 1 \
            or rank != nb + 2 or len(w.shape) != nb + 2:
        raise ctx.error(f"dot_general with batch dims {lb}×{rb}, contracting {lc}×{rc} on "
                        f"ranks {rank}×{len(w.shape)}: only x·W (constant 2-D W) and "
                        "batch-leading matmuls are supported")
    ctx.emit(OpType.BATCH_MATMUL, [x, w], o.BatchMatMulOptions(lc[0] == nb, rc[0] == nb + 1))


# --- pooling and reductions ----------------------------------------------------------------------
def reduce_window(ctx: StableHLOContext) -> None:
    """NHWC max → MAX_POOL_2D; sum → AVERAGE_POOL_2D·k (a following ÷k cancels, patterns)."""
    combiner, x = _combiner(ctx), ctx.input(0)
    rank = len(x.shape)
    window = ctx.attr("window_dimensions")
    strides = ctx.attr("window_strides", [1] * rank)
    pads = np.asarray(ctx.attr("padding", np.zeros((rank, 2))), np.int64).reshape(rank, 2)
    dilated = any(d != 1 for d in [*ctx.attr("base_dilations", []),
                                   *ctx.attr("window_dilations", [])])
    if rank != 4 or window[0] != 1 or window[3] != 1 or strides[0] != 1 or strides[3] != 1 \
            or pads[[0, 3]].any() or dilated:
        raise ctx.error(f"window {window}, strides {strides}: only undilated 2-D pooling over "
                        "the H and W axes of NHWC is supported")
    if not _init_is_identity(ctx, combiner, x):
        raise ctx.error(f"reduce_window applying {combiner} from init "
                        f"{ctx.const_input(1).tolist()}: only max from -inf and add from 0")
    kh, kw, sh_, sw = window[1], window[2], strides[1], strides[2]
    if combiner == "stablehlo.maximum":
        x, padding = _spatial_padding(ctx, x, pads[1:3], (kh, kw), (sh_, sw), explicit_ok=False)
        ctx.emit(OpType.MAX_POOL_2D, [x], o.Pool2DOptions(padding, sw, sh_, kw, kh))
    elif combiner == "stablehlo.add":  # a sum counts padding zeros: explicit PAD, VALID
        x, padding = _spatial_padding(ctx, x, pads[1:3], (kh, kw), (sh_, sw), same_ok=False)
        dtype, shape = tensor_type(ctx.op.results[0])
        mean = ctx.emit(OpType.AVERAGE_POOL_2D, [x], o.Pool2DOptions(padding, sw, sh_, kw, kh),
                        out=ctx.new_tensor("average", dtype, shape))
        ctx.emit(OpType.MUL, [mean, ctx.constant("window_size", kh * kw, dtype)],
                 o.MulOptions())
    else:
        raise ctx.error(f"reduce_window applying {combiner}: only max and add")


_REDUCERS = {"stablehlo.add": OpType.SUM, "stablehlo.maximum": OpType.REDUCE_MAX,
             "stablehlo.multiply": OpType.REDUCE_PROD}


def reduce(ctx: StableHLOContext) -> None:
    """add → SUM (÷count → MEAN, patterns), max → REDUCE_MAX, multiply → REDUCE_PROD."""
    if len(ctx.op.operands) != 2:
        raise ctx.error("a reduction of several operands (argmax/argmin) is not supported")
    combiner, x = _combiner(ctx), ctx.input(0)
    if combiner not in _REDUCERS or not _init_is_identity(ctx, combiner, x):
        raise ctx.error(f"reduce applying {combiner} from init {ctx.const_input(1).tolist()}"
                        ": only add from 0, max from -inf and multiply from 1")
    axes = ctx.constant("axes", ctx.attr("dimensions"), np.int32)
    ctx.emit(_REDUCERS[combiner], [x, axes], o.ReducerOptions(False))


# --- elementwise ---------------------------------------------------------------------------------
_BINARY_OPTIONS = {OpType.ADD: o.AddOptions, OpType.SUB: o.SubOptions, OpType.MUL: o.MulOptions,
                   OpType.DIV: o.DivOptions}


def _binary(op_type: OpType) -> Handler:
    make_options = _BINARY_OPTIONS.get(op_type)

    def handler(ctx: StableHLOContext) -> None:
        a, b = ctx.broadcastable(0), ctx.broadcastable(1)
        ctx.emit(op_type, [a, b], make_options() if make_options else None,
                 shape=_broadcast_shape(a, b))
    return handler


def _unary(op_type: OpType) -> Handler:
    def handler(ctx: StableHLOContext) -> None:
        x = ctx.broadcastable(0)
        ctx.emit(op_type, [x], shape=x.shape)
    return handler


def clamp(ctx: StableHLOContext) -> None:
    """clamp(lo, x, hi) → MINIMUM(MAXIMUM(x, lo), hi) (RELU6 and kin, by patterns)."""
    lo, x, hi = (ctx.broadcastable(i) for i in range(3))
    low = ctx.emit(OpType.MAXIMUM, [x, lo], out=ctx.new_tensor(
        "lower_bound", x.dtype, _broadcast_shape(x, lo)))
    ctx.emit(OpType.MINIMUM, [low, hi], shape=_broadcast_shape(low, hi))


_COMPARE = {"EQ": np.equal, "NE": np.not_equal, "GE": np.greater_equal, "GT": np.greater,
            "LE": np.less_equal, "LT": np.less}


def compare(ctx: StableHLOContext) -> None:
    """Constants compare here (``jnp.var``'s ddof check); others wait for their select."""
    from jaxlib.mlir.dialects import stablehlo as sh  # optional dependency (the jax extra)

    direction = sh.ComparisonDirectionAttr(ctx.op.attributes["comparison_direction"]).value
    lhs, rhs = ctx.broadcastable(0), ctx.broadcastable(1)
    if lhs.is_const and rhs.is_const:
        ctx.set_result(const(ctx.name, _COMPARE[direction](lhs.data, rhs.data)))
    else:
        ctx.set_result(Comparison(direction, lhs, rhs))


def select(ctx: StableHLOContext) -> None:
    """where(x > 0, x, 0) → RELU; where(x ≥ 0, x, α·x) → LEAKY_RELU (also mirrored); a
    constant condition picks its branch."""
    cond, on_true, on_false = ctx.raw(0), ctx.broadcastable(1), ctx.broadcastable(2)
    if isinstance(cond, Tensor) and cond.is_const and (
            np.all(cond.data) or not np.any(cond.data)):
        ctx.set_result(on_true if np.all(cond.data) else on_false)
        return
    if not isinstance(cond, Comparison):
        raise ctx.error("select is supported only on a comparison with zero (ReLU, leaky ReLU)")
    direction, x, zero = cond.direction, cond.lhs, cond.rhs
    if all_equal(x, 0):  # 0 < x reads as x > 0
        direction, x, zero = {"LT": "GT", "LE": "GE", "GT": "LT", "GE": "LE"}.get(
            direction, direction), zero, x
    pos, neg = (on_true, on_false) if direction in ("GT", "GE") else (on_false, on_true)
    if all_equal(zero, 0) and direction in ("GT", "GE", "LT", "LE") and pos is x:
        if all_equal(neg, 0):
            ctx.emit(OpType.RELU, [x], shape=x.shape)
            return
        mul = ctx.producer(neg, OpType.MUL)
        alpha = [t for t in (mul.inputs if mul else []) if t is not x]
        if mul and x in mul.inputs and len(alpha) == 1 and alpha[0].is_const \
                and np.unique(alpha[0].data).size == 1:
            ctx.emit(OpType.LEAKY_RELU, [x], o.LeakyReluOptions(float(alpha[0].data.flat[0])),
                     shape=x.shape)
            return
    raise ctx.error("select is supported only as ReLU (where(x > 0, x, 0)) or leaky ReLU "
                    "(where(x >= 0, x, a·x))")


def erfc(ctx: StableHLOContext) -> None:
    """Only inside exact GELU, ``0.5·x·erfc(−x/√2)`` as JAX writes it: a custom op that
    ``passes.patterns.gelu`` absorbs (one left over is the converter's error)."""
    ctx.emit(OpType.CUSTOM, [ctx.input(0)], custom_code="Erfc")


def convert(ctx: StableHLOContext) -> None:
    x = ctx.broadcastable(0)
    dtype, _ = tensor_type(ctx.op.results[0])
    if np.dtype(x.dtype) == dtype:
        ctx.set_result(x)
        return
    types = [NUMPY_TENSOR_TYPES.get(np.dtype(d)) for d in (x.dtype, dtype)]
    if None in types:
        raise ctx.error(f"convert {np.dtype(x.dtype).name} → {dtype.name}: no TFLite type")
    ctx.emit(OpType.CAST, [x], o.CastOptions(*types), shape=x.shape)


def constant(ctx: StableHLOContext) -> None:
    try:
        value = np.array(ctx.op.attributes["value"])
    except Exception as e:  # bf16 and other types numpy cannot read from the attribute
        raise ctx.error(f"cannot read the constant: {e}; cast the model to float32") from e
    dtype, _ = tensor_type(ctx.op.results[0])
    ctx.set_result(const(ctx.name, value.astype(dtype)))


# --- shapes and data movement ---------------------------------------------------------------------
def broadcast_in_dim(ctx: StableHLOContext) -> None:
    """Kept implicit (elementwise kernels broadcast, right-aligned as numpy): the operand as
    it is, or RESHAPEd when its dims must move (``[n] → [n, 1]``, keepdims)."""
    dims = [int(d) for d in ctx.attr("broadcast_dimensions")]
    if dims != sorted(dims):
        x = _permuted(ctx, ctx.input(0), tuple(int(i) for i in np.argsort(dims)), "ordered")
        dims, shape_in = sorted(dims), x.shape
    else:
        x = ctx.broadcastable(0)
        shape_in = (1,) * (len(dims) - len(x.shape)) + tuple(x.shape)
    _, shape = tensor_type(ctx.op.results[0])
    aligned = [1] * len(shape)
    for axis, d in zip(dims, shape_in):
        aligned[axis] = d
    if _strip_ones(aligned) == _strip_ones(x.shape):
        ctx.set_result(x)
        return
    ctx.emit(OpType.RESHAPE, [x, ctx.constant("shape", aligned, np.int32)], shape=aligned)


def _strip_ones(shape: Any) -> tuple[int, ...]:
    """``shape`` without its leading 1s: the same under right-aligned broadcasting."""
    shape = tuple(shape)
    while shape and shape[0] == 1:
        shape = shape[1:]
    return shape


def reshape(ctx: StableHLOContext) -> None:
    _, shape = tensor_type(ctx.op.results[0])
    ctx.emit(OpType.RESHAPE, [ctx.input(0), ctx.constant("shape", shape, np.int32)])


def transpose(ctx: StableHLOContext) -> None:
    perm = tuple(int(p) for p in ctx.attr("permutation"))
    x = ctx.input(0)
    if perm == tuple(range(len(perm))):
        ctx.set_result(x)
        return
    ctx.emit(OpType.TRANSPOSE, [x, ctx.constant("perm", perm, np.int32)])


def concatenate(ctx: StableHLOContext) -> None:
    values = [ctx.input(i) for i in range(len(ctx.op.operands))]
    ctx.emit(OpType.CONCATENATION, values, o.ConcatenationOptions(int(ctx.attr("dimension"))))


def pad(ctx: StableHLOContext) -> None:
    low, high = ctx.attr("edge_padding_low"), ctx.attr("edge_padding_high")
    if any(ctx.attr("interior_padding", [])) or min([*low, *high], default=0) < 0:
        raise ctx.error(f"interior or negative padding (low {low}, high {high}) is not "
                        "supported")
    x, value = ctx.input(0), ctx.const_input(1)
    paddings = ctx.constant("paddings", np.stack([low, high], 1), np.int32)
    if np.all(value == 0):
        ctx.emit(OpType.PAD, [x, paddings])
    else:
        ctx.emit(OpType.PADV2, [x, paddings, ctx.constant("value", value, x.dtype)])


def slice_(ctx: StableHLOContext) -> None:
    x = ctx.input(0)
    begin, end = ctx.attr("start_indices"), ctx.attr("limit_indices")
    strides = ctx.attr("strides", [1] * len(begin))
    ctx.emit(OpType.STRIDED_SLICE, [x, *(ctx.constant(n, v, np.int32) for n, v in (
        ("begin", begin), ("end", end), ("strides", strides)))], o.StridedSliceOptions())


LOWERINGS: dict[str, Handler] = {
    "stablehlo.constant": constant,
    "stablehlo.convolution": convolution,
    "stablehlo.dot_general": dot_general,
    "stablehlo.reduce_window": reduce_window,
    "stablehlo.reduce": reduce,
    "stablehlo.add": _binary(OpType.ADD),
    "stablehlo.subtract": _binary(OpType.SUB),
    "stablehlo.multiply": _binary(OpType.MUL),
    "stablehlo.divide": _binary(OpType.DIV),
    "stablehlo.maximum": _binary(OpType.MAXIMUM),
    "stablehlo.minimum": _binary(OpType.MINIMUM),
    "stablehlo.clamp": clamp,
    "stablehlo.compare": compare,
    "stablehlo.select": select,
    "stablehlo.negate": _unary(OpType.NEG),
    "stablehlo.exponential": _unary(OpType.EXP),
    "stablehlo.tanh": _unary(OpType.TANH),
    "stablehlo.logistic": _unary(OpType.LOGISTIC),
    "stablehlo.rsqrt": _unary(OpType.RSQRT),
    "stablehlo.sqrt": _unary(OpType.SQRT),
    "chlo.square": _unary(OpType.SQUARE),
    "chlo.erfc": erfc,
    "stablehlo.convert": convert,
    "stablehlo.broadcast_in_dim": broadcast_in_dim,
    "stablehlo.reshape": reshape,
    "stablehlo.transpose": transpose,
    "stablehlo.concatenate": concatenate,
    "stablehlo.pad": pad,
    "stablehlo.slice": slice_,
}
