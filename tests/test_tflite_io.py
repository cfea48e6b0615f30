"""quantkit.tflite_io: writer and reader round trip, LiteRT runs, bytes, and writer errors."""

from __future__ import annotations

import dataclasses
import enum
import typing

import flatbuffers
import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter

from quantkit.ir import options as o
from quantkit.ir.graph import Graph, Op, Tensor, const
from quantkit.ops import OPS
from quantkit.tflite_io import options_codec, read_model, schema, write_model
from quantkit.tflite_io.options_codec import read_options, write_options
from quantkit.types import Activation, ConversionError, OpType, Padding, Phase, QuantParams
from tests.conftest import run_litert

F32 = np.dtype(np.float32)


# --- hand-built graphs -----------------------------------------------------------------------


def cnn_graph(rng: np.random.Generator) -> Graph:
    """x[?,8,8,3] → CONV_2D 3×3 SAME → ADD + fused RELU → RESHAPE[?,256] → SOFTMAX."""
    x = Tensor("x", F32, (None, 8, 8, 3))
    w = const("conv/w", rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    b = const("conv/b", rng.standard_normal(4).astype(np.float32))
    conv = Tensor("conv", F32, (None, 8, 8, 4))
    bias2 = const("add/y", rng.standard_normal(4).astype(np.float32))
    added = Tensor("add", F32, (None, 8, 8, 4))
    shape = const("reshape/shape", np.array([-1, 256], np.int32))
    flat = Tensor("flat", F32, (None, 256))
    probs = Tensor("probs", F32, (None, 256))
    ops = [
        Op(OpType.CONV_2D, [x, w, b], [conv], o.Conv2DOptions(Padding.SAME), name="conv"),
        Op(OpType.ADD, [conv, bias2], [added], o.AddOptions(Activation.RELU), name="add"),
        Op(OpType.RESHAPE, [added, shape], [flat], name="reshape"),
        Op(OpType.SOFTMAX, [flat], [probs], o.SoftmaxOptions(beta=1.0), name="softmax"),
    ]
    return Graph(ops, [x], [probs], input_names=["image"], output_names=["scores"])


def cnn_reference(g: Graph, x: np.ndarray) -> np.ndarray:
    w, b = g.ops[0].inputs[1].data, g.ops[0].inputs[2].data  # w is OHWI
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    y = b + sum(
        np.einsum("nhwc,oc->nhwo", padded[:, i : i + 8, j : j + 8], w[:, i, j])
        for i in range(3)
        for j in range(3)
    )
    y = np.maximum(y + g.ops[1].inputs[1].data, 0).reshape(len(x), 256)
    e = np.exp(y - y.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def dense_graph(rng: np.random.Generator, key: str) -> Graph:
    """x[2,5] → FULLY_CONNECTED without bias (absent input) → y[2,3]."""
    x = Tensor("in", F32, (2, 5))
    w = const("w", rng.standard_normal((3, 5)).astype(np.float32))
    y = Tensor("out", F32, (2, 3))
    op = Op(OpType.FULLY_CONNECTED, [x, w, None], [y], o.FullyConnectedOptions(), name="fc")
    return Graph([op], [x], [y], ["features"], ["logits"], signature_key=key, name=key)


# --- (a) round trip --------------------------------------------------------------------------


def test_round_trip_structure(rng):
    g = cnn_graph(rng)
    info = read_model(write_model([g]))
    sg = info.subgraphs[0]
    assert (info.version, info.description, sg.name) == (3, "quantkit", "main")
    assert [op.type for op in sg.ops] == [op.type for op in g.ops]
    assert [op.version for op in sg.ops] == [1, 1, 1, 1]
    assert [op.options for op in sg.ops] == [op.options for op in g.ops]
    names = [t.name for t in g.tensors()]
    assert [t.name for t in sg.tensors] == names
    for ours, theirs in zip(g.tensors(), sg.tensors):
        assert theirs.dtype == ours.dtype
        assert theirs.shape == tuple(1 if d is None else d for d in ours.shape)
        if ours.is_const:
            assert theirs.shape_signature is None
            assert theirs.data.tobytes() == ours.data.tobytes()  # bit-exact
        else:
            assert theirs.shape_signature == tuple(-1 if d is None else d for d in ours.shape)
            assert theirs.buffer == 0 and theirs.data is None
    assert sg.inputs == (names.index("x"),) and sg.outputs == (names.index("probs"),)
    (sig,) = info.signatures
    assert (sig.key, sig.subgraph_index) == ("serving_default", 0)
    assert sig.inputs == {"image": names.index("x")}
    assert sig.outputs == {"scores": names.index("probs")}


def test_round_trip_quantization_and_odd_shapes():
    q_act = QuantParams((0.0625,), (-3,))  # float32-exact, so equality holds after the trip
    q_w = QuantParams((0.125, 0.25, 0.5), (0, 0, 0), axis=0)
    x = Tensor("x", np.dtype(np.int8), (1, 4), quant=q_act)
    w = Tensor("w", np.dtype(np.int8), (3, 4), np.arange(12, dtype=np.int8).reshape(3, 4), q_w)
    y = Tensor("y", np.dtype(np.int8), None, quant=q_act)  # unknown rank
    s = Tensor("scalar", F32, (), np.array(2.5, np.float32))
    z = Tensor("z", np.dtype(np.int8), (3,), quant=q_act)
    ops = [
        Op(OpType.FULLY_CONNECTED, [x, w, None], [y], o.FullyConnectedOptions()),
        Op(OpType.SQUEEZE, [y], [z], o.SqueezeOptions((0,))),
        Op(OpType.CUSTOM, [z, s], [Tensor("c", F32, (3,))], custom_code="MyOp"),
    ]
    g = Graph(ops, [x], [ops[-1].outputs[0]], ["x"], ["c"])
    sg = read_model(write_model([g])).subgraphs[0]
    by_name = {t.name: t for t in sg.tensors}
    assert by_name["x"].quant == q_act and by_name["w"].quant == q_w
    assert by_name["y"].shape is None and by_name["scalar"].shape == ()
    assert by_name["scalar"].data.tobytes() == np.float32(2.5).tobytes()
    assert sg.ops[0].inputs[2] == -1
    assert sg.ops[1].options == o.SqueezeOptions((0,))
    assert (sg.ops[2].type, sg.ops[2].custom_code, sg.ops[2].version) == (OpType.CUSTOM, "MyOp", 1)


def _nondefault(hint: typing.Any) -> typing.Any:
    """A value of the annotated type that differs from the usual defaults."""
    if typing.get_origin(hint) is tuple:
        return (1, 2)
    if Graph in typing.get_args(hint):  # a subgraph: an index once written
        return 3
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return list(hint)[-1]
    return {bool: True, int: 3, float: 0.5}[hint]


OPTION_CLASSES = [
    c for c in vars(o).values() if isinstance(c, type) and dataclasses.is_dataclass(c)
]


@pytest.mark.parametrize("cls", OPTION_CLASSES, ids=lambda c: c.__name__)
def test_every_options_class_round_trips(cls):
    hints = typing.get_type_hints(cls)
    options = cls(**{f.name: _nondefault(hints[f.name]) for f in dataclasses.fields(cls)})
    b = flatbuffers.Builder(0)
    code, table = write_options(b, options, "test")
    b.Finish(table)
    buf = b.Output()
    pos = flatbuffers.encode.Get(flatbuffers.packer.uoffset, buf, 0)
    assert read_options(code, flatbuffers.table.Table(buf, pos)) == options


def test_options_tables_are_schema_tables():
    """Every op table row's options class is a schema table that the codec reads back as that
    class (the round trip itself is ``test_every_options_class_round_trips``)."""
    for spec in OPS.values():
        assert spec.options_table is None or spec.options_table in schema.OPTIONS_CODES, spec.op
        assert not spec.options_required or spec.options is not None, spec.op
        if spec.options is not None:
            assert spec.options in OPTION_CLASSES, spec.op
            assert options_codec.options_table(spec.op) == spec.options.__name__


# --- (b) LiteRT ------------------------------------------------------------------------------


def loop_graphs(steps: int) -> tuple[Graph, Graph, Graph]:
    """``main(x)``: ``i, acc = 0, x; while i < steps: i, acc = i + 1, 2·acc + x`` → acc, as a
    WHILE whose condition and body are graphs; both loops read the same two graphs."""
    def variables(prefix: str) -> tuple[Tensor, Tensor, Tensor]:
        return (Tensor(f"{prefix}/i", np.dtype(np.int32), ()),
                Tensor(f"{prefix}/acc", F32, (None, 3)), Tensor(f"{prefix}/x", F32, (None, 3)))

    i, acc, x = variables("cond")
    more = Tensor("cond/more", np.dtype(bool), ())
    cond = Graph([Op(OpType.LESS, [i, const("cond/steps", np.int32(steps))], [more])],
                 [i, acc, x], [more], name="cond")
    i, acc, x = variables("body")
    doubled, summed, next_i = (Tensor("body/doubled", F32, (None, 3)),
                               Tensor("body/summed", F32, (None, 3)),
                               Tensor("body/next_i", np.dtype(np.int32), ()))
    body = Graph([Op(OpType.MUL, [acc, const("body/two", np.float32(2))], [doubled],
                     o.MulOptions()),
                  Op(OpType.ADD, [doubled, x], [summed], o.AddOptions()),
                  Op(OpType.ADD, [i, const("body/one", np.int32(1))], [next_i], o.AddOptions())],
                 [i, acc, x], [next_i, summed, x], name="body")
    x = Tensor("x", F32, (None, 3))
    zero = const("zero", np.int32(0))
    first = [Tensor(f"first/{k}", t.dtype, t.shape) for k, t in enumerate(body.inputs)]
    second = [Tensor(f"second/{k}", t.dtype, t.shape) for k, t in enumerate(body.inputs)]
    main = Graph([Op(OpType.WHILE, [zero, x, x], first, o.WhileOptions(cond, body)),
                  Op(OpType.WHILE, [zero, first[1], x], second, o.WhileOptions(cond, body))],
                 [x], [second[1]], ["x"], ["y"])
    return main, cond, body


def test_while_subgraphs_are_written_once_after_the_signatures_and_run():
    """The writer gives the graphs a WHILE's options reference their subgraph indices, after
    the signature graphs, each once however many ops reference it; LiteRT runs the loop."""
    main, cond, body = loop_graphs(steps=4)
    data = write_model([main])
    model = read_model(data)
    assert [s.name for s in model.subgraphs] == ["main", "cond", "body"]
    assert [op.options for op in model.subgraphs[0].ops] == [o.WhileOptions(1, 2)] * 2
    assert [op.type for op in model.subgraphs[2].ops] == [OpType.MUL, OpType.ADD, OpType.ADD]
    assert len(Interpreter(model_content=data).get_signature_list()) == 1
    x = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]], np.float32)
    acc = x.copy()
    for _ in range(8):  # two loops of 4 steps
        acc = 2 * acc + x
    np.testing.assert_allclose(run_litert(data, {"x": x})["y"], acc, rtol=1e-6)


