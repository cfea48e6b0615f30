"""Operator versions against what TF's converter writes: each op type quantkit emits, each mode.

Small seeded ``tf.function`` models make ``tf.lite.TFLiteConverter`` write every op type that
quantkit can emit (``test_tflite_versions.op_types_named_in``) in every mode TF has: float32,
full integer int8 (float and uint8 IO), int16x8, dynamic range (per channel and per tensor) and
float16, each set by ``quantkit.Preset`` as the benchmarks set it. Each model is converted once
per session; its ops are read back, rebuilt as IR and versioned by quantkit's table, and for
each op type the highest of quantkit's versions must be the version TF wrote. TF writes one
OperatorCode per op type, versioned for its most demanding use, so an op variant with a higher
version (a dilated depthwise, a rank-5 transpose, ...) gets a model of its own and the plain
form is compared too.

``test_every_row_is_checked_against_tf`` keeps ``NOT_FROM_TF`` honest: every row of the table
(and every int16x8 minimum) is reached by an op of these models at TF's version, or is listed
there with the reason TF cannot write it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter, OpResolverType

from quantkit import Preset
from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.ops import OPS
from quantkit.tflite_io import read_model, versions, write_model
from quantkit.tflite_io.reader import SubgraphInfo
from quantkit.types import OpType

F32 = Preset.FLOAT32
INT8, UINT8_IO, INT16X8 = Preset.INT8, Preset.UINT8_IO, Preset.INT16X8
DYNAMIC, FLOAT16 = Preset.DYNAMIC_RANGE, Preset.FLOAT16
S = (1, 8, 8, 16)


def _weights(*shape: int, seed: int) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).normal(0, 0.3, shape).astype(np.float32))


# --- the models: each takes one input, returns its outputs ------------------------------------
def core(x):
    """Every op type TF quantizes in int8 and int16x8, each in its plain form."""
    r = tf.nn.relu(x)  # on the input: nothing to fuse into
    c = tf.nn.conv2d(r, _weights(3, 3, 16, 16, seed=1), 1, "SAME") + _weights(16, seed=2)
    d = tf.nn.depthwise_conv2d(c, _weights(3, 3, 16, 1, seed=3), [1, 1, 1, 1], "SAME")
    mp, ap = tf.nn.max_pool2d(d, 2, 2, "VALID"), tf.nn.avg_pool2d(c, 2, 2, "VALID")
    s, t = mp + ap, mp - ap
    mx, mn = tf.maximum(s, t), tf.minimum(s, t)
    cat = tf.concat([s * t, mx, mn], 3)
    padded = tf.nn.relu6(tf.pad(cat, [[0, 0], [1, 1], [1, 1], [0, 0]]))
    sliced = tf.pad(padded, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=0.5)[:, 1:6, 1:6]
    rows = tf.reshape(tf.transpose(sliced, [0, 3, 1, 2]), (1, 48, 25))
    fc = tf.matmul(rows[0], _weights(25, 10, seed=4))
    g = tf.tile(tf.gather(sliced, [3, 1, 2], axis=3), [1, 2, 1, 1])
    up = tf.compat.v1.image.resize_bilinear(g, (12, 12))
    near = tf.compat.v1.image.resize_nearest_neighbor(g, (12, 12))
    t = tf.nn.conv2d_transpose(mp, _weights(3, 3, 8, 16, seed=23), (1, 8, 8, 8), 2, "SAME")
    return (t, tf.stack([mx, mn], 1), tf.matmul(rows, rows, transpose_b=True),
            tf.nn.softmax(fc), tf.nn.leaky_relu(up, 0.2), tf.sigmoid(near), tf.tanh(near),
            tf.nn.gelu(mp, approximate=False), tf.exp(tf.tanh(ap)), tf.math.rsqrt(r + 1.0),
            tf.reduce_mean(d, [1, 2]), tf.reduce_max(d, [1, 2]), tf.reduce_sum(d, [1, 2]),
            tf.reduce_prod(tf.tanh(s), [1, 2]))


def tails(x):
    """Op types TF keeps float in int8 or int16x8, and SQUARED_DIFFERENCE and DEPTH_TO_SPACE
    (which LiteRT cannot run in int16), each reading a quantized op and writing an output: no QUANTIZE follows an op
    left float (see ``DEVIATIONS``)."""
    c = tf.nn.conv2d(x, _weights(3, 3, 16, 16, seed=5), 1, "SAME") + _weights(16, seed=6)
    return (-c, tf.square(c), c / (tf.nn.relu(c) + 1.0), tf.sqrt(tf.nn.relu(c)),
            tf.cast(tf.cast(c, tf.int32), tf.float32), c * tf.nn.relu6(c + 3.0) / 6.0,
            tf.minimum(tf.maximum(c, -1.0), 1.0),
            tf.math.squared_difference(c, tf.nn.relu(c)),
            tf.nn.depth_to_space(c, 2))


@functools.cache
def _prelu() -> tf.keras.layers.PReLU:
    """Keras's PReLU, built once (tf.function makes variables only on its first trace)."""
    prelu = tf.keras.layers.PReLU(shared_axes=[1, 2])
    prelu.build((1, 8, 8, 16))
    prelu.alpha.assign(np.linspace(0.1, 0.3, 16, dtype=np.float32).reshape(1, 1, 16))
    return prelu


