"""Numpy kernels for constant folding: ``(op, input values) -> output values``.

The op table (``quantkit.ops.table``) names an op's kernel in its ``fold`` field;
``passes.fold_constants`` evaluates an op whose inputs are all constant with it. A kernel may
return None to decline (a case it does not model); the op then stays in the graph.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from quantkit.types import Activation

Kernel = Callable[[Any, list[np.ndarray]], "list[np.ndarray] | None"]

_ACTIVATIONS: dict[Activation, Callable[[np.ndarray], np.ndarray]] = {
    Activation.NONE: lambda x: x,
    Activation.RELU: lambda x: np.maximum(x, 0),
    Activation.RELU6: lambda x: np.clip(x, 0, 6),
    Activation.RELU_N1_TO_1: lambda x: np.clip(x, -1, 1),
    Activation.TANH: np.tanh,
}


def elementwise(fn: Callable[..., np.ndarray]) -> Kernel:
    """``y = act(fn(x…))``, with the op's fused activation (none when it has no options)."""
    def kernel(op: Any, values: list[np.ndarray]) -> list[np.ndarray]:
        act = getattr(op.options, "fused_activation_function", Activation.NONE)
        return [_ACTIVATIONS[act](fn(*values))]
    return kernel


def strided_slice(op: Any, values: list[np.ndarray]) -> list[np.ndarray] | None:
    """``x[b0:e0:s0, …]`` with TFLite's masks (a new-axis bit inserts a dim of 1); the
    ellipsis mask declines."""
    x, begin, end, strides = values
    opts = op.options
    if opts.ellipsis_mask:
        return None
    index = []
    for i in range(len(begin)):
        if opts.new_axis_mask >> i & 1:
            index.append(np.newaxis)
            continue
        if opts.shrink_axis_mask >> i & 1:
            index.append(int(begin[i]))
            continue
        b = None if opts.begin_mask >> i & 1 else int(begin[i])
        e = None if opts.end_mask >> i & 1 else int(end[i])
        index.append(slice(b, e, int(strides[i])))
    return [np.asarray(x[tuple(index)])]


def fully_connected(op: Any, values: list[np.ndarray]) -> list[np.ndarray]:
    """``y = act(x·Wᵀ + b)`` over x's rows (an RNN's matmul of its zero initial state)."""
    x, w, *bias = values
    y = np.reshape(x, (-1, w.shape[1])) @ w.T + (bias[0] if bias else 0)
    shape = (*x.shape[:-1], w.shape[0]) if op.options.keep_num_dims else y.shape
    act = op.options.fused_activation_function
    return [_ACTIVATIONS[act](np.reshape(y, shape))]


def reduce(fn: Callable[..., np.ndarray]) -> Kernel:
    """``y = fn(x, axes)``, keeping the reduced dims when the options say so."""
    def kernel(op: Any, values: list[np.ndarray]) -> list[np.ndarray]:
        x, axes = values
        return [fn(x, axis=tuple(int(a) for a in np.reshape(axes, -1)),
                   keepdims=bool(op.options.keep_dims))]
    return kernel


def gather(op: Any, values: list[np.ndarray]) -> list[np.ndarray] | None:
    """``np.take`` along the axis; batch_dims > 0 gathers per batch row, which np.take
    cannot: left to the kernel."""
    if op.options.batch_dims:
        return None
    return [np.take(values[0], values[1], axis=op.options.axis)]


def transpose(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    return [np.transpose(v[0], v[1])]


def reshape(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    return [np.reshape(v[0], [int(d) for d in v[1]])]


def squeeze(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    return [np.squeeze(v[0], axis=op.options.squeeze_dims or None)]


def expand_dims(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    return [np.expand_dims(v[0], int(v[1]))]


def concatenation(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    return [np.concatenate(v, axis=op.options.axis)]


def pack(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    return [np.stack(v, axis=op.options.axis)]


def cast(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    return [v[0]]  # the output dtype is applied by the pass


def pad(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    return [np.pad(v[0], v[1])]


def split(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    """SPLIT(axis, x): ``num_splits`` equal parts."""
    return list(np.split(v[1], op.options.num_splits, axis=int(v[0])))


def unpack(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    """UNPACK(x): the ``num`` slices along ``axis``, that axis dropped."""
    return list(np.moveaxis(v[0], op.options.axis, 0))


def split_v(op: Any, v: list[np.ndarray]) -> list[np.ndarray] | None:
    """SPLIT_V(x, sizes, axis); a -1 size (the rest) declines."""
    sizes = [int(s) for s in np.reshape(v[1], -1)]
    if -1 in sizes:
        return None
    return list(np.split(v[0], np.cumsum(sizes)[:-1], axis=int(v[2])))


def select(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    return [np.where(v[0], v[1], v[2])]


def fill(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    return [np.full([int(d) for d in np.reshape(v[0], -1)], v[1])]


def arange(op: Any, v: list[np.ndarray]) -> list[np.ndarray]:
    return [np.arange(v[0], v[1], v[2]).astype(np.asarray(v[0]).dtype)]
