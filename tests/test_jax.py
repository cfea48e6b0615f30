"""The JAX frontend (``experimental_from_jax``): StableHLO lowering table, patterns, errors, and
a small CNN end to end, float32 and int8 side by side with TF's converter.

Every row of ``stablehlo_ops.LOWERINGS`` has at least one case: a small jitted function whose
StableHLO really holds the row's op, converted by quantkit (through ``lower_jax``, as the
converter's frontend), checked for the builtins it becomes (after the passes) and for LiteRT's
output against JAX's (within 1e-4 of the output's max magnitude).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest

jax = pytest.importorskip("jax")
import jax.numpy as jnp  # noqa: E402
import tensorflow as tf  # noqa: E402
from jax import lax  # noqa: E402

import quantkit  # noqa: E402
from quantkit.frontend.jax_capture import lower_jax  # noqa: E402
from quantkit.frontend.stablehlo_ops import LOWERINGS  # noqa: E402
from quantkit.tflite_io.reader import op_types  # noqa: E402
from tests.conftest import assert_matches, assert_op_count_at_most_tf, run_litert  # noqa: E402
from benchmarks.zoo.images import natural_crops  # noqa: E402
from tests.side_by_side import (Converted, assert_as_good_as_tf, convert, measure,  # noqa: E402
                                run_all)

NHWC = ("NHWC", "HWIO", "NHWC")
RNG = np.random.default_rng(0)


def weights(*shape: int, scale: float = 0.5) -> np.ndarray:
    return (RNG.normal(size=shape) * scale).astype(np.float32)


def converter(fn: Callable, examples: list[tuple[str, np.ndarray]]) -> quantkit.TFLiteConverter:
    return quantkit.TFLiteConverter.experimental_from_jax([fn], [examples])


def stablehlo_ops(fn: Callable, arrays: list[np.ndarray]) -> set[str]:
    """The op names in every function of ``fn``'s StableHLO module."""
    module = jax.jit(fn).lower(*arrays).compiler_ir("stablehlo")
    with module.context:
        return {op.operation.name for f in module.body.operations
                for op in f.regions[0].blocks[0].operations}


# --- one case per row of the lowering table ----------------------------------------------------
@dataclass(frozen=True)
class Case:
    fn: Callable
    shapes: tuple[tuple[int, ...], ...]  # one per input
    ops: tuple[str, ...]  # the converted model's builtins, in order
    low: float = -2.0
    high: float = 2.0

    def arrays(self) -> list[np.ndarray]:
        rng = np.random.default_rng(1)
        return [rng.uniform(self.low, self.high, s).astype(np.float32) for s in self.shapes]


# Weights are drawn once: a lambda that drew them would trace to new values on every call.
W33, B8, W_OIHW = weights(3, 3, 4, 8), weights(8), weights(8, 4, 3, 3)
W_DW = weights(3, 3, 1, 8)
W_FC, B5 = weights(12, 5), weights(5)
V4 = weights(4)
IMG = ((2, 8, 8, 4),)


def _conv(x: Any, w: Any = W33, strides=(1, 1), padding: Any = "SAME", **kw: Any) -> Any:
    return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=NHWC, **kw)


def _binary(fn: Callable, op: str) -> Case:
    return Case(fn, ((2, 3, 4), (3, 1)), (op,), low=0.5)


def _unary(fn: Callable, op: str, low: float = -2.0) -> Case:
    return Case(fn, ((2, 5),), (op,), low=low)


def _pool(x: Any, init: float, reducer: Callable, padding: Any, window=(1, 3, 3, 1),
          strides=(1, 2, 2, 1)) -> Any:
    return lax.reduce_window(x, init, reducer, window, strides, padding)