def prelu(x):
    """Keras's PReLU: one PRELU (float in int16x8). After an op that has other readers, TF
    writes it as RELU, NEG, MUL and ADD instead."""
    return _prelu()(tf.nn.conv2d(x, _weights(3, 3, 16, 16, seed=22), 1, "SAME"))


def quantize_after_float(x):
    """In int16x8, NEG stays float between the convolution and RELU: TF's quantizer inserts the
    QUANTIZE after it and raises that OperatorCode to 2 (see ``DEVIATIONS``)."""
    return tf.nn.relu(-tf.nn.conv2d(x, _weights(3, 3, 16, 8, seed=24), 1, "SAME"))


def variants(x):
    """Options that raise the version, one op per type."""
    d = tf.nn.depthwise_conv2d(x, _weights(3, 3, 16, 1, seed=7), [1, 1, 1, 1], "SAME",
                               dilations=[2, 2])
    t = tf.nn.conv2d_transpose(d, _weights(3, 3, 8, 16, seed=8), (1, 16, 16, 8), 2, "SAME")
    # int8 MUL whose product range is far below s_in0·s_in1 (rescale ≥ 1): 0 everywhere
    rescale = tf.nn.relu(x) * tf.minimum(x, 0.0)
    return (rescale, tf.matmul(tf.reshape(d, (1, 64, 16)), _weights(16, 12, seed=9)),
            tf.image.resize(t + _weights(8, seed=10), (24, 24)),  # bias; half-pixel bilinear
            tf.compat.v1.image.resize_nearest_neighbor(d, (12, 12), align_corners=True))


def variants2(x):
    grouped = tf.nn.conv2d(x, _weights(3, 3, 4, 8, seed=11), 1, "SAME")
    t = tf.nn.conv2d_transpose(grouped, _weights(3, 3, 8, 8, seed=12), (1, 16, 16, 8), 2, "SAME")
    indices = tf.constant(np.random.default_rng(13).integers(0, 8, (8, 2)), tf.int32)
    return (tf.nn.relu(t + _weights(8, seed=14)),  # fused activation
            tf.gather(tf.reshape(x, (8, 8, 16)), indices, axis=1, batch_dims=1),
            tf.image.resize(grouped, (12, 12), "nearest"))  # half-pixel nearest


def rank5(x):
    head = x[:, :1]
    return (x - head, x / (head * head + 1.0), tf.maximum(x, head), tf.minimum(x, head),
            tf.pad(x, [[0, 0], [1, 1], [0, 0], [0, 0], [0, 0]]),
            tf.pad(x, [[0, 0], [0, 0], [1, 1], [0, 0], [0, 0]], constant_values=2.0),
            tf.transpose(x, [0, 4, 1, 2, 3]))


