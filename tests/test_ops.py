"""One case per row of the lowering table and per Keras pattern, tested at three levels.

Each case is a small ``tf.function`` (seeded constant weights, dynamic batch where natural) or
a small Keras model. It is converted by quantkit and by ``tf.lite.TFLiteConverter`` (the
yardstick), once per session, and checked for:

* structure: the captured graph really holds the case's TF op; the expected builtins are there,
  each at the version TF writes for the same model; what should be folded or fused is gone;
  op count ≤ TF's;
* dtypes: the subgraph's inputs and outputs have TF's dtypes (float32), shapes and shape
  signatures (a dynamic batch as -1);
* numerics: LiteRT's output, with its default delegate (XNNPACK) and with the builtin kernels
  alone, is within 1e-4 of the output's max magnitude of TF's. XNNPACK tolerates some invalid
  models the builtin kernels reject (a TRANSPOSE_CONV output batch that differs from the input's).

``test_every_lowering_has_a_case`` fails when a row is added to ``LOWERINGS`` without a case.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Callable

import keras
import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from benchmarks.zoo.applications import randomize_batchnorm
import quantkit
from quantkit.frontend import capture
from quantkit.frontend.tf_ops import LOWERINGS
from quantkit.tflite_io.reader import SubgraphInfo, read_model
from tests.conftest import assert_matches, assert_op_count_at_most_tf, run_litert, run_single

BATCH = 2  # the batch a dynamic batch dimension gets at run time


# --- subjects: what gets converted ----------------------------------------------------------
@dataclass(frozen=True)
class Input:
    """A float32 input: its shape (None = dynamic) and the uniform range of its values."""

    shape: tuple[int | None, ...]
    low: float = -2.0
    high: float = 2.0

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        shape = [BATCH if d is None else d for d in self.shape]
        return rng.uniform(self.low, self.high, shape).astype(np.float32)


class Subject:
    """A model both converters take, its reference output, and how to run it in LiteRT."""

    arrays: list[np.ndarray]  # the inputs, in the model's input order
    dynamic_batch: bool

    def converter(self, cls: Any) -> Any:
        raise NotImplementedError

    def captured(self) -> capture.Captured:
        raise NotImplementedError

    def reference(self) -> np.ndarray:
        raise NotImplementedError

    def run(self, model: bytes) -> np.ndarray:
        """LiteRT with its default delegate, through the model's signature."""
        raise NotImplementedError


class FunctionSubject(Subject):
    """A ``tf.function`` over named inputs with one output (``output_0`` in the signature)."""

    def __init__(self, body: Callable[..., tf.Tensor], inputs: dict[str, Input], seed: int):
        specs = [tf.TensorSpec(i.shape, tf.float32, name=n) for n, i in inputs.items()]
        self.fn = tf.function(body, input_signature=specs)
        self.cf = self.fn.get_concrete_function()
        rng = np.random.default_rng(seed)
        self.values = {name: spec.draw(rng) for name, spec in inputs.items()}
        self.arrays = list(self.values.values())
        self.dynamic_batch = all(i.shape[0] is None for i in inputs.values())

    def converter(self, cls: Any) -> Any:
        return cls.from_concrete_functions([self.cf], self.fn)

    def captured(self) -> capture.Captured:
        return capture.capture_concrete_function(self.cf)

    def reference(self) -> np.ndarray:
        return self.fn(*self.arrays).numpy()

    def run(self, model: bytes) -> np.ndarray:
        outputs = run_litert(model, self.values)
        assert list(outputs) == ["output_0"]
        return outputs["output_0"]


class KerasSubject(Subject):
    """A one-input Sequential model, traced in inference mode."""

    def __init__(self, model: keras.Model, spec: Input, seed: int):
        self.model = model
        self.arrays = [spec.draw(np.random.default_rng(seed))]
        self.dynamic_batch = spec.shape[0] is None

    def converter(self, cls: Any) -> Any:
        return cls.from_keras_model(self.model)

    def captured(self) -> capture.Captured:
        return capture.capture_keras(self.model)

    def reference(self) -> np.ndarray:
        return keras.ops.convert_to_numpy(self.model(self.arrays[0], training=False))

    def run(self, model: bytes) -> np.ndarray:
        return run_single(model, self.arrays[0])