CASES: dict[str, dict[str, Case]] = {
    "stablehlo.constant": {"closed_over": Case(lambda x: x * V4, ((2, 4),), ("MUL",))},
    "stablehlo.convolution": {
        "bias_relu_same_stride2": Case(
            lambda x: jax.nn.relu(_conv(x, strides=(2, 2)) + B8), IMG, ("CONV_2D",)),
        "explicit_padding": Case(lambda x: _conv(x, padding=((2, 1), (0, 3))), IMG,
                                 ("PAD", "CONV_2D")),
        "dilated_valid": Case(lambda x: _conv(x, padding="VALID", rhs_dilation=(2, 2)), IMG,
                              ("CONV_2D",)),
        "nchw_oihw": Case(lambda x: lax.conv(x, W_OIHW, (1, 1), "SAME"),
                          ((2, 4, 8, 8),), ("TRANSPOSE", "CONV_2D", "TRANSPOSE")),
        "depthwise_multiplier_2": Case(
            lambda x: _conv(x, W_DW, feature_group_count=4), IMG, ("DEPTHWISE_CONV_2D",)),
    },
    "stablehlo.dot_general": {
        "dense": Case(lambda x: x @ W_FC + B5, ((3, 12),), ("FULLY_CONNECTED",)),
        "dense_3d": Case(lambda x: x @ W_FC, ((2, 3, 12),), ("FULLY_CONNECTED",)),
        "weights_out_in": Case(lambda x: lax.dot_general(x, W_FC.T, (((1,), (1,)), ((), ()))),
                               ((3, 12),), ("FULLY_CONNECTED",)),
        "batched": Case(lambda a, b: jnp.einsum("bmk,bnk->bmn", a, b), ((2, 3, 4), (2, 5, 4)),
                        ("BATCH_MATMUL",)),
        "two_inputs": Case(lambda a, b: a @ b, ((3, 4), (4, 5)), ("BATCH_MATMUL",)),
    },
    "stablehlo.reduce_window": {
        "max_same": Case(lambda x: _pool(x, -jnp.inf, lax.max, "SAME"), IMG, ("MAX_POOL_2D",)),
        "max_valid": Case(lambda x: _pool(x, -jnp.inf, lax.max, "VALID"), IMG,
                          ("MAX_POOL_2D",)),
        "average_valid": Case(lambda x: _pool(x, 0.0, lax.add, "VALID", (1, 2, 2, 1)) / 4.0,
                              IMG, ("AVERAGE_POOL_2D",)),
        # jnp-style average counting the padding (flax's count_include_pad=True)
        "average_same_with_pad": Case(lambda x: _pool(x, 0.0, lax.add, "SAME") / 9.0, IMG,
                                      ("PAD", "AVERAGE_POOL_2D")),
        "sum": Case(lambda x: _pool(x, 0.0, lax.add, "VALID"), IMG, ("AVERAGE_POOL_2D", "MUL")),
    },
    "stablehlo.reduce": {
        "sum": Case(lambda x: jnp.sum(x, axis=1), ((2, 5, 3),), ("SUM",)),
        "mean_global_pool": Case(lambda x: jnp.mean(x, axis=(1, 2)), IMG, ("MEAN",)),
        "mean_keepdims": Case(lambda x: jnp.mean(x, axis=-1, keepdims=True), ((2, 5),),
                              ("MEAN",)),
        "mean_reshaped": Case(lambda x: x.sum(axis=1)[..., None] / 5, ((2, 5, 3),),
                              ("MEAN", "RESHAPE")),
        "max": Case(lambda x: jnp.max(x, axis=0), ((4, 5),), ("REDUCE_MAX",)),
        "prod": Case(lambda x: jnp.prod(x, axis=1), ((2, 3),), ("REDUCE_PROD",), low=0.5),
    },
    "stablehlo.add": {"broadcast": _binary(jnp.add, "ADD"),
                      "bias": Case(lambda x: x + V4, ((3, 4),), ("ADD",))},
    "stablehlo.subtract": {"broadcast": _binary(jnp.subtract, "SUB")},
    "stablehlo.multiply": {"broadcast": _binary(jnp.multiply, "MUL")},
    "stablehlo.divide": {"broadcast": _binary(jnp.divide, "DIV")},
    "stablehlo.maximum": {"broadcast": _binary(jnp.maximum, "MAXIMUM"),
                          "relu": _unary(jax.nn.relu, "RELU")},
    "stablehlo.minimum": {"broadcast": _binary(jnp.minimum, "MINIMUM"),
                          "relu6": _unary(jax.nn.relu6, "RELU6")},
    "stablehlo.clamp": {"relu6": Case(lambda x: lax.clamp(0.0, x, 6.0), ((2, 5),), ("RELU6",),
                                      low=-3.0, high=8.0),
                        "n1_to_1": Case(lambda x: lax.clamp(-1.0, x, 1.0), ((2, 5),),
                                        ("RELU_N1_TO_1",)),
                        "other": Case(lambda x: lax.clamp(-0.5, x, 0.7), ((2, 5),),
                                      ("MAXIMUM", "MINIMUM"))},
    "stablehlo.compare": {"where_relu": _unary(lambda x: jnp.where(x > 0, x, 0.0), "RELU"),
                          # jnp.var checks its ddof on constants: the select folds away
                          "constant": Case(lambda x: jnp.var(x, -1), ((2, 5),),
                                           ("MEAN", "SUB", "SQUARE", "MEAN"))},
    "stablehlo.select": {"leaky_relu": _unary(jax.nn.leaky_relu, "LEAKY_RELU"),
                         "mirrored": _unary(lambda x: jnp.where(x < 0, 0.2 * x, x),
                                            "LEAKY_RELU")},
    "stablehlo.negate": {"neg": _unary(jnp.negative, "NEG")},
    "stablehlo.exponential": {"exp": _unary(jnp.exp, "EXP"),
                              "sigmoid": _unary(jax.nn.sigmoid, "LOGISTIC"),
                              "softmax": _unary(jax.nn.softmax, "SOFTMAX")},
    "stablehlo.tanh": {"tanh": _unary(jnp.tanh, "TANH")},
    "stablehlo.rsqrt": {"rsqrt": _unary(lax.rsqrt, "RSQRT", low=0.5)},
    "stablehlo.sqrt": {"sqrt": _unary(jnp.sqrt, "SQRT", low=0.5)},
    "chlo.square": {"square": _unary(jnp.square, "SQUARE")},
    "chlo.erfc": {"exact_gelu": _unary(functools.partial(jax.nn.gelu, approximate=False),
                                       "GELU")},
    "stablehlo.convert": {"to_int32": Case(lambda x: x.astype(jnp.int32), ((2, 5),), ("CAST",))},
    "stablehlo.broadcast_in_dim": {
        # the broadcast is the output itself: materialized
        "output": Case(lambda x: jnp.broadcast_to(x[:, None, :], (2, 3, 4)), ((2, 4),),
                       ("RESHAPE", "TILE")),
        "keepdims_operand": Case(lambda x: x - jnp.sum(x, axis=1, keepdims=True), ((2, 5),),
                                 ("SUM", "RESHAPE", "SUB")),
    },
    "stablehlo.reshape": {"flatten": Case(lambda x: x.reshape(2, -1), IMG, ("RESHAPE",))},
    "stablehlo.transpose": {"nchw": Case(lambda x: jnp.transpose(x, (0, 3, 1, 2)), IMG,
                                         ("TRANSPOSE",))},
    "stablehlo.concatenate": {"channels": Case(lambda a, b: jnp.concatenate([a, b], -1),
                                               ((2, 3), (2, 4)), ("CONCATENATION",))},
    "stablehlo.pad": {"zeros": Case(lambda x: jnp.pad(x, ((0, 0), (1, 2))), ((2, 3),), ("PAD",)),
                      "value": Case(lambda x: jnp.pad(x, ((1, 0), (0, 1)), constant_values=3.0),
                                    ((2, 3),), ("PADV2",))},
    "stablehlo.slice": {"strided": Case(lambda x: x[:, 1:3, ::2], IMG, ("STRIDED_SLICE",))},
}