def rank6(x):
    return tf.transpose(x, [0, 5, 4, 1, 2, 3])


def dynamic_batch(x):
    """SHAPE and EXPAND_DIMS stay ops only where the batch is unknown (a squeeze becomes a
    RESHAPE even then)."""
    e = tf.expand_dims(x, 1)
    flat = tf.reshape(x, tf.stack([tf.shape(x)[0], -1]))
    return tf.squeeze(tf.reduce_max(e, [2], keepdims=True), [1, 2]), flat


def hybrid(x):
    """Weights of ≥ 1024 elements: in dynamic range TF leaves smaller ones float."""
    c = tf.nn.conv2d(x, _weights(3, 3, 16, 16, seed=15), 1, "SAME") + _weights(16, seed=16)
    d = tf.nn.depthwise_conv2d(tf.concat([c, c], 3), _weights(3, 3, 32, 4, seed=17),
                               [1, 1, 1, 1], "SAME")
    fc = tf.matmul(tf.reshape(d, (64, 128)), _weights(128, 32, seed=18))
    t = tf.nn.conv2d_transpose(c, _weights(3, 3, 16, 16, seed=19), (1, 16, 16, 16), 2, "SAME")
    return fc, t, tf.matmul(tf.reshape(fc, (2, 32, 32)), _weights(2, 32, 40, seed=20))


def small_conv(x):
    return tf.nn.relu(tf.nn.conv2d(x, _weights(3, 3, 16, 8, seed=21), 1, "SAME"))


def integers(x):
    """int64 integer arithmetic."""
    return (x + x) * x - x


def int16_integers(x):
    """int16 integer (unquantized) tensors: TF writes ADD 1 and MUL 4, not op_version.cc's 5
    and 7."""
    return (tf.stack([x + x, x * x], 1),
            tf.gather(tf.concat([x, x], 3), [2, 0], axis=3)[:, 1:3])


def booleans(x):
    padded = tf.pad(x, [[0, 0], [1, 1], [0, 0], [0, 0]])[:, 1:3]
    return (tf.gather(tf.transpose(padded, [0, 2, 1, 3]), [1, 0], axis=3),
            tf.pad(x, [[0, 0], [1, 1], [0, 0], [0, 0]], constant_values=True))


def int16_indices(x):
    return tf.gather(x, tf.constant([1, 0], tf.int16), axis=3)


def to_int8_and_back(x):
    return tf.cast(tf.cast(x * 10.0, tf.int8), tf.float32)


def to_float16(x):
    return tf.cast(x, tf.float16)


def issue12(x):
    """The ops of issue #12 (attention masks, math ops, splits, comparisons), each reading a
    quantizable op; in int8 and int16x8 the float-only ones (POW, ELU) stay float."""
    c = tf.nn.conv2d(x, _weights(3, 3, 16, 16, seed=25), 1, "SAME") + _weights(16, seed=26)
    a, b = tf.split(c, 2, axis=3)
    p, q = tf.split(c, [4, 12], axis=3)
    return (tf.abs(a), tf.math.log(tf.abs(b) + 1.0), tf.reduce_min(c, [1, 2]),
            tf.cast(tf.argmax(c, axis=3), tf.float32), tf.cast(tf.argmin(c, axis=3), tf.float32),
            tf.where(tf.reduce_max(p, 3, keepdims=True) > 0.5, p, q[..., :4]),
            tf.cast(a < b, tf.float32),
            tf.cast(a >= b, tf.float32), tf.cast(a <= b, tf.float32),
            tf.pow(tf.abs(q) + 0.5, 1.5), tf.nn.elu(q))