def test_while_referencing_a_graph_not_written_is_an_error():
    main, cond, body = loop_graphs(steps=2)
    index = {main: 0, cond: 1}
    b = flatbuffers.Builder(0)
    with pytest.raises(ConversionError, match="body_subgraph 'body' is not among the subgraphs"):
        write_options(b, main.ops[0].options, "WHILE op", index)


def test_litert_runs_signature_by_name(rng):
    g = cnn_graph(rng)
    data = write_model([g])
    x = rng.standard_normal((2, 8, 8, 3)).astype(np.float32)  # batch 2 through the dynamic dim
    out = run_litert(data, {"image": x})
    np.testing.assert_allclose(out["scores"], cnn_reference(g, x), rtol=1e-4, atol=1e-6)


def test_litert_runs_each_subgraph_signature(rng):
    graphs = [dense_graph(rng, "first"), dense_graph(rng, "second")]
    data = write_model(graphs)
    interpreter = Interpreter(model_content=data)
    assert sorted(interpreter.get_signature_list()) == ["first", "second"]
    x = rng.standard_normal((2, 5)).astype(np.float32)
    for g in graphs:
        out = interpreter.get_signature_runner(g.signature_key)(features=x)
        np.testing.assert_allclose(out["logits"], x @ g.ops[0].inputs[1].data.T, rtol=1e-5)