def run_builtin_kernels(model: bytes, arrays: list[np.ndarray]) -> np.ndarray:
    """LiteRT's own kernels, no delegate: inputs by position, the first output."""
    interpreter = Interpreter(
        model_content=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    details = interpreter.get_input_details()
    for detail, x in zip(details, arrays):
        interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    for detail, x in zip(details, arrays):
        interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


# --- cases -----------------------------------------------------------------------------------
LEVELS = ("structure", "io", "numerics")


@dataclass(frozen=True)
class Case:
    """A subject and what its conversion must look like.

    Attributes:
        build: makes the subject (lazily: tracing is slow).
        present: builtins quantkit must emit, each at TF's version for the same model.
        absent: builtins that must be gone (constant-folded, fused, folded into weights).
        tf_op: the ``LOWERINGS`` row the case exercises; its captured graph must contain it.
        check: a further structural check on quantkit's subgraph.
        versions: expected versions where quantkit writes a different form than TF on purpose.
        xfail: test level (one of ``LEVELS``) → why it fails today (a known bug elsewhere).
    """

    build: Callable[[], Subject]
    present: tuple[str, ...]
    absent: tuple[str, ...] = ()
    tf_op: str | None = None
    check: Callable[[SubgraphInfo], None] | None = None
    versions: dict[str, int] = field(default_factory=dict)
    xfail: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert set(self.xfail) <= set(LEVELS), f"xfail levels are {LEVELS}: {sorted(self.xfail)}"


def _const(shape: tuple[int, ...], seed: int, low: float = -1.0, high: float = 1.0) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).uniform(low, high, shape).astype(np.float32))


def fn_case(tf_op: str | None, body: Callable[..., tf.Tensor], present: tuple[str, ...],
            inputs: dict[str, Input] | None = None, seed: int = 0, **kwargs: Any) -> Case:
    spec = inputs or {"x": Input((None, 6, 6, 3))}
    return Case(lambda: FunctionSubject(body, spec, seed), present, tf_op=tf_op, **kwargs)


def keras_case(layers: Callable[[], list[Any]], spec: Input, present: tuple[str, ...],
               seed: int = 0, **kwargs: Any) -> Case:
    def build() -> Subject:
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input(spec.shape[1:]), *layers()])
        return KerasSubject(randomize_batchnorm(model, seed), spec, seed)
    return Case(build, present, **kwargs)


X = Input((None, 6, 6, 3))
POSITIVE = Input((None, 6, 6, 3), 0.25, 4.0)
TWO = {"x": Input((None, 4, 5)), "y": Input((None, 4, 5))}
SHAPE_CHAIN = ("SHAPE", "STRIDED_SLICE", "PACK", "GATHER", "CONCATENATION", "REDUCE_PROD")



def _conv2d_transpose(x: tf.Tensor) -> tf.Tensor:
    """As Keras writes it: the output shape computed from the dynamic batch."""
    out_shape = tf.stack([tf.shape(x)[0], 8, 7, 3])
    return tf.nn.conv2d_transpose(x, _const((3, 3, 3, 5), 3), out_shape, strides=(2, 2),
                                  padding="SAME")


def _fused_batchnorm(op: Callable[..., Any], seed: int) -> Callable[[tf.Tensor], tf.Tensor]:
    def body(x: tf.Tensor) -> tf.Tensor:
        channels = x.shape[-1]
        return op(x=x, scale=_const((channels,), seed, 0.5, 1.5),
                  offset=_const((channels,), seed + 1), mean=_const((channels,), seed + 2),
                  variance=_const((channels,), seed + 3, 0.5, 2.0), epsilon=1e-3,
                  is_training=False)[0]
    return body


def _conv_then_fused_batchnorm(x: tf.Tensor) -> tf.Tensor:
    y = tf.nn.conv2d(x, _const((3, 3, 3, 4), 5), 1, "SAME")
    return _fused_batchnorm(tf.raw_ops.FusedBatchNorm, 6)(y)


def _flatten_check(sg: SubgraphInfo) -> None:
    reshapes = [op for op in sg.ops if op.type.name == "RESHAPE"]
    assert len(reshapes) == 1, [op.type.name for op in sg.ops]
    assert sg.tensors[reshapes[0].inputs[1]].data.tolist() == [-1, 5 * 5 * 3]


def _dense_3d_check(sg: SubgraphInfo) -> None:
    assert [op.type.name for op in sg.ops] == ["FULLY_CONNECTED"]
    assert sg.ops[0].options.keep_num_dims


def _only(*types: str) -> Callable[[SubgraphInfo], None]:
    def check(sg: SubgraphInfo) -> None:
        assert [op.type.name for op in sg.ops] == list(types)
    return check