def keras_lstm():
    """A tf_keras LSTM (batch 1, gate matrices of ≥ 1024 weights: TF's dynamic-range
    quantizer takes them): TF fuses it into UNIDIRECTIONAL_SEQUENCE_LSTM only from a Keras 2
    model (``from_keras_model``), not from a ``tf.function`` calling the layer."""
    import tf_keras

    tf_keras.utils.set_random_seed(0)
    return tf_keras.Sequential([tf_keras.Input((14, 30), batch_size=1),
                                tf_keras.layers.LSTM(40)])


@dataclass(frozen=True)
class Case:
    build: Callable
    modes: tuple[Preset, ...] = (F32,)
    shape: tuple[int | None, ...] = S
    dtype: tf.DType = tf.float32
    per_tensor: bool = False  # TF's _experimental_disable_per_channel
    keras: bool = False  # ``build()`` returns a tf_keras model, converted as one


CASES: dict[str, Case] = {
    "core": Case(core, (F32, INT8, INT16X8, FLOAT16)),
    "tails": Case(tails, (F32, INT8, INT16X8)),
    "prelu": Case(prelu, (F32, INT8, INT16X8)),
    "quantize_after_float": Case(quantize_after_float, (INT16X8,)),
    "variants": Case(variants, (F32, INT8, INT16X8)),
    "variants2": Case(variants2, (F32, INT8, INT16X8)),
    "rank5": Case(rank5, (F32, INT8), (1, 2, 3, 4, 5)),
    "rank6": Case(rank6, (F32, INT8), (1, 2, 3, 4, 5, 2)),
    "dynamic_batch": Case(dynamic_batch, (F32, INT8, INT16X8), (None, 8, 8, 16)),
    "hybrid": Case(hybrid, (DYNAMIC,)),
    "hybrid_per_tensor": Case(hybrid, (DYNAMIC,), per_tensor=True),
    "uint8_io": Case(small_conv, (UINT8_IO,)),
    "int64": Case(integers, dtype=tf.int64),
    "int16": Case(int16_integers, dtype=tf.int16),
    "bool": Case(booleans, dtype=tf.bool),
    "int16_indices": Case(int16_indices),
    "cast_int8": Case(to_int8_and_back),
    "cast_float16": Case(to_float16),
    "issue12": Case(issue12, (F32, INT8)),
    "lstm": Case(keras_lstm, (F32, INT8, DYNAMIC), (1, 14, 30), keras=True),
}
CONVERSIONS = [(name, mode) for name, case in CASES.items() for mode in case.modes]


@functools.cache
def tf_model(name: str, mode: Preset) -> bytes:
    """TF's conversion of a case in a mode (calibrated on seeded normal samples)."""
    case = CASES[name]
    if case.keras:
        converter = tf.lite.TFLiteConverter.from_keras_model(case.build())
    else:
        fn = tf.function(case.build, autograph=False,
                         input_signature=[tf.TensorSpec(case.shape, case.dtype)])
        converter = tf.lite.TFLiteConverter.from_concrete_functions(
            [fn.get_concrete_function()], fn)
    sample_shape = tuple(1 if d is None else d for d in case.shape)
    rng = np.random.default_rng(0)
    mode.configure(converter, lambda: (
        [rng.standard_normal(sample_shape).astype(np.float32)] for _ in range(8)))
    if case.per_tensor:
        converter._experimental_disable_per_channel = True
    return converter.convert()


def ir_graph(sg: SubgraphInfo) -> Graph:
    """The IR graph equivalent to a subgraph read back (dynamic dims from shape_signature)."""
    tensors = []
    for t in sg.tensors:
        shape = t.shape
        if shape is not None and t.shape_signature is not None:
            shape = tuple(None if s == -1 else d for d, s in zip(shape, t.shape_signature))
        tensors.append(Tensor(t.name, t.dtype, shape, t.data, t.quant,
                              is_variable=t.is_variable))
    ops = [
        Op(op.type, [None if i < 0 else tensors[i] for i in op.inputs],
           [tensors[i] for i in op.outputs], op.options, custom_code=op.custom_code,
           intermediates=[tensors[i] for i in op.intermediates])
        for op in sg.ops
    ]
    return Graph(ops, [tensors[i] for i in sg.inputs], [tensors[i] for i in sg.outputs],
                 name=sg.name)