def test_litert_runs_int8_per_channel_fully_connected(rng):
    """QUANTIZE → int8 FC (per-channel weights, int32 bias) → DEQUANTIZE, ±2 output steps."""
    w_float = rng.standard_normal((3, 8)).astype(np.float32)
    w_scales = np.abs(w_float).max(axis=1) / 127
    s_x, s_y = 4 / 127, 0.1
    qx, qy = QuantParams((s_x,), (0,)), QuantParams((s_y,), (5,))
    x = Tensor("x", F32, (1, 8))
    xq = Tensor("x_q", np.dtype(np.int8), (1, 8), quant=qx)
    w_int = np.round(w_float / w_scales[:, None]).astype(np.int8)
    w = Tensor("w", np.dtype(np.int8), (3, 8), w_int, QuantParams(tuple(w_scales), (0,) * 3, 0))
    bias = Tensor("b", np.dtype(np.int32), (3,), np.zeros(3, np.int32),
                  QuantParams(tuple(w_scales * s_x), (0, 0, 0), axis=0))
    yq = Tensor("y_q", np.dtype(np.int8), (1, 3), quant=qy)
    y = Tensor("y", F32, (1, 3))
    ops = [
        Op(OpType.QUANTIZE, [x], [xq]),
        Op(OpType.FULLY_CONNECTED, [xq, w, bias], [yq], o.FullyConnectedOptions()),
        Op(OpType.DEQUANTIZE, [yq], [y]),
    ]
    data = write_model([Graph(ops, [x], [y], ["x"], ["y"])])
    assert [op.version for op in read_model(data).subgraphs[0].ops] == [1, 4, 2]
    xs = rng.uniform(-1, 1, (1, 8)).astype(np.float32)
    out = run_litert(data, {"x": xs})["y"]
    np.testing.assert_allclose(out, xs @ w_float.T, atol=2 * s_y)


