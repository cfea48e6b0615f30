"""The executor: runs a float IR graph on a batch and returns the tensors the quantizer needs.

Calibration runs the graph quantkit will write (after lowering and passes), not the source
model, so every tensor it observes is one the quantized model will have. ``KERNELS`` maps an
op type to its TFLite semantics written with TensorFlow ops; ``GraphExecutor`` traces the whole
graph once into one ``tf.function``, so each batch costs one TF call, which returns only the
observed tensors.

A row is ``(op, input values) -> output values``: an absent optional input (a bias) is None,
constants arrive as TF constants made from ``Tensor.data``; it computes what LiteRT's builtin
kernel computes in float, with TF's kernels (tests compare every tensor with LiteRT's).
"""

from __future__ import annotations

from collections import Counter
from typing import Callable, Mapping, Sequence

import numpy as np
import tensorflow as tf

from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.types import Activation, ConversionError, OpType, Phase

Values = list["tf.Tensor | None"]
Kernel = Callable[[Op, Values], list[tf.Tensor]]


class ExecutorError(ConversionError):
    """A graph the executor cannot run, or inputs that do not fit it (a calibration error)."""

    def __init__(self, message: str):
        super().__init__(Phase.CALIBRATION, message)


# --- helpers the rows share ------------------------------------------------------------------
# As the schema defines them. (LiteRT's CONV_2D/ADD/MUL kernels ignore a fused TANH; quantkit
# never fuses one, see passes.fuse_activations.)
_ACTIVATIONS: dict[Activation, Callable[[tf.Tensor], tf.Tensor]] = {
    Activation.NONE: lambda x: x,
    Activation.RELU: tf.nn.relu,
    Activation.RELU6: tf.nn.relu6,
    Activation.RELU_N1_TO_1: lambda x: tf.clip_by_value(x, -1.0, 1.0),
    Activation.TANH: tf.tanh,
}


def _act(op: Op, x: tf.Tensor) -> list[tf.Tensor]:
    """``[x]`` after the op's fused activation (none when its options have no such field)."""
    return [_ACTIVATIONS[getattr(op.options, "fused_activation_function", Activation.NONE)](x)]


def _padded(values: Values, count: int) -> Values:
    """``values`` with absent trailing optional inputs (a bias) as None."""
    return [*values, *[None] * (count - len(values))][:count]


def _biased(y: tf.Tensor, bias: tf.Tensor | None) -> tf.Tensor:
    return y if bias is None else y + bias


def _strides(op: Op) -> list[int]:
    return [1, op.options.stride_h, op.options.stride_w, 1]


def _dilations(op: Op) -> list[int]:
    return [1, op.options.dilation_h_factor, op.options.dilation_w_factor, 1]


def _dim(t: tf.Tensor, axis: int) -> int | tf.Tensor:
    """A dimension of ``t``: the static one when known, else read at run time."""
    static = t.shape[axis] if t.shape.rank is not None else None
    return static if static is not None else tf.shape(t)[axis]


def _scalar(t: tf.Tensor) -> tf.Tensor:
    return tf.reshape(t, [])


# --- convolutions and matmul --------------------------------------------------------------------
def conv_2d(op: Op, v: Values) -> list[tf.Tensor]:
    """x NHWC, filter OHWI (TF's is HWIO), optional bias [O]."""
    x, w, b = _padded(v, 3)
    y = tf.nn.conv2d(x, tf.transpose(w, (1, 2, 3, 0)), _strides(op), op.options.padding.name,
                     dilations=_dilations(op))
    return _act(op, _biased(y, b))


def depthwise_conv_2d(op: Op, v: Values) -> list[tf.Tensor]:
    """Filter ``[1, H, W, C·m]``, output channel ``c·m + j`` (TF's ``[H, W, C, m]`` order).

    The multiplier comes from the shapes (filter channels over input channels), not from the
    ``depth_multiplier`` option.
    """
    x, w, b = _padded(v, 3)
    filt = tf.reshape(w, [_dim(w, 1), _dim(w, 2), _dim(x, 3), -1])
    y = tf.raw_ops.DepthwiseConv2dNative(input=x, filter=filt, strides=_strides(op),
                                         padding=op.options.padding.name,
                                         dilations=_dilations(op))
    return _act(op, _biased(y, b))