@dataclass(frozen=True)
class Compared:
    theirs: dict[OpType, int]  # the version TF wrote per op type (the highest, if several)
    ours: dict[OpType, int]  # quantkit's highest version per op type
    at_tf_version: list[Op]  # the ops whose own version is the one TF wrote for their type
    int16x8: bool  # an int16x8 model (``versions.is_int16x8_model``)


@functools.cache
def compared(name: str, mode: Preset) -> Compared:
    info = read_model(tf_model(name, mode))
    theirs: dict[OpType, int] = {}
    for code in info.op_codes:
        theirs[code.type] = max(theirs.get(code.type, 0), code.version)
    ours: dict[OpType, int] = {}
    ops = ir_graph(info.subgraphs[0]).ops
    int16x8 = versions.is_int16x8_model(ops)
    own = [versions.op_version(op, int16x8) for op in ops]
    for op, v in zip(ops, own):
        ours[op.type] = max(ours.get(op.type, 0), v)
    return Compared(theirs, ours, [op for op, v in zip(ops, own) if v == theirs[op.type]],
                    int16x8)


# Where quantkit writes another version than TF on purpose: (case, mode) → {op type: ours}.
DEVIATIONS: dict[tuple[str, Preset], dict[OpType, int]] = {
    # TF's int16x8 quantizer raises every QUANTIZE it inserts inside the graph to 2, then adds
    # the input's QUANTIZE to the same OperatorCode. Which QUANTIZE feeds from a float op is a
    # fact about the graph, not the op: quantkit writes 1 for float → int16 (the input's, and
    # LiteRT runs either), 2 for an int16 requantize as TF does.
    ("quantize_after_float", INT16X8): {OpType.QUANTIZE: 1},
}


def _ids(pairs: list[tuple[str, Preset]]) -> list[str]:
    return [f"{name}-{mode.value}" for name, mode in pairs]


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
@pytest.mark.parametrize("name, mode", CONVERSIONS, ids=_ids(CONVERSIONS))
def test_versions_match_tf(name, mode):
    """Per op type, quantkit's table gives the version TF's converter wrote (or the listed
    deviation, which TF's model must still show)."""
    result = compared(name, mode)
    deviations = DEVIATIONS.get((name, mode), {})
    assert all(result.theirs[t] != v for t, v in deviations.items())
    assert {t.name: v for t, v in result.ours.items()} \
        == {t.name: v for t, v in {**result.theirs, **deviations}.items()}


def _deciding_rule(op: Op, int16x8: bool) -> tuple[OpType, int | str]:
    """What versions ``op``: its type and the version of the row that holds, or "int16x8"
    when the type's int16x8 minimum is above the row of the op's float form."""
    minimum = OPS[op.type].int16.min_version if int16x8 else None
    form = versions.float_form(op) if minimum is not None else op
    row = next(v for v, condition in OPS[op.type].versions if condition(form))
    return (op.type, "int16x8") if minimum is not None and minimum > row else (op.type, row)


# Rows TF's converter cannot write, each checked only by its case in test_tflite_versions.py.
_INT16_ROWS = ("op_version.cc's int16 rows: TF's converter writes int16 activations only "
               "through its int16x8 quantizer (int16.min_version) and refuses these ops on "
               "int16 integer tensors; they version int16 outside an int16x8 model")