PARAMS = [pytest.param(row, case, id=f"{row.split('.')[1]}-{name}")
          for row, cases in CASES.items() for name, case in cases.items()]


def test_every_lowering_has_a_case():
    assert set(LOWERINGS) - {"stablehlo.logistic"} <= set(CASES)  # logistic: see its own test


@pytest.mark.parametrize("row,case", PARAMS)
def test_lowering(row: str, case: Case):
    arrays = case.arrays()
    assert row in stablehlo_ops(case.fn, arrays)  # the case exercises its row
    names = [f"x{i}" for i in range(len(arrays))]
    model = converter(case.fn, list(zip(names, arrays))).convert()
    assert op_types(model) == list(case.ops)
    out = run_litert(model, dict(zip(names, arrays)))["output_0"]
    expected = np.asarray(case.fn(*arrays))
    assert out.dtype == expected.dtype
    assert_matches(out, expected)


def test_logistic_row():
    """JAX 0.10 expands lax.logistic (1/(1+exp(−x)), the pattern above); a lowering that
    emits ``stablehlo.logistic`` itself is lowered by its row."""
    from jax.extend.core import Primitive
    from jax.interpreters import mlir
    from jaxlib.mlir.dialects import stablehlo

    prim = Primitive("stablehlo_logistic")
    prim.def_abstract_eval(lambda x: x)
    mlir.register_lowering(prim, lambda ctx, x: [stablehlo.logistic(x)])
    x = np.random.default_rng(1).uniform(-2, 2, (2, 5)).astype(np.float32)
    assert "stablehlo.logistic" in stablehlo_ops(prim.bind, [x])
    model = converter(prim.bind, [("x", x)]).convert()
    assert op_types(model) == ["LOGISTIC"]
    assert_matches(run_litert(model, {"x": x})["output_0"], np.asarray(jax.nn.sigmoid(x)))