CASES: dict[str, Case] = {
    # --- convolutions and matmul (strides differ per axis so a swap shows) ---
    "Conv2D": fn_case("Conv2D", lambda x: tf.nn.conv2d(
        x, _const((3, 3, 3, 4), 1), strides=(1, 1, 2, 1), padding="SAME"), ("CONV_2D",)),
    "DepthwiseConv2dNative": fn_case("DepthwiseConv2dNative", lambda x: tf.nn.depthwise_conv2d(
        x, _const((3, 3, 3, 2), 2), strides=(1, 2, 1, 1), padding="VALID"),
        ("DEPTHWISE_CONV_2D",)),
    "Conv2DBackpropInput": fn_case("Conv2DBackpropInput", _conv2d_transpose, ("TRANSPOSE_CONV",),
                                   {"x": Input((None, 4, 4, 5))}),
    "MatMul": fn_case("MatMul", lambda x: tf.matmul(x, _const((6, 5), 4)), ("FULLY_CONNECTED",),
                      {"x": Input((None, 6))}),
    "MatMul/transpose_b": fn_case("MatMul", lambda x: tf.matmul(
        x, _const((5, 6), 4), transpose_b=True), ("FULLY_CONNECTED",), {"x": Input((None, 6))}),
    "BatchMatMulV2": fn_case("BatchMatMulV2", lambda x, y: tf.raw_ops.BatchMatMulV2(
        x=x, y=y, adj_y=True), ("BATCH_MATMUL",),
        {"x": Input((None, 3, 4)), "y": Input((None, 5, 4))}),
    # A constant 2-D right-hand side: one FULLY_CONNECTED that keeps the leading dims.
    "BatchMatMulV3": fn_case("BatchMatMulV3", lambda x: tf.raw_ops.BatchMatMulV3(
        x=x, y=_const((4, 5), 7), Tout=tf.float32), ("FULLY_CONNECTED",),
        {"x": Input((None, 3, 4))}),
    "BiasAdd": fn_case("BiasAdd", lambda x: tf.nn.bias_add(x, _const((3,), 8)), ("ADD",)),
    "FusedBatchNormV3": fn_case("FusedBatchNormV3",
                                _fused_batchnorm(tf.raw_ops.FusedBatchNormV3, 10), ("MUL", "ADD")),
    "FusedBatchNorm": fn_case("FusedBatchNorm", _conv_then_fused_batchnorm, ("CONV_2D",),
                              absent=("MUL", "ADD")),
    # --- quantization-aware training: float32 keeps an activation's FakeQuant as QUANTIZE →
    # DEQUANTIZE (as TF does); a weight's is applied to the constant ---
    "FakeQuantWithMinMaxVars": fn_case("FakeQuantWithMinMaxVars", lambda x: tf.nn.relu(
        tf.quantization.fake_quant_with_min_max_vars(x, -0.7, 0.9)), ("QUANTIZE", "DEQUANTIZE")),
    "FakeQuantWithMinMaxArgs": fn_case("FakeQuantWithMinMaxArgs", lambda x: tf.nn.relu(
        tf.quantization.fake_quant_with_min_max_args(x, -0.8, 0.6)), ("QUANTIZE", "DEQUANTIZE")),
    "FakeQuantWithMinMaxVarsPerChannel": fn_case(
        "FakeQuantWithMinMaxVarsPerChannel", lambda x: tf.nn.conv2d(
            x, tf.quantization.fake_quant_with_min_max_vars_per_channel(
                _const((3, 3, 3, 4), 1), [-1.0] * 4, [1.0] * 4, narrow_range=True),
            1, "SAME"), ("CONV_2D",), absent=("QUANTIZE",)),
    # --- pooling and reductions ---
    "MaxPool": fn_case("MaxPool", lambda x: tf.nn.max_pool2d(x, 3, 2, "SAME"), ("MAX_POOL_2D",),
                       {"x": Input((None, 7, 7, 3))}),
    "AvgPool": fn_case("AvgPool", lambda x: tf.nn.avg_pool2d(x, (2, 3), (2, 1), "VALID"),
                       ("AVERAGE_POOL_2D",)),
    "Mean": fn_case("Mean", lambda x: tf.reduce_mean(x, axis=[1, 2], keepdims=True), ("MEAN",)),
    "Max": fn_case("Max", lambda x: tf.reduce_max(x, axis=-1), ("REDUCE_MAX",)),
    "Sum": fn_case("Sum", lambda x: tf.reduce_sum(x, axis=1), ("SUM",)),
    "Prod": fn_case("Prod", lambda x: tf.reduce_prod(x, axis=2), ("REDUCE_PROD",),
                    {"x": Input((None, 6, 6, 3), 0.5, 1.5)}),
    # A hand-written flatten: Prod of the static dims of a dynamic-batch shape folds.
    "Prod/folded": fn_case("Prod", lambda x: tf.reshape(
        x, [-1, tf.reduce_prod(tf.shape(x)[1:])]), ("RESHAPE",), absent=SHAPE_CHAIN),
    # --- elementwise ---
    "Add": fn_case("Add", lambda x, y: tf.raw_ops.Add(x=x, y=y), ("ADD",), TWO),
    "AddV2": fn_case("AddV2", tf.add, ("ADD",), TWO),
    "Sub": fn_case("Sub", tf.subtract, ("SUB",), TWO),
    "Mul": fn_case("Mul", tf.multiply, ("MUL",), TWO),
    "RealDiv": fn_case("RealDiv", tf.divide, ("DIV",),
                       {"x": Input((None, 4, 5)), "y": Input((None, 4, 5), 0.5, 2.0)}),
    "Maximum": fn_case("Maximum", tf.maximum, ("MAXIMUM",), TWO),
    "Minimum": fn_case("Minimum", tf.minimum, ("MINIMUM",), TWO),
    "SquaredDifference": fn_case("SquaredDifference", tf.math.squared_difference,
                                 ("SQUARED_DIFFERENCE",), TWO),
    "Relu": fn_case("Relu", tf.nn.relu, ("RELU",)),
    "Relu6": fn_case("Relu6", tf.nn.relu6, ("RELU6",), {"x": Input((None, 6, 6, 3), -3, 9)}),
    "LeakyRelu": fn_case("LeakyRelu", lambda x: tf.nn.leaky_relu(x, alpha=0.3), ("LEAKY_RELU",)),
    "Sigmoid": fn_case("Sigmoid", tf.sigmoid, ("LOGISTIC",)),
    "Tanh": fn_case("Tanh", tf.tanh, ("TANH",)),
    "Softmax": fn_case("Softmax", tf.nn.softmax, ("SOFTMAX",)),
    "Rsqrt": fn_case("Rsqrt", tf.math.rsqrt, ("RSQRT",), {"x": POSITIVE}),
    # Keras 3 BatchNormalization: rsqrt of the (constant) variance.
    "Rsqrt/folded": fn_case("Rsqrt", lambda x: x * tf.math.rsqrt(_const((3,), 11, 0.5, 2.0)),
                            ("MUL",), absent=("RSQRT",)),
    "Sqrt": fn_case("Sqrt", tf.sqrt, ("SQRT",), {"x": POSITIVE}),
    "Neg": fn_case("Neg", tf.negative, ("NEG",)),
    "Exp": fn_case("Exp", tf.exp, ("EXP",)),
    "Square": fn_case("Square", tf.square, ("SQUARE",)),
    "Cast": fn_case("Cast", lambda x: tf.cast(tf.cast(x, tf.int32), tf.float32), ("CAST",),
                    {"x": Input((None, 6, 6, 3), -5, 5)}),
    "Cast/folded": fn_case("Cast", lambda x: x + tf.cast(tf.constant([1, 2, 3]), tf.float32),
                           ("ADD",), absent=("CAST",)),
    # --- shapes and data movement ---
    "Reshape": fn_case("Reshape", lambda x: tf.reshape(x, [-1, 3, 12]), ("RESHAPE",)),
    # Unknown spatial dims: TF keeps SQUEEZE (with a static shape it writes a RESHAPE).
    "Squeeze": fn_case("Squeeze", lambda x: tf.squeeze(x, axis=2), ("SQUEEZE",),
                       {"x": Input((None, None, 1, 3))}),
    "ExpandDims": fn_case("ExpandDims", lambda x: tf.expand_dims(x, 2), ("EXPAND_DIMS",),
                          {"x": Input((None, 4, 5))}),
    "Transpose": fn_case("Transpose", lambda x: tf.transpose(x, [0, 2, 1, 3]), ("TRANSPOSE",),
                         {"x": Input((None, 4, 5, 3))}),
    "ConcatV2": fn_case("ConcatV2", lambda x, y: tf.concat([x, y], axis=-1),
                        ("CONCATENATION",), TWO),
    "Pack": fn_case("Pack", lambda x, y: tf.stack([x, y], axis=1), ("PACK",), TWO),
    # A reshape to [batch, 108]: TF infers the output shape, so static_reshapes writes
    # [-1, 108] and the SHAPE/STRIDED_SLICE/PACK chain goes (TF's converter keeps it).
    "Pack/folded": fn_case("Pack", lambda x: tf.reshape(x, tf.stack([tf.shape(x)[0], 108])),
                           ("RESHAPE",), absent=SHAPE_CHAIN),
    "Pad": fn_case("Pad", lambda x: tf.pad(x, [[0, 0], [1, 2], [0, 1], [0, 0]]), ("PAD",)),
    "PadV2": fn_case("PadV2", lambda x: tf.pad(x, [[0, 0], [1, 0], [2, 1], [0, 0]],
                                               constant_values=0.5), ("PADV2",)),
    "StridedSlice": fn_case("StridedSlice", lambda x: x[:, 1:5, ::2, 1], ("STRIDED_SLICE",)),
    # The shape of a dynamic-batch tensor is only known at run time.
    "Shape": fn_case("Shape", lambda x: tf.cast(tf.shape(x), tf.float32), ("SHAPE", "CAST")),
    # Attention-style scaling by √depth: only the static last dim is read, so it all folds.
    "Shape/folded": fn_case("Shape", lambda x: x / tf.sqrt(tf.cast(tf.shape(x)[-1], tf.float32)),
                            ("MUL",), {"x": Input((None, 4, 5))},
                            absent=("SHAPE", "STRIDED_SLICE", "CAST", "SQRT", "DIV")),
    "GatherV2": fn_case("GatherV2", lambda x: tf.gather(x, [3, 0, 2], axis=1), ("GATHER",)),
    "Tile": fn_case("Tile", lambda x: tf.tile(x, [1, 2, 1, 3]), ("TILE",)),
    "DepthToSpace": fn_case("DepthToSpace", lambda x: tf.nn.depth_to_space(x, 2),
                            ("DEPTH_TO_SPACE",), {"x": Input((None, 3, 3, 8))}),
    # --- issue #12, the ops of unrolled RNNs: slices, and constants ---
    # Unpack is UNPACK, as TF writes it; quantkit slices (STRIDED_SLICE) where TF writes one
    # REVERSE_V2
    "Unpack": fn_case("Unpack", lambda x: tf.stack(tf.unstack(x, axis=1)[::-1], axis=1),
                      ("UNPACK", "PACK")),
    "ReverseV2": fn_case("ReverseV2", lambda x: tf.reverse(x, [1]), ("STRIDED_SLICE",),
                         versions={"STRIDED_SLICE": 1}),
    "Fill/constant": fn_case("Fill", lambda x: x + tf.fill([3], 2.0), ("ADD",),
                             absent=("FILL",)),
    # a dynamic batch read elementwise: a batch-1 constant broadcasts the same
    "Fill/dynamic_batch": fn_case("Fill", lambda x: x + tf.fill(tf.shape(x), 2.0), ("ADD",),
                                  absent=("FILL",)),
    "Range/constant": fn_case("Range", lambda x: x + tf.cast(tf.range(3), tf.float32),
                              ("ADD",), absent=("RANGE", "CAST")),
    "ResizeBilinear": fn_case("ResizeBilinear", lambda x: tf.image.resize(x, [9, 7], "bilinear"),
                              ("RESIZE_BILINEAR",)),
    "ResizeBilinear/align_corners": fn_case("ResizeBilinear", lambda x: tf.compat.v1.image.resize(
        x, [9, 7], "bilinear", align_corners=True), ("RESIZE_BILINEAR",)),
    "ResizeNearestNeighbor": fn_case("ResizeNearestNeighbor", lambda x: tf.image.resize(
        x, [12, 9], "nearest"), ("RESIZE_NEAREST_NEIGHBOR",)),
    # --- Keras patterns ---
    "keras/SeparableConv2D": keras_case(lambda: [keras.layers.SeparableConv2D(
        5, 3, depth_multiplier=2, padding="same")], X, ("DEPTHWISE_CONV_2D", "CONV_2D")),
    # TF's converter keeps Tensordot's reshapes around a FULLY_CONNECTED (v1), 11 ops; quantkit
    # writes one FULLY_CONNECTED with keep_num_dims, which is version 5 (op_version.cc).
    "keras/Dense_3d": keras_case(
        lambda: [keras.layers.Dense(4, bias_initializer="random_normal")], Input((None, 5, 7)),
        ("FULLY_CONNECTED",), absent=SHAPE_CHAIN, check=_dense_3d_check,
        versions={"FULLY_CONNECTED": 5}),
    "keras/Conv2DTranspose": keras_case(lambda: [keras.layers.Conv2DTranspose(
        3, 3, strides=2, padding="same", bias_initializer="random_normal")],
        Input((None, 4, 4, 5)), ("TRANSPOSE_CONV",)),
    "keras/Conv2DTranspose_zero_bias": keras_case(lambda: [keras.layers.Conv2DTranspose(
        3, 3, strides=2, padding="same")], Input((None, 4, 4, 5)), ("TRANSPOSE_CONV",)),
    "keras/PReLU": keras_case(lambda: [keras.layers.PReLU(
        alpha_initializer=keras.initializers.RandomUniform(0.1, 0.5))], X, ("PRELU",),
        absent=("RELU", "NEG", "MUL")),
    "keras/hard_swish": keras_case(lambda: [keras.layers.Activation("hard_swish")],
                                   Input((None, 6, 6, 3), -5, 5), ("HARD_SWISH",),
                                   absent=("RELU6", "MUL", "ADD")),
    "keras/silu": keras_case(lambda: [keras.layers.Activation("silu")], X, ("LOGISTIC", "MUL")),
    "keras/GlobalAveragePooling2D": keras_case(lambda: [keras.layers.GlobalAveragePooling2D()],
                                               X, ("MEAN",)),
    "keras/GlobalMaxPooling2D": keras_case(lambda: [keras.layers.GlobalMaxPooling2D()], X,
                                           ("REDUCE_MAX",)),
    "keras/UpSampling2D_bilinear": keras_case(lambda: [keras.layers.UpSampling2D(
        (2, 3), interpolation="bilinear")], X, ("RESIZE_BILINEAR",)),
    # Keras 3 repeats rows and columns (tf.repeat: EXPAND_DIMS, TILE, RESHAPE per axis); by
    # integer factors that is one nearest resize (TF's converter keeps the repeats: no version
    # to compare, RESIZE_NEAREST_NEIGHBOR without options that need more is version 1).
    "keras/UpSampling2D_nearest": keras_case(lambda: [keras.layers.UpSampling2D(
        2, interpolation="nearest")], X, ("RESIZE_NEAREST_NEIGHBOR",),
        absent=("TILE", "EXPAND_DIMS", "RESHAPE"), versions={"RESIZE_NEAREST_NEIGHBOR": 1}),
    "keras/UpSampling2D_nearest_2x3": keras_case(lambda: [keras.layers.UpSampling2D(
        (2, 3), interpolation="nearest")], X, ("RESIZE_NEAREST_NEIGHBOR",),
        absent=("TILE", "EXPAND_DIMS", "RESHAPE"), versions={"RESIZE_NEAREST_NEIGHBOR": 1}),
    # Erfc has no builtin: it is lowered only for the GELU pattern to absorb.
    "Erfc": fn_case("Erfc", lambda x: tf.nn.gelu(x, approximate=False), ("GELU",)),
    # LiteRT's CONCATENATION refuses a fused activation (NASNet concatenates, then ReLUs).
    "ConcatV2/relu": fn_case("ConcatV2", lambda x: tf.nn.relu(tf.concat([x, -x], axis=3)),
                             ("CONCATENATION", "RELU")),
    "keras/ZeroPadding2D": keras_case(lambda: [keras.layers.ZeroPadding2D(((1, 0), (2, 1)))],
                                      X, ("PAD",)),
    "keras/Flatten": keras_case(lambda: [keras.layers.Flatten()], Input((None, 5, 5, 3)),
                                ("RESHAPE",), absent=SHAPE_CHAIN, check=_flatten_check),
    "keras/Dropout": keras_case(lambda: [keras.layers.Dense(4), keras.layers.Dropout(0.5)],
                                Input((None, 6)), ("FULLY_CONNECTED",),
                                check=_only("FULLY_CONNECTED")),
    "keras/BatchNormalization_after_Conv2D": keras_case(lambda: [
        keras.layers.Conv2D(4, 3, padding="same"), keras.layers.BatchNormalization()], X,
        ("CONV_2D",), absent=("MUL", "ADD"), check=_only("CONV_2D")),
    "keras/Rescaling_before_valid_Conv2D": keras_case(lambda: [
        keras.layers.Rescaling(1 / 127.5, offset=-1.0), keras.layers.Conv2D(4, 3)],
        Input((None, 6, 6, 3), 0, 255), ("CONV_2D",), absent=("MUL", "ADD"),
        check=_only("CONV_2D")),
    "keras/Normalization_before_valid_Conv2D": keras_case(lambda: [
        keras.layers.Normalization(mean=[0.5, -0.2, 1.0], variance=[2.0, 0.5, 1.5]),
        keras.layers.Conv2D(4, 3)], X, ("CONV_2D",), absent=("MUL", "ADD", "SUB", "DIV"),
        check=_only("CONV_2D")),
    # --- issue #12: attention, embeddings, Conv3D and math ops ---
    # Keras MultiHeadAttention's two einsums: scores (q·kᵀ per head) and the weighted values.
    "Einsum": fn_case("Einsum", lambda q, k: tf.einsum("BTNH,BSNH->BNTS", q, k),
                      ("BATCH_MATMUL", "TRANSPOSE"),
                      {"q": Input((None, 5, 2, 4)), "k": Input((None, 6, 2, 4))}),
    "Einsum/values": fn_case("Einsum", lambda p, v: tf.einsum("BNTS,BSNH->BTNH", p, v),
                             ("BATCH_MATMUL", "TRANSPOSE"),
                             {"p": Input((None, 2, 5, 6)), "v": Input((None, 6, 2, 4))}),
    # A constant right-hand side: one FULLY_CONNECTED (EinsumDense's projection).
    "Einsum/dense": fn_case("Einsum", lambda x: tf.einsum("abc,cde->abde", x, _const((4, 2, 3),
                                                                                   12)),
                            ("FULLY_CONNECTED", "RESHAPE"), {"x": Input((None, 5, 4))},
                            absent=("BATCH_MATMUL",)),
    "Conv3D": fn_case("Conv3D", lambda x: tf.nn.conv3d(x, _const((2, 3, 3, 2, 4), 13),
                                                       (1, 1, 2, 1, 1), "SAME"),
                      ("CONV_3D",), {"x": Input((None, 3, 5, 5, 2))}),
    "Elu": fn_case("Elu", tf.nn.elu, ("ELU",)),
    "Selu": fn_case("Selu", tf.nn.selu, ("ELU", "LEAKY_RELU", "MUL"),
                    versions={"ELU": 1, "LEAKY_RELU": 1, "MUL": 1}),
    "Softplus": fn_case("Softplus", tf.nn.softplus, ("EXP", "LOG")),
    "Pow": fn_case("Pow", lambda x: tf.pow(x, 1.5), ("POW",), {"x": POSITIVE}),
    "Pow/gelu_tanh": fn_case("Pow", lambda x: tf.nn.gelu(x, approximate=True), ("GELU",),
                             absent=("POW", "TANH")),
    "Abs": fn_case("Abs", tf.abs, ("ABS",)),
    "Log": fn_case("Log", tf.math.log, ("LOG",), {"x": POSITIVE}),
    "Min": fn_case("Min", lambda x: tf.reduce_min(x, axis=[1, 2]), ("REDUCE_MIN",)),
    "ArgMax": fn_case("ArgMax", lambda x: tf.cast(tf.argmax(x, axis=-1), tf.float32),
                      ("ARG_MAX",)),
    "ArgMin": fn_case("ArgMin", lambda x: tf.cast(tf.argmin(x, axis=2), tf.float32),
                      ("ARG_MIN",)),
    "Split": fn_case("Split", lambda x: tf.concat(tf.split(x, 3, axis=2)[::-1], 2),
                     ("SPLIT",)),
    "SplitV": fn_case("SplitV", lambda x: tf.concat(tf.split(x, [1, 2], axis=-1)[::-1], -1),
                      ("SPLIT_V",)),
    "Greater": fn_case("Greater", lambda x: tf.where(x > 0.3, x, 0.5 * x),
                       ("GREATER", "SELECT_V2")),
    "Less": fn_case("Less", lambda x, y: tf.where(x < y, x, y), ("LESS", "SELECT_V2"), TWO),
    "LessEqual": fn_case("LessEqual", lambda x: tf.cast(x <= 0.5, tf.float32), ("LESS_EQUAL",)),
    "GreaterEqual": fn_case("GreaterEqual", lambda x: tf.cast(x >= 0.5, tf.float32),
                            ("GREATER_EQUAL",)),
    "Equal": fn_case("Equal", lambda x: tf.cast(tf.equal(tf.cast(x, tf.int32), 1), tf.float32),
                     ("EQUAL",)),
    "SelectV2": fn_case("SelectV2", lambda x, y: tf.where(x > y, x - y, y), ("SELECT_V2",),
                        TWO),
    # Keras's causal mask: ones_like(scores) & band(ones(T, T)); the band folds, the FILL of
    # True goes. (Keras fills −1e9; −3 keeps the output's magnitude, and so the numeric
    # tolerance, at the scale of x.)
    "LogicalAnd": fn_case("LogicalAnd", lambda x: tf.where(tf.logical_and(
        tf.ones_like(x, tf.bool), tf.linalg.band_part(tf.ones((4, 5), tf.bool), -1, 0)), x,
        -3.0), ("SELECT_V2",), {"x": Input((None, 4, 5))}, absent=("FILL", "LOGICAL_AND")),
    # a dynamic shape read where a batch of 1 would not do (a SELECT_V2's condition shape)
    "Fill": fn_case("Fill", lambda x: tf.where(tf.fill(tf.shape(x), True), x, 0.5),
                    ("FILL", "SELECT_V2")),
    "MatrixBandPart": fn_case("MatrixBandPart", lambda x: x * tf.linalg.band_part(
        tf.ones((4, 5)), 1, 2), ("MUL",), {"x": Input((None, 4, 5))}),
    # Softmax over a non-last axis: TRANSPOSE by a Range-built permutation.
    "Range": keras_case(lambda: [keras.layers.Softmax(axis=1)], Input((None, 4, 5)),
                        ("SOFTMAX", "TRANSPOSE"), absent=("RANGE",), tf_op=None),
    "Range/dynamic": fn_case("Range", lambda x: x * tf.cast(tf.range(tf.shape(x)[0]),
                                                            tf.float32)[:, None, None, None],
                             ("RANGE",)),
}