NOT_FROM_TF: dict[tuple[OpType, int | str], str] = {
    (OpType.ADD, 6): "float16 arithmetic: TF refuses float16 ADD and MUL",
    (OpType.MUL, 8): "float16 arithmetic: TF refuses float16 ADD and MUL",
    (OpType.CUSTOM, 1): "TF writes builtins for every op here; custom ops are version 1",
    (OpType.DEQUANTIZE, 1): "uint8 → float32: quantkit's legacy uint8 mode, which TF 2 lacks",
    (OpType.SQUEEZE, 1): "TF writes every squeeze as RESHAPE, even of a dynamic batch",
    (OpType.STRIDED_SLICE, 6): "TF rewrites ellipsis and new-axis masks into plain slices",
    (OpType.TRANSPOSE, 8): "TF reshapes a transpose of rank > 6 to a lower rank",
    **dict.fromkeys([(OpType.AVERAGE_POOL_2D, 3), (OpType.MAX_POOL_2D, 3),
                     (OpType.BATCH_MATMUL, 3), (OpType.LEAKY_RELU, 2), (OpType.LOGISTIC, 3),
                     (OpType.TANH, 3), (OpType.SOFTMAX, 3), (OpType.RSQRT, 3), (OpType.MEAN, 3),
                     (OpType.REDUCE_MAX, 3), (OpType.RELU, 3), (OpType.RELU6, 3),
                     (OpType.MAXIMUM, 4), (OpType.MINIMUM, 4), (OpType.PAD, 3),
                     (OpType.PADV2, 3), (OpType.TRANSPOSE, 5), (OpType.RESIZE_BILINEAR, 4),
                     (OpType.RESIZE_NEAREST_NEIGHBOR, 4)], _INT16_ROWS),
    # Issue #12's rows not yet compared with TF (the issue12 model runs float32 and int8 only:
    # TF's int16x8 versions of SELECT_V2 and ARG_MAX differ from the table's, open), and ops
    # the model does not hold (CONV_3D, EQUAL, FILL, LOGICAL_AND, RANGE: tests/test_ops.py
    # compares their float32 versions with TF's).
    **dict.fromkeys([(OpType.ABS, 3), (OpType.REDUCE_MIN, 3), (OpType.SPLIT, 3),
                     (OpType.SELECT_V2, 2), (OpType.SELECT_V2, "int16x8"),
                     (OpType.SPLIT_V, 3)], _INT16_ROWS),
    **dict.fromkeys([(t, "int16x8") for t in (
        OpType.ABS, OpType.LOG, OpType.REDUCE_MIN, OpType.SPLIT, OpType.SPLIT_V)],
        "issue #12: int16x8 not yet compared with TF"),
    **dict.fromkeys([(OpType.CONV_3D, 1), (OpType.EQUAL, 1), (OpType.EQUAL, 2),
                     (OpType.FILL, 1), (OpType.LOGICAL_AND, 1), (OpType.RANGE, 1)],
                    "issue #12: not in these models (float32 versions: tests/test_ops.py)"),
    (OpType.UNIDIRECTIONAL_SEQUENCE_LSTM, 2): "TF's dynamic-range quantizer always sets "
    "asymmetric_quantize_inputs (version 3), as quantkit's does",
    (OpType.UNIDIRECTIONAL_SEQUENCE_LSTM, 4): "diagonal recurrent weights: Keras LSTMs have "
    "full recurrent matrices",
    (OpType.UNPACK, 1): "not in these models (tests/test_ops.py's Unpack case compares its "
                        "float32 version with TF's)",
    **dict.fromkeys([(OpType.UNPACK, v) for v in (2, 3, 4)],
                    "an int8/bool/int16 UNPACK: not in these models (op_version.cc's rows; "
                    "tests/test_quantize_rules.py runs int8 and int16 in LiteRT)"),
    (OpType.FILL, 2): "a bool FILL (a mask): not in these models (tests/test_ops.py's Fill "
                      "case compares its version with TF's)",
    (OpType.FILL, 3): "an int8/int16 FILL: quantkit fills only masks and float constants, "
                      "which fold",
    # TF 2.21 never fuses a SimpleRNN (it writes a WHILE loop): tests/test_rnn.py runs these
    # versions in LiteRT
    **dict.fromkeys([(OpType.UNIDIRECTIONAL_SEQUENCE_RNN, v) for v in (1, 2, 3)],
                    "issue #12: TF writes SimpleRNNs as WHILE loops"),
    # TF writes a Keras GRU as a WHILE (version 1) at batch 1 only; tests/test_rnn.py runs
    # quantkit's WHILE and its DYNAMIC_UPDATE_SLICE (a GRU returning sequences) in LiteRT
    **dict.fromkeys([(OpType.WHILE, 1), (OpType.DYNAMIC_UPDATE_SLICE, 1)],
                    "issue #12: loops are not in these models (tests/test_rnn.py)"),
}


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
def test_every_row_is_checked_against_tf():
    """Each row of the table and each int16x8 minimum versions some op of TF's models at the
    version TF wrote, or is in NOT_FROM_TF; and nothing listed there is reached after all."""
    reached = set()
    for name, mode in CONVERSIONS:
        result = compared(name, mode)
        reached |= {_deciding_rule(op, result.int16x8) for op in result.at_tf_version}
    rules = {(t, v) for t, spec in OPS.items() for v, _ in spec.versions}
    rules |= {(t, "int16x8") for t, spec in OPS.items() if spec.int16.min_version}

    def names(pairs):
        return sorted(f"{t.name} {v}" for t, v in pairs)

    assert names(rules - reached - set(NOT_FROM_TF)) == []
    assert names(set(NOT_FROM_TF) & reached) == []
    assert names(set(NOT_FROM_TF) - rules) == []