def test_litert_runs_16x8_conv_at_tfs_version(rng):
    """int16 activations, int8 per-channel weights, int64 bias: the versions TF's converter
    writes in int16x8 (QUANTIZE 1, CONV_2D 3, DEQUANTIZE 2; op_version.cc: 2, 1, 3)."""
    w_float = rng.standard_normal((4, 3, 3, 2)).astype(np.float32)
    w_scales = np.abs(w_float).reshape(4, -1).max(axis=1) / 127
    w_int = np.round(w_float / w_scales[:, None, None, None]).astype(np.int8)
    s_x, s_y = 4 / 32767, 40 / 32767
    x = Tensor("x", F32, (1, 5, 5, 2))
    xq = Tensor("x_q", np.dtype(np.int16), (1, 5, 5, 2), quant=QuantParams((s_x,), (0,)))
    w = Tensor("w", np.dtype(np.int8), (4, 3, 3, 2), w_int,
               QuantParams(tuple(w_scales), (0,) * 4, 0))
    bias = Tensor("b", np.dtype(np.int64), (4,), np.zeros(4, np.int64),
                  QuantParams(tuple(w_scales * s_x), (0,) * 4, 0))
    yq = Tensor("y_q", np.dtype(np.int16), (1, 5, 5, 4), quant=QuantParams((s_y,), (0,)))
    y = Tensor("y", F32, (1, 5, 5, 4))
    ops = [
        Op(OpType.QUANTIZE, [x], [xq]),
        Op(OpType.CONV_2D, [xq, w, bias], [yq], o.Conv2DOptions(Padding.SAME)),
        Op(OpType.DEQUANTIZE, [yq], [y]),
    ]
    data = write_model([Graph(ops, [x], [y], ["x"], ["y"])])
    assert [op.version for op in read_model(data).subgraphs[0].ops] == [1, 3, 2]
    xs = rng.uniform(-1, 1, (1, 5, 5, 2)).astype(np.float32)
    out = run_litert(data, {"x": xs})["y"]
    w_deq = w_int * w_scales[:, None, None, None].astype(np.float32)
    padded = np.pad(np.round(xs / s_x) * s_x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    expected = sum(
        np.einsum("nhwc,oc->nhwo", padded[:, i : i + 5, j : j + 5], w_deq[:, i, j])
        for i in range(3)
        for j in range(3)
    )
    np.testing.assert_allclose(out, expected, atol=s_y)


# --- (c), (d), (e) bytes ---------------------------------------------------------------------


def test_output_is_deterministic(rng):
    first = write_model([cnn_graph(np.random.default_rng(1))])
    again = write_model([cnn_graph(np.random.default_rng(1))])
    assert first == again
    g = cnn_graph(rng)
    assert write_model([g]) == write_model([g])


def test_file_identifier_and_constant_alignment(rng):
    data = write_model([cnn_graph(rng)], metadata={"extra": b"\x01\x02\x03"})
    assert data[4:8] == b"TFL3"
    base = np.frombuffer(data, np.uint8).ctypes.data
    consts = [t for t in read_model(data).subgraphs[0].tensors if t.is_const]
    assert len({t.buffer for t in consts}) == len(consts) == 4  # distinct bytes, own buffers
    for t in consts:
        assert (t.data.ctypes.data - base) % 16 == 0, t.name


def test_constants_with_the_same_bytes_share_a_buffer(rng):
    x = Tensor("x", F32, (None, 3))
    same = [const(f"c{i}", [1.0, 2.0, 3.0], np.float32) for i in range(3)]
    other = const("other", [1.0, 2.0, 4.0], np.float32)
    g = Graph(inputs=[x], input_names=["x"], output_names=["y"])
    t = x
    for k, c in enumerate([*same, other]):
        out = Tensor(f"t{k}", F32, (None, 3))
        g.ops.append(Op(OpType.ADD, [t, c], [out], o.AddOptions()))
        t = out
    g.outputs = [t]
    data = write_model([g])
    buffers = {t.name: t.buffer for t in read_model(data).subgraphs[0].tensors if t.is_const}
    assert buffers["c0"] == buffers["c1"] == buffers["c2"] != buffers["other"]
    value = rng.normal(size=(2, 3)).astype(np.float32)
    np.testing.assert_allclose(run_litert(data, {"x": value})["y"], value + [4, 8, 13], rtol=1e-6)


def test_metadata_min_runtime_version_and_extras(rng):
    info = read_model(write_model([cnn_graph(rng)], metadata={"extra": b"\x00abc"}))
    raw = info.metadata["min_runtime_version"]
    assert len(raw) == 16 and raw == b"1.5.0".ljust(16, b"\0")
    assert info.min_runtime_version == "1.5.0"
    assert info.metadata["extra"] == b"\x00abc"
    with pytest.raises(ConversionError, match="reserved"):
        write_model([cnn_graph(rng)], metadata={"min_runtime_version": b"9"})


def test_large_constants_round_trip():
    """~100 MB of weights (ResNet50 size), each copied in bulk, come back where they belong.
    (How fast: ``benchmarks/float32_conversion.py`` times whole conversions.)"""
    x = Tensor("x", F32, (1, 1024))
    ops, cur = [], x
    for i in range(24):
        w = const(f"w{i}", np.full((1024, 1024), i, np.float32))
        y = Tensor(f"y{i}", F32, (1, 1024))
        ops.append(Op(OpType.FULLY_CONNECTED, [cur, w, None], [y], o.FullyConnectedOptions()))
        cur = y
    data = write_model([Graph(ops, [x], [cur], ["x"], ["y"])])
    assert len(data) > 24 * 4 * 1024 * 1024
    tensors = read_model(data).subgraphs[0].tensors  # x, w0, y0, w1, y1, ...
    assert tensors[1].data[5, 5] == 0.0 and tensors[3].data[5, 5] == 1.0


# --- (g) errors ------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NotASchemaTable:
    value: int = 1


@dataclasses.dataclass(frozen=True)
class Conv2DOptions:  # named like the schema table, with a field the schema lacks
    padding: Padding = Padding.SAME
    bogus: int = 2


def _one_op_graph(op_type=OpType.RELU, dtype=F32, options=None, **op_kw) -> Graph:
    x = Tensor("x", np.dtype(dtype), (1, 4))
    y = Tensor("y", np.dtype(dtype), (1, 4))
    return Graph([Op(op_type, [x], [y], options, name="the_op", **op_kw)], [x], [y], ["x"], ["y"])


def _graph_with(**graph_kw) -> Graph:
    g = _one_op_graph()
    for key, value in graph_kw.items():
        setattr(g, key, value)
    return g


ERROR_CASES = [
    pytest.param(lambda: _one_op_graph(dtype=np.float64), r"tensor 'x' has dtype float64",
                 id="float64-tensor"),
    pytest.param(lambda: _one_op_graph(options=NotASchemaTable()),
                 r"RELU op 'the_op'.*NotASchemaTable is not a TFLite schema", id="unknown-options"),
    pytest.param(lambda: _one_op_graph(OpType.CONV_2D, options=Conv2DOptions()),
                 r"CONV_2D op 'the_op'.*Conv2DOptionsAddBogus", id="unknown-option-field"),
    pytest.param(lambda: _one_op_graph(OpType.SOFTMAX),
                 r"SOFTMAX op 'the_op' has no options; LiteRT needs its SoftmaxOptions",
                 id="required-options-missing"),
    pytest.param(lambda: _one_op_graph(OpType.CONV_2D, options=o.Pool2DOptions(Padding.SAME, 1, 1,
                                                                                 2, 2)),
                 r"CONV_2D op 'the_op' has Pool2DOptions; CONV_2D reads Conv2DOptions",
                 id="options-of-another-op"),
    pytest.param(lambda: _one_op_graph(OpType.CUSTOM), r"CUSTOM op 'the_op' has no custom_code",
                 id="custom-without-code"),
    pytest.param(lambda: _graph_with(input_names=["a", "b"]), r"2 signature input names for 1",
                 id="signature-names"),
    pytest.param(lambda: Graph([], [Tensor("c", F32, (2,), np.zeros(2, np.float64))]),
                 r"constant 'c': data is float64", id="const-dtype"),
    pytest.param(lambda: Graph([], [Tensor("q", np.dtype(np.int8), (2, 3),
                                           quant=QuantParams((1.0, 2.0), (0, 0), axis=1))]),
                 r"tensor 'q' shape \(2, 3\): quantization axis 1", id="quant-axis"),
]


@pytest.mark.parametrize("make_graph, message", ERROR_CASES)
def test_writer_errors_name_the_culprit(make_graph, message):
    with pytest.raises(ConversionError, match=message) as info:
        write_model([make_graph()])
    assert info.value.phase is Phase.WRITING


def test_repeated_signature_keys_are_an_error():
    with pytest.raises(ConversionError, match="repeated: \\['serving_default'\\]"):
        write_model([_one_op_graph(), _one_op_graph()])


def test_variable_tensors_and_intermediates_round_trip(rng):
    """A fused RNN's state is a variable tensor (no buffer, zeros in LiteRT until written);
    the integer LSTM reads scales from the op's intermediates."""
    x = Tensor("x", F32, (1, 4))
    state = Tensor("state", F32, (1, 4), is_variable=True)
    gate = Tensor("gate_scale", np.dtype(np.int16), (0,), quant=QuantParams((2.0**-12,), (0,)))
    y = Tensor("y", F32, (1, 4))
    op = Op(OpType.ADD, [x, state], [y], o.AddOptions(), name="add", intermediates=[gate])
    data = write_model([Graph([op], [x], [y], ["x"], ["y"])])
    sg = read_model(data).subgraphs[0]
    assert [t.is_variable for t in sg.tensors] == [False, True, False, False]
    assert sg.tensors[1].buffer == 0 and sg.tensors[1].data is None
    assert sg.ops[0].intermediates == (3,)
    assert sg.tensors[3].quant == QuantParams((2.0**-12,), (0,))
    value = rng.standard_normal((1, 4)).astype(np.float32)
    np.testing.assert_array_equal(run_litert(data, {"x": value})["y"], value)  # state: 0