def _params(level: str) -> list[Any]:
    """The case ids, each marked xfail (strict) where its case expects ``level`` to fail."""
    return [pytest.param(case_id, marks=pytest.mark.xfail(strict=True, reason=case.xfail[level]))
            if level in case.xfail else case_id for case_id, case in CASES.items()]


@dataclass(frozen=True)
class Converted:
    subject: Subject
    ours: bytes
    theirs: bytes


@functools.cache
def converted(case_id: str) -> Converted:
    """Both conversions of a case, shared by its three tests."""
    subject = CASES[case_id].build()
    theirs = subject.converter(tf.lite.TFLiteConverter).convert()
    ours = subject.converter(quantkit.TFLiteConverter).convert()
    return Converted(subject, ours, theirs)


def _versions(sg: SubgraphInfo, op_type: str) -> set[int]:
    return {op.version for op in sg.ops if op.type.name == op_type}


# --- the tests -------------------------------------------------------------------------------
def test_every_lowering_has_a_case():
    covered = {case.tf_op for case in CASES.values()}
    assert set(LOWERINGS) <= covered, f"rows with no case: {sorted(set(LOWERINGS) - covered)}"
    assert covered - {None} <= set(LOWERINGS)


@pytest.mark.parametrize("case_id", _params("structure"))
def test_structure(case_id):
    case, conv = CASES[case_id], converted(case_id)
    if case.tf_op is not None:
        captured = conv.subject.captured()
        assert case.tf_op in {node.type for node in captured.graph.get_operations()}
    ours = read_model(conv.ours).subgraphs[0]
    theirs = read_model(conv.theirs).subgraphs[0]
    types = [op.type.name for op in ours.ops]
    for op_type in case.present:
        assert op_type in types, types
        expected = {case.versions[op_type]} if op_type in case.versions \
            else _versions(theirs, op_type)
        assert _versions(ours, op_type) == expected, op_type
    assert not set(case.absent) & set(types), types
    if case.check is not None:
        case.check(ours)
    assert_op_count_at_most_tf(conv.ours, conv.theirs)