# --- LiteRT runs what quantkit writes ----------------------------------------------------------
# Not where TF's own model fails in LiteRT: its int16x8 PADV2 keeps a float32 pad value;
# LiteRT has no int16 SQUARED_DIFFERENCE; its per-tensor hybrid FULLY_CONNECTED (builtin
# kernel) gives other values on each run, some inf.
TF_FAILS = {("core", INT16X8), ("tails", INT16X8), ("hybrid_per_tensor", DYNAMIC)}
REWRITTEN = [pair for pair in CONVERSIONS if pair not in TF_FAILS]


def _run_all(model: bytes, x: np.ndarray) -> list[np.ndarray]:
    """Every output of a one-input model, with LiteRT's builtin kernels alone."""
    interpreter = Interpreter(
        model_content=model,
        experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    (detail,) = interpreter.get_input_details()
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in interpreter.get_output_details()]


def _sample(model: bytes) -> np.ndarray:
    """A seeded input for the model's one input (a dynamic batch of 2)."""
    sg = read_model(model).subgraphs[0]
    t = sg.tensors[sg.inputs[0]]
    shape = tuple(2 if s == -1 else d for d, s in zip(t.shape, t.shape_signature or t.shape))
    rng = np.random.default_rng(1)
    if t.dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(t.dtype, np.integer):
        info = np.iinfo(t.dtype)
        return rng.integers(max(info.min, -100), min(info.max, 100), shape).astype(t.dtype)
    return rng.standard_normal(shape).astype(t.dtype)


@pytest.mark.filterwarnings("ignore:Statistics for quantized inputs")
@pytest.mark.parametrize("name, mode", REWRITTEN, ids=_ids(REWRITTEN))
def test_litert_runs_quantkit_versions(name, mode):
    """TF's model → reader → IR → quantkit's writer (quantkit's versions, one OperatorCode per
    version) runs in LiteRT with exactly TF's outputs; its minimum runtime is TF's (but in
    int16x8, where TF's metadata keeps its float model's)."""
    theirs = tf_model(name, mode)
    ours = write_model([ir_graph(read_model(theirs).subgraphs[0])])
    x = _sample(theirs)
    expected, actual = _run_all(theirs, x), _run_all(ours, x)
    assert len(actual) == len(expected)
    for a, e in zip(actual, expected):
        np.testing.assert_array_equal(a, e)
    if mode is not INT16X8:
        assert read_model(ours).min_runtime_version == read_model(theirs).min_runtime_version