# --- signature, errors ----------------------------------------------------------------------
def test_signature_names_and_several_outputs():
    a, b = np.ones((2, 3), np.float32), np.full((2, 3), 2.0, np.float32)
    graph, = lower_jax([lambda a, b: (a + b, a * b)], [[("first", a), ("second", b)]])
    assert graph.signature_key == "serving_default"
    assert graph.input_names == ["first", "second"] and [t.name for t in graph.inputs] == [
        "first", "second"]
    assert graph.output_names == ["output_0", "output_1"]
    model = converter(lambda a, b: (a + b, a * b), [("first", a), ("second", b)]).convert()
    out = run_litert(model, {"first": a, "second": b})
    np.testing.assert_array_equal(out["output_0"], a + b)
    np.testing.assert_array_equal(out["output_1"], a * b)


def test_unused_input_is_kept():
    x = np.ones((2, 3), np.float32)
    graph, = lower_jax([lambda x, unused: x * 2], [[("x", x), ("unused", x)]])
    assert graph.input_names == ["x", "unused"] and len(graph.inputs) == 2


def test_unsupported_ops_are_listed_together():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(quantkit.ConversionError) as info:
        lower_jax([lambda x: jnp.sin(x) + jnp.cos(x) * jnp.sin(2 * x)], [[("x", x)]])
    message = str(info.value)
    assert message.startswith("[lowering] 3 StableHLO op(s) have no TFLite lowering")
    assert "stablehlo.sine ×2" in message and "stablehlo.cosine ×1" in message
    assert "Supported StableHLO ops: chlo.erfc, chlo.square, stablehlo.add" in message


def test_unsupported_uses_name_the_op():
    x = np.ones((2, 8, 8, 4), np.float32)
    with pytest.raises(quantkit.ConversionError, match=r"\[lowering\] op .*feature_group_count=2"):
        lower_jax([lambda x: _conv(x, weights(3, 3, 2, 4), feature_group_count=2)], [[("x", x)]])
    with pytest.raises(quantkit.ConversionError, match="only as the condition of select"):
        lower_jax([lambda x: (x > 0).astype(jnp.float32)], [[("x", x)]])


def test_erfc_outside_gelu_is_an_error():
    x = np.ones((2, 3), np.float32)
    with pytest.raises(quantkit.ConversionError, match=r"(?s)\[passes\].*Erfc.*part of GELU"):
        converter(jax.scipy.special.erfc, [("x", x)]).convert()


@pytest.mark.parametrize("funcs,inputs,error,match", [
    ([], [[("x", np.ones(2))]], quantkit.ConversionError, "No serving func is specified"),
    ([jnp.negative], [], quantkit.ConversionError, "Input tensors are not specified"),
    ([jnp.negative], [[("x", np.ones(2))]] * 2, quantkit.ConversionError,
     "mapping len 2 does not match serving func len 1"),
    ([jnp.negative] * 2, [[("x", np.ones(2))]] * 2, quantkit.NotYetSupportedError,
     "2 serving funcs"),
    ([jnp.negative], [[np.ones(2)]], quantkit.ConversionError, r"\(name, example array\)"),
    ([lambda x: x @ x], [[("x", np.ones((2, 3)))]], quantkit.ConversionError,
     r"\[capture\] JAX could not lower"),
])
def test_capture_errors(funcs, inputs, error, match):
    with pytest.raises(error, match=match):
        lower_jax(funcs, inputs)