def transpose_conv(op: Op, v: Values) -> list[tf.Tensor]:
    """Inputs (output_shape, filter OHWI, x, optional bias); TF's filter is HW(out)(in)."""
    shape, w, x, b = _padded(v, 4)
    y = tf.nn.conv2d_transpose(x, tf.transpose(w, (1, 2, 0, 3)), shape, _strides(op),
                               op.options.padding.name)
    return _act(op, _biased(y, b))


def fully_connected(op: Op, v: Values) -> list[tf.Tensor]:
    """y = x·Wᵀ + b with W ``[out, in]``; x is read as ``[-1, in]``. The output is 2-D
    ``[size/in, out]`` unless ``keep_num_dims``: then x's leading dims, then ``out``."""
    x, w, b = _padded(v, 3)
    y = _biased(tf.matmul(tf.reshape(x, [-1, _dim(w, 1)]), w, transpose_b=True), b)
    if op.options is not None and op.options.keep_num_dims:
        y = tf.reshape(y, tf.concat([tf.shape(x)[:-1], tf.shape(w)[:1]], 0))
    return _act(op, y)


def batch_matmul(op: Op, v: Values) -> list[tf.Tensor]:
    adj_x, adj_y = (op.options.adj_x, op.options.adj_y) if op.options else (False, False)
    return [tf.linalg.matmul(v[0], v[1], adjoint_a=adj_x, adjoint_b=adj_y)]


# --- pooling and reductions -------------------------------------------------------------------
def _pool(pool: Callable[..., tf.Tensor]) -> Kernel:
    def kernel(op: Op, v: Values) -> list[tf.Tensor]:
        o = op.options
        return _act(op, pool(v[0], (o.filter_height, o.filter_width), (o.stride_h, o.stride_w),
                             o.padding.name))
    return kernel


def _reduce(reduce: Callable[..., tf.Tensor]) -> Kernel:
    return lambda op, v: [reduce(v[0], v[1], keepdims=bool(op.options and op.options.keep_dims))]


# --- elementwise ---------------------------------------------------------------------------------
def _binary(fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor]) -> Kernel:
    """A broadcasting binary op and its fused activation."""
    return lambda op, v: _act(op, fn(v[0], v[1]))


def _unary(fn: Callable[[tf.Tensor], tf.Tensor]) -> Kernel:
    return lambda op, v: [fn(v[0])]