def _io(data: bytes) -> list[tuple]:
    """(dtype, shape, shape signature) of the subgraph's inputs, then its outputs, in order.

    TF writes no signature for a concrete function, so tensors pair up by position. A static
    shape has no stored signature; it reads as the shape itself.
    """
    sg = read_model(data).subgraphs[0]
    tensors = [sg.tensors[i] for i in (*sg.inputs, *sg.outputs)]
    return [(t.dtype, t.shape, t.shape_signature or t.shape) for t in tensors]


def _traced_signatures(captured: capture.Captured) -> list[tuple[int, ...]]:
    """The captured graph's own input and output shapes, a dynamic dim as -1."""
    tensors = [*captured.inputs, *captured.outputs]
    return [tuple(-1 if d is None else d for d in t.shape.as_list()) for t in tensors]


def _expected_io(theirs: list[tuple], traced: list[tuple[int, ...]]) -> list[tuple]:
    """TF's IO, except dims TF's converter writes as -1 where the traced model knows them.

    TF's converter loses static dims through Keras 3's ``tf.repeat`` (UpSampling2D nearest:
    (-1, -1, 12, 3) for a model whose output is (None, 12, 12, 3)); quantkit keeps them.
    """
    expected = []
    for (dtype, _, signature), model_dims in zip(theirs, traced):
        dims = tuple(m if s == -1 and m != -1 else s for s, m in zip(signature, model_dims))
        expected.append((dtype, tuple(1 if d == -1 else d for d in dims), dims))
    return expected