# --- a CNN end to end ----------------------------------------------------------------------------
def init_cnn(key: Any) -> dict[str, Any]:
    k = jax.random.split(key, 8)

    def he(key: Any, shape: tuple[int, ...], fan_in: int) -> Any:
        return jax.random.normal(key, shape) * np.sqrt(2.0 / fan_in)
    return {"w1": he(k[0], (3, 3, 3, 16), 27), "b1": 0.1 * jax.random.normal(k[1], (16,)),
            "w2": he(k[2], (3, 3, 16, 32), 144), "b2": 0.1 * jax.random.normal(k[3], (32,)),
            "w3": he(k[4], (4 * 4 * 32, 64), 512), "b3": 0.1 * jax.random.normal(k[5], (64,)),
            "w4": he(k[6], (64, 10), 64), "b4": 0.1 * jax.random.normal(k[7], (10,))}


def cnn(params: dict[str, Any], x: Any, logits: bool = False) -> Any:
    """conv+bias+relu, max pool, conv+bias+tanh, average pool, dense+sigmoid, dense, softmax
    (without it with ``logits``)."""
    y = jax.nn.relu(_conv(x, params["w1"]) + params["b1"])
    y = lax.reduce_window(y, -jnp.inf, lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")
    y = jnp.tanh(_conv(y, params["w2"]) + params["b2"])
    y = lax.reduce_window(y, 0.0, lax.add, (1, 2, 2, 1), (1, 2, 2, 1), "VALID") / 4.0
    y = jax.nn.sigmoid(y.reshape(y.shape[0], -1) @ params["w3"] + params["b3"])
    y = y @ params["w4"] + params["b4"]
    return y if logits else jax.nn.softmax(y)


@pytest.fixture(scope="module")
def serving_func() -> Callable:
    return functools.partial(cnn, init_cnn(jax.random.PRNGKey(0)))


def images(n: int, seed: int) -> np.ndarray:
    """Natural-image crops at 16×16, standardized (roughly zero mean, unit variance) as the
    CNN's input; raw 0..1 pixels make its logits nearly the same for every crop."""
    return ((natural_crops(n, 16, seed) / 255.0 - 0.45) / 0.25).astype(np.float32)


CNN_OPS = ["CONV_2D", "MAX_POOL_2D", "CONV_2D", "TANH", "AVERAGE_POOL_2D", "RESHAPE",
           "FULLY_CONNECTED", "LOGISTIC", "FULLY_CONNECTED", "SOFTMAX"]


def test_cnn_float32(serving_func):
    x = images(4, seed=2)
    ours = converter(serving_func, [("images", x)]).convert()
    assert op_types(ours) == CNN_OPS
    assert_matches(run_litert(ours, {"images": x})["output_0"], np.asarray(serving_func(x)))
    theirs = tf.lite.TFLiteConverter.experimental_from_jax([serving_func], [[("images", x)]])
    assert_op_count_at_most_tf(ours, theirs.convert())


def test_cnn_int8_as_good_as_tf():
    """TF's ``experimental_from_jax`` converts this model with jax 0.10, so it is the yardstick:
    integer tensors only, one weight scale per filter, SQNR ≥ TF's − 0.5 dB and ≥ 35 dB, on
    logits (the softmax left out), calibrated and tested on different crops."""
    serving_func = functools.partial(cnn, init_cnn(jax.random.PRNGKey(0)), logits=True)
    example = np.zeros((1, 16, 16, 3), np.float32)  # the batch is fixed at the example's
    calibration = [[x[None]] for x in images(32, seed=3)]
    test = images(64, seed=4)
    reference = np.asarray(serving_func(test))

    def make(module: Any) -> Any:
        if module is tf.lite:
            return tf.lite.TFLiteConverter.experimental_from_jax([serving_func],
                                                                 [[("images", example)]])
        return converter(serving_func, [("images", example)])

    def measured(module: Any) -> Converted:
        model = convert(module, make, "int8", calibration)
        return measure(model, [test], [reference], lambda xs: [np.concatenate(
            [run_all(model, [row[None]])[0] for row in xs[0]])])  # one row at a time

    ours, theirs = measured(quantkit), measured(tf.lite)
    assert op_types(ours.model) == CNN_OPS[:-1]
    assert_as_good_as_tf(ours, theirs, floor_db=35.0)