def _divide(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
    """TFLite's DIV: C++ ``/``, so integer division truncates toward zero."""
    return a / b if a.dtype.is_floating else tf.math.truncatediv(a, b)


def _resize(resize: Callable[..., tf.Tensor]) -> Kernel:
    def kernel(op: Op, v: Values) -> list[tf.Tensor]:
        o = op.options
        return [resize(images=v[0], size=v[1], align_corners=bool(o and o.align_corners),
                       half_pixel_centers=bool(o and o.half_pixel_centers))]
    return kernel


def _strided_slice(op: Op, v: Values) -> list[tf.Tensor]:
    o = op.options
    return [tf.strided_slice(*v[:4], begin_mask=o.begin_mask, end_mask=o.end_mask,
                             ellipsis_mask=o.ellipsis_mask, new_axis_mask=o.new_axis_mask,
                             shrink_axis_mask=o.shrink_axis_mask)]


def _out_dtype(op: Op, index: int = 0) -> tf.DType:
    return tf.as_dtype(np.dtype(op.outputs[index].dtype))


# --- the table ---------------------------------------------------------------------------------
KERNELS: dict[OpType, Kernel] = {
    OpType.CONV_2D: conv_2d,
    OpType.DEPTHWISE_CONV_2D: depthwise_conv_2d,
    OpType.TRANSPOSE_CONV: transpose_conv,
    OpType.FULLY_CONNECTED: fully_connected,
    OpType.BATCH_MATMUL: batch_matmul,
    OpType.MAX_POOL_2D: _pool(tf.nn.max_pool2d),
    OpType.AVERAGE_POOL_2D: _pool(tf.nn.avg_pool2d),  # SAME: averages the valid cells only
    OpType.MEAN: _reduce(tf.reduce_mean),
    OpType.SUM: _reduce(tf.reduce_sum),
    OpType.REDUCE_MAX: _reduce(tf.reduce_max),
    OpType.REDUCE_PROD: _reduce(tf.reduce_prod),
    OpType.ADD: _binary(tf.add),
    OpType.SUB: _binary(tf.subtract),
    OpType.MUL: _binary(tf.multiply),
    OpType.DIV: _binary(_divide),
    OpType.MAXIMUM: _binary(tf.maximum),
    OpType.MINIMUM: _binary(tf.minimum),
    OpType.SQUARED_DIFFERENCE: _binary(tf.math.squared_difference),
    OpType.RELU: _unary(tf.nn.relu),
    OpType.RELU6: _unary(tf.nn.relu6),
    OpType.RELU_N1_TO_1: _unary(_ACTIVATIONS[Activation.RELU_N1_TO_1]),
    OpType.LEAKY_RELU: lambda op, v: [tf.nn.leaky_relu(v[0], op.options.alpha)],  # x>0 ? x : αx
    OpType.PRELU: lambda op, v: [tf.where(v[0] >= 0, v[0], v[0] * v[1])],  # α broadcasts
    OpType.HARD_SWISH: _unary(lambda x: x * tf.nn.relu6(x + 3) / 6),
    OpType.GELU: lambda op, v: [tf.nn.gelu(v[0], bool(op.options and op.options.approximate))],
    OpType.LOGISTIC: _unary(tf.sigmoid),
    OpType.TANH: _unary(tf.tanh),
    OpType.SOFTMAX: lambda op, v: [tf.nn.softmax(  # over the last axis, of β·x
        v[0] if op.options is None or op.options.beta == 1 else v[0] * op.options.beta)],
    OpType.RSQRT: _unary(tf.math.rsqrt),
    OpType.SQRT: _unary(tf.sqrt),
    OpType.SQUARE: _unary(tf.square),
    OpType.EXP: _unary(tf.exp),
    OpType.NEG: _unary(tf.negative),
    OpType.CAST: lambda op, v: [tf.cast(v[0], _out_dtype(op))],  # float → int truncates
    OpType.RESHAPE: lambda op, v: [tf.reshape(v[0], v[1])],
    OpType.SQUEEZE: lambda op, v: [tf.squeeze(v[0], list(op.options.squeeze_dims) or None)],
    OpType.EXPAND_DIMS: lambda op, v: [tf.expand_dims(v[0], _scalar(v[1]))],
    OpType.TRANSPOSE: lambda op, v: [tf.transpose(v[0], v[1])],
    OpType.CONCATENATION: lambda op, v: _act(op, tf.concat(v, op.options.axis)),
    OpType.PACK: lambda op, v: [tf.stack(v, op.options.axis)],
    OpType.PAD: lambda op, v: [tf.pad(v[0], v[1])],
    OpType.PADV2: lambda op, v: [tf.pad(v[0], v[1], constant_values=_scalar(v[2]))],
    OpType.STRIDED_SLICE: _strided_slice,
    OpType.SHAPE: lambda op, v: [tf.shape(v[0], out_type=_out_dtype(op))],
    OpType.GATHER: lambda op, v: [tf.gather(v[0], v[1], axis=op.options.axis,
                                            batch_dims=op.options.batch_dims)],
    OpType.TILE: lambda op, v: [tf.tile(v[0], v[1])],
    OpType.DEPTH_TO_SPACE: lambda op, v: [tf.nn.depth_to_space(v[0], op.options.block_size)],
    OpType.RESIZE_BILINEAR: _resize(tf.raw_ops.ResizeBilinear),
    OpType.RESIZE_NEAREST_NEIGHBOR: _resize(tf.raw_ops.ResizeNearestNeighbor),
}


# --- the executor -------------------------------------------------------------------------------
class GraphExecutor:
    """Runs a float IR graph on batches; returns the observed tensors' values by name.

    The graph is traced once, into one ``tf.function`` whose signature is the graph's inputs
    (a dynamic batch dim stays dynamic, a fixed one is enforced); a call is one TF call.

    Args:
        graph: the float graph, after lowering and passes. Its tensor names must be unique.
        observe: the tensors whose values to return; by default every non-constant tensor
            the graph uses (its inputs included), in first-use order.

    Raises:
        ExecutorError: an op type ``KERNELS`` lacks (all such ops listed, with what is
            supported), repeated tensor names, an observed tensor the graph does not use, or
            an op whose kernel fails while tracing (named with its type and outputs).
    """

    def __init__(self, graph: Graph, observe: Sequence[Tensor] | None = None):
        self.graph = graph
        used = graph.tensors()
        _check_names(used)
        _check_supported(graph)
        if observe is None:
            observe = [t for t in used if not t.is_const]
        unknown = [t.name for t in observe if t not in set(used)]
        if unknown:
            raise ExecutorError(f"graph {graph.name!r} does not use the observed tensors "
                                f"{unknown}")
        self.observed: list[Tensor] = list(dict.fromkeys(observe))
        self.input_names = list(graph.input_names) or [t.name for t in graph.inputs]
        specs = [tf.TensorSpec(t.shape, tf.as_dtype(np.dtype(t.dtype)), name=_spec_name(i))
                 for i, t in enumerate(graph.inputs)]
        self._fn = tf.function(self._trace, input_signature=specs, autograph=False)
        self._fn.get_concrete_function()  # trace now: kernel errors surface here

    @property
    def batch_size(self) -> int | None:
        """The batch every call must have when the graph fixes it, else None (any batch)."""
        dims = {t.shape[0] for t in self.graph.inputs if t.shape}
        return dims.pop() if len(dims) == 1 and None not in dims else None

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch.

        Args:
            inputs: one array per graph input, keyed by its signature name, the batch on axis 0.

        Returns:
            ``{tensor name: value}`` for the observed tensors, the batch on axis 0; the arrays
            are read-only views of TF's buffers (no copy).
        """
        arrays = [self._checked(name, t, inputs)
                  for name, t in zip(self.input_names, self.graph.inputs)]
        extra = sorted(set(inputs) - set(self.input_names))
        if extra:
            raise ExecutorError(f"unknown inputs {extra}; the graph's are {self.input_names}")
        # np.asarray shares TF's buffer (read-only); .numpy() would copy every tensor.
        return {name: np.asarray(value) for name, value in self._fn(*arrays).items()}

    def _checked(self, name: str, t: Tensor, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        if name not in inputs:
            raise ExecutorError(f"input {name!r} is missing; the graph's inputs are "
                                f"{self.input_names}")
        x = np.asarray(inputs[name], dtype=t.dtype)
        if t.shape is not None and (x.ndim != len(t.shape) or any(
                d is not None and d != n for d, n in zip(t.shape, x.shape))):
            wanted = [-1 if d is None else d for d in t.shape]
            raise ExecutorError(f"input {name!r} has shape {list(x.shape)}; the graph takes "
                                f"{wanted} (-1: any size)")
        return x

    def _trace(self, *inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        values: dict[Tensor, tf.Tensor] = dict(zip(self.graph.inputs, inputs))

        def value(t: Tensor | None) -> tf.Tensor | None:
            if t is not None and t not in values:  # constants, made once where first read
                values[t] = tf.constant(t.data)
            return None if t is None else values[t]

        for op in self.graph.ops:
            try:
                outputs = KERNELS[op.type](op, [value(t) for t in op.inputs])
            except Exception as e:
                raise ExecutorError(f"{op.type.name} op {op.name!r} (outputs "
                                    f"{[t.name for t in op.outputs]}): {type(e).__name__}: "
                                    f"{e}") from e
            values.update(zip(op.outputs, outputs))
        return {t.name: value(t) for t in self.observed}


def _spec_name(index: int) -> str:
    return f"input_{index}"  # TF wants identifier-like argument names; IR names are not


def _check_names(tensors: list[Tensor]) -> None:
    repeated = sorted(n for n, k in Counter(t.name for t in tensors).items() if k > 1)
    if repeated:
        raise ExecutorError(f"tensor names must be unique to report values by name; repeated: "
                            f"{repeated}")


def _check_supported(graph: Graph) -> None:
    missing: dict[str, list[str]] = {}
    for op in graph.ops:
        if op.type not in KERNELS:
            kind = op.type.name + (f" ({op.custom_code})" if op.custom_code else "")
            missing.setdefault(kind, []).append(op.name)
    if missing:
        listed = "\n".join(f"  {kind}: ops {names}" for kind, names in missing.items())
        supported = ", ".join(sorted(t.name for t in KERNELS))
        raise ExecutorError(f"graph {graph.name!r} has op types the executor cannot run:\n"
                            f"{listed}\nSupported: {supported}")