@pytest.mark.parametrize("case_id", _params("io"))
def test_io_dtypes_and_shapes(case_id):
    conv = converted(case_id)
    ours, theirs = _io(conv.ours), _io(conv.theirs)
    assert ours == _expected_io(theirs, _traced_signatures(conv.subject.captured()))
    assert all(dtype == np.float32 for dtype, _, _ in ours)
    if conv.subject.dynamic_batch:  # the batch is 1 in the shape, -1 in the signature
        inputs = ours[:len(conv.subject.arrays)]
        assert all(shape[0] == 1 and signature[0] == -1 for _, shape, signature in inputs)


@pytest.mark.parametrize("case_id", _params("numerics"))
def test_numerics(case_id):
    """LiteRT's output (with XNNPACK and with the builtin kernels) against TF's.

    The ``Shape`` row's output is its input's shape, whatever the values: fed other values of
    the same shape (``tests/mutation.py``) it still passes, as it should.
    """
    conv = converted(case_id)
    expected = conv.subject.reference()
    assert_matches(conv.subject.run(conv.ours), expected)
    assert_matches(run_builtin_kernels(conv.ours, conv.subject.arrays), expected)


@pytest.mark.parametrize("equation, shapes, message", [
    ("abc,cd->ad", [(None, 4, 3), (3, 5)], "a label summed within one operand"),
    ("...c,cd->...d", [(None, 4, 3), (3, 5)], "no ellipsis"),
])
def test_einsum_forms_without_a_lowering_are_one_line_errors(equation, shapes, message):
    """Einsum forms the lowering lacks: a ConversionError naming the op, not a traceback."""
    specs = [tf.TensorSpec(s, tf.float32) for s in shapes]
    fn = tf.function(lambda *xs: tf.einsum(equation, *xs), input_signature=specs)
    with pytest.raises(quantkit.types.ConversionError, match=message):
        quantkit.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()],
                                                         fn).convert()
