"""``TFLiteConverter.from_tflite``: a float ``.tflite`` of any origin, in every mode.

The sources are written by TF's converter (float32, its float16 mode, sparse weights from its
``EXPERIMENTAL_SPARSITY`` on magnitude-pruned weights), by TF's converter and then stripped of
the SignatureDef, and by quantkit's writer straight from hand-built IR (unfolded batch norm and
separate activations, custom ops, two signatures). Each converted model runs in LiteRT and is
measured against the Keras model (or the source model) on test digits distinct from the
calibration digits, with absolute floors.
"""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.lite.tools import flatbuffer_utils

import quantkit
from benchmarks.aeq_side_by_side import strip_signatures, tf_float_tflite
from benchmarks.zoo.mnist import digits
from quantkit.cli import main
from quantkit.ir import options as o
from quantkit.ir.graph import Graph, Op, Tensor, const
from quantkit.tflite_io import write_model
from quantkit.tflite_io.reader import op_types, read_model
from quantkit.types import ConversionError, OpType, Padding
from tests import side_by_side as sbs
from tests.models import sequential_cnn, two_in_two_out

# Floors (dB) per mode on the small CNN (measured: float32 128, int8 34, dynamic range 41,
# float16 65, int16x8 43, uint8 33); float16 weights cap a float16 source near 65 dB.
FLOORS = {"float32": 60.0, "dynamic_range": 35.0, "float16": 60.0, "int8": 28.0,
          "int16x8": 36.0, "uint8": 28.0}
KERAS_MARGIN_DB = 0.3  # int8 from the .tflite vs int8 straight from the Keras model
SOURCE_DESCRIPTION = "hand-built source model"  # not "quantkit…": the mutation plugin spares it


@pytest.fixture(scope="module")
def cnn():
    model = sequential_cnn()
    calibration = digits(24, "train", 0).astype(np.float32)
    test = digits(48, "test").astype(np.float32)
    reference = [model.predict(test, verbose=0)]
    float32 = tf_float_tflite(model)
    sources = {
        "float32": float32,
        "float16_weights": tf_float_tflite(model, optimizations=[tf.lite.Optimize.DEFAULT],
                                       supported_types=[tf.float16]),
        "no_signature": strip_signatures(float32),
    }
    return model, calibration, test, reference, sources


@pytest.mark.parametrize("source", ["float32", "float16_weights", "no_signature"])
def test_every_mode_runs_in_litert(cnn, source):
    """Each source converts in every mode; each result runs in LiteRT, follows its input and
    reaches the mode's floor against the Keras model."""
    _, calibration, test, reference, sources = cnn
    if source == "float16_weights":
        assert "DEQUANTIZE" in op_types(sources[source])
    if source == "no_signature":
        assert not read_model(sources[source]).signatures
    for mode in sbs.MODES:
        model = sbs.convert(quantkit, lambda m: m.TFLiteConverter.from_tflite(sources[source]),
                            mode, calibration)
        ours = sbs.measure(model, [test], reference)
        sbs.assert_input_matters(ours)
        assert ours.sqnr >= FLOORS[mode], f"{source} {mode}: {ours}"
        if mode != "float16":  # float16 weights come back float32 (or int8)
            assert "DEQUANTIZE" not in ours.ops[:1], f"{source} {mode}: {ours.ops}"


def test_names_kept_without_signature(cnn):
    """Without a SignatureDef, inputs and outputs go by position and keep their tensor names."""
    sources = cnn[4]
    source = read_model(sources["no_signature"]).subgraphs[0]
    out = quantkit.TFLiteConverter.from_tflite(sources["no_signature"]).convert()
    (signature,) = read_model(out).signatures
    assert list(signature.inputs) == [source.tensors[i].name for i in source.inputs]
    assert list(signature.outputs) == [source.tensors[i].name for i in source.outputs]


def test_int8_as_good_as_the_keras_path(cnn):
    """int8 from TF's float .tflite reaches the direct Keras conversion's SQNR − 0.3 dB."""
    model, calibration, test, reference, sources = cnn
    theirs = sbs.measure(sbs.convert(quantkit, sbs.keras_converter(model), "int8", calibration),
                         [test], reference)
    ours = sbs.measure(sbs.convert(quantkit, lambda m: m.TFLiteConverter.from_tflite(
        sources["float32"]), "int8", calibration), [test], reference)
    sbs.assert_input_matters(ours)
    assert not sbs.float_tensors_inside(ours.model)
    assert not sbs.per_channel_mismatches(ours.model)
    assert ours.sqnr >= max(theirs.sqnr - KERAS_MARGIN_DB, FLOORS["int8"]), (
        f"from .tflite: {ours}; from Keras: {theirs}")


def test_sparse_weights_become_dense(cnn):
    """TF's EXPERIMENTAL_SPARSITY on magnitude-pruned Dense weights writes DENSIFY ops; they
    become float constants, exactly the pruned weights."""
    keras_model = cnn[0]
    pruned = keras.models.clone_model(keras_model)
    pruned.set_weights(keras_model.get_weights())
    for layer in pruned.layers[-2:]:  # the Dense layers: 90 % of their weights zeroed
        w, b = layer.get_weights()
        w[np.abs(w) < np.quantile(np.abs(w), 0.9)] = 0
        layer.set_weights([w, b])
    sparse = tf_float_tflite(pruned, optimizations=[tf.lite.Optimize.EXPERIMENTAL_SPARSITY])
    assert "DENSIFY" in op_types(sparse)
    _, calibration, test, _, _ = cnn
    reference = [pruned.predict(test, verbose=0)]
    for mode in ("float32", "int8"):
        model = sbs.convert(quantkit, lambda m: m.TFLiteConverter.from_tflite(sparse), mode,
                            calibration)
        assert "DENSIFY" not in op_types(model)
        ours = sbs.measure(model, [test], reference)
        sbs.assert_input_matters(ours)
        assert ours.sqnr >= FLOORS[mode], f"{mode}: {ours}"


def test_already_quantized_is_refused(cnn):
    _, calibration, _, _, sources = cnn
    for mode in ("int8", "dynamic_range"):
        quantized = sbs.convert(quantkit, lambda m: m.TFLiteConverter.from_tflite(
            sources["float32"]), mode, calibration)
        with pytest.raises(ConversionError, match="already quantized"):
            quantkit.TFLiteConverter.from_tflite(quantized).convert()


def test_unknown_ops_listed_in_one_error():
    @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32)])
    def f(x):
        return tf.sin(x) + tf.cos(x)

    model = tf.lite.TFLiteConverter.from_concrete_functions([f.get_concrete_function()],
                                                            f).convert()
    with pytest.raises(ConversionError, match=r"2 op\(s\).*\n.*(SIN|COS).*\n.*(SIN|COS)"):
        quantkit.TFLiteConverter.from_tflite(model).convert()


def test_loops_in_a_tflite_run_as_written():
    """A .tflite's WHILE ops (two running one condition and one body) read back with their
    subgraphs as graphs: the converted model computes the same in LiteRT."""
    from tests.test_tflite_io import loop_graphs

    source = write_model([loop_graphs(steps=3)[0]])
    model = quantkit.TFLiteConverter.from_tflite(source).convert()
    assert [op.type for s in read_model(model).subgraphs for op in s.ops].count(
        OpType.WHILE) == 2
    x = np.array([[1.0, -2.0, 0.5], [3.0, 0.0, -1.0]], np.float32)
    np.testing.assert_array_equal(sbs.run_all(model, [x])[0], sbs.run_all(source, [x])[0])
    # 3 steps twice: acc = 8x + 7x, then 8·15x + 7x
    np.testing.assert_allclose(sbs.run_all(model, [x])[0], 127 * x, rtol=1e-6)


def test_tf_rnn_tflite_quantizes_with_its_loop():
    """TF's float .tflite of a Keras 3 GRU (a WHILE, batch 1) converts in float32 exactly and in
    int8 (the loop quantized as quantkit's own: calibration replays its body), both with no
    more ops than TF's float model (the loop passes drop TF's second counter, its last-output
    list and the RESHAPE that makes the sequence time-major)."""
    from benchmarks.zoo import rnns

    model = rnns.rnn_model("gru", train_samples=100, epochs=1, eager=True)
    fixed = keras.Sequential([keras.Input(model.input_shape[1:], batch_size=1),
                              *[keras.layers.deserialize(keras.layers.serialize(layer))
                                for layer in model.layers]])
    fixed.set_weights(model.get_weights())
    source = tf_float_tflite(fixed)
    x_train, _, x_test, _ = rnns.sequences()
    rows = [row[None] for row in x_test[:20]]
    reference = np.concatenate([sbs.run_all(source, [row])[0] for row in rows])
    tf_ops = sum(len(s.ops) for s in read_model(source).subgraphs)
    for int8, floor in ((False, 100.0), (True, 30.0)):
        converter = quantkit.TFLiteConverter.from_tflite(source)
        if int8:
            converter.optimizations = [quantkit.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([r[None]] for r in x_train[-40:])
        tflite = converter.convert()
        ops = [op.type for s in read_model(tflite).subgraphs for op in s.ops]
        assert OpType.WHILE in ops and len(ops) <= tf_ops, ops
        # passes.loops: one counter, the state, the sequence (read on axis 1, not RESHAPEd)
        (loop,) = [op for op in read_model(tflite).subgraphs[0].ops if op.type is OpType.WHILE]
        assert len(loop.inputs) == 3 and OpType.RESHAPE not in ops[:ops.index(OpType.WHILE)]
        out = np.concatenate([sbs.run_all(tflite, [row])[0] for row in rows])
        result = sbs.measure(tflite, rows, [reference], run=lambda _: [out])
        sbs.assert_input_matters(result)
        assert result.sqnr >= floor, (int8, result.sqnr)
        assert np.max(np.abs(out - reference)) <= (0.2 if int8 else 1e-5) * np.max(
            np.abs(reference))


def test_bad_input_is_one_clear_error(tmp_path):
    with pytest.raises(ConversionError, match=r"\[capture\] .*missing.tflite: cannot read"):
        quantkit.TFLiteConverter.from_tflite(tmp_path / "missing.tflite")
    with pytest.raises(ConversionError, match=r"\[capture\] the given .tflite bytes: .*TFLite"):
        quantkit.TFLiteConverter.from_tflite(b"not a model at all")


@pytest.mark.parametrize("body, message", [
    (7, r"WHILE op 'first/0': its body_subgraph 7 is not a subgraph it can run \(the "
        r"model's are 1 to 2; 0 is the main one\)"),
    (0, r"WHILE op 'first/0': its body_subgraph 0 is not a subgraph it can run"),
    (2, None),  # as written
])
def test_bad_loop_subgraph_is_one_clear_error(body, message):
    """A WHILE whose body index names no subgraph it can run is one error naming the op."""
    from tests.test_tflite_io import loop_graphs

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(write_model(
        [loop_graphs(steps=3)[0]])))
    for op in model.subgraphs[0].operators:
        op.builtinOptions.bodySubgraphIndex = body
    data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
    converter = quantkit.TFLiteConverter.from_tflite(data)
    if message is None:
        assert "WHILE" in op_types(converter.convert())
        return
    with pytest.raises(ConversionError, match=r"\[lowering\] the given .tflite bytes: " + message):
        converter.convert()


def test_loop_that_runs_itself_is_one_clear_error():
    """A body holding a WHILE that runs that body again cannot be read into graphs."""
    from tests.test_tflite_io import loop_graphs

    main, cond, body = loop_graphs(steps=3)
    again = [Tensor(f"body/again/{k}", t.dtype, t.shape) for k, t in enumerate(body.inputs)]
    body.ops.append(Op(OpType.WHILE, list(body.inputs), again, o.WhileOptions(cond, body)))
    with pytest.raises(ConversionError, match=r"\[lowering\] .*: subgraph 2 runs itself"):
        quantkit.TFLiteConverter.from_tflite(write_model([main])).convert()


# --- hand-built sources (quantkit's writer, no passes) -----------------------------------------
def _unfused_conv(seed: int = 0, key: str = "serving_default") -> Graph:
    """CONV_2D, then a batch norm as separate MUL and ADD, then a separate RELU6."""
    rng = np.random.default_rng(seed)
    x = Tensor("x", np.dtype(np.float32), (None, 8, 8, 3))
    conv = Tensor(f"{key}/conv", np.dtype(np.float32), (None, 8, 8, 4))
    scaled = Tensor(f"{key}/scaled", np.dtype(np.float32), (None, 8, 8, 4))
    shifted = Tensor(f"{key}/shifted", np.dtype(np.float32), (None, 8, 8, 4))
    y = Tensor(f"{key}/y", np.dtype(np.float32), (None, 8, 8, 4))
    w = const(f"{key}/w", rng.normal(size=(4, 3, 3, 3)).astype(np.float32))
    b = const(f"{key}/b", rng.normal(size=4).astype(np.float32))
    gamma = const(f"{key}/gamma", rng.uniform(0.5, 2, 4).astype(np.float32))
    beta = const(f"{key}/beta", rng.normal(size=4).astype(np.float32))
    ops = [Op(OpType.CONV_2D, [x, w, b], [conv], o.Conv2DOptions(Padding.SAME)),
           Op(OpType.MUL, [conv, gamma], [scaled], o.MulOptions()),
           Op(OpType.ADD, [scaled, beta], [shifted], o.AddOptions()),
           Op(OpType.RELU6, [shifted], [y])]
    return Graph(ops, [x], [y], ["x"], ["y"], signature_key=key)


def _images(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, 8, 8, 3)).astype(np.float32)


def test_exact_passes_fold_and_fuse():
    """A model exported with its batch norm and activation apart comes out as one CONV_2D,
    computing the same function."""
    source = write_model([_unfused_conv()], description=SOURCE_DESCRIPTION)
    assert op_types(source) == ["CONV_2D", "MUL", "ADD", "RELU6"]
    test = _images(16, 1)
    reference = sbs.run_all(source, [test])
    out = quantkit.TFLiteConverter.from_tflite(source).convert()
    assert op_types(out) == ["CONV_2D"]
    ours = sbs.measure(out, [test], reference)
    sbs.assert_input_matters(ours)
    assert ours.sqnr >= 100.0, ours
    int8 = sbs.convert(quantkit, lambda m: m.TFLiteConverter.from_tflite(source), "int8",
                       _images(16, 2))
    assert op_types(int8) == ["CONV_2D"]
    assert sbs.measure(int8, [test], reference).sqnr >= 30.0


def test_two_signatures():
    """Two subgraphs, each with its signature, become two graphs and stay two signatures."""
    source = write_model([_unfused_conv(0, "first"), _unfused_conv(1, "second")],
                         description=SOURCE_DESCRIPTION)
    out = quantkit.TFLiteConverter.from_tflite(source).convert()
    assert [s.key for s in read_model(out).signatures] == ["first", "second"]
    from ai_edge_litert.interpreter import Interpreter

    test = _images(4, 3)
    results = {}
    for name, blob in (("source", source), ("out", out)):
        interpreter = Interpreter(model_content=blob)
        results[name] = [interpreter.get_signature_runner(k)(x=test)["y"]
                         for k in ("first", "second")]
    for ours, theirs in zip(results["out"], results["source"]):
        np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-5)
    assert not np.allclose(results["out"][0], results["out"][1])


def _with_custom_op() -> bytes:
    x = Tensor("x", np.dtype(np.float32), (1, 4))
    h = Tensor("h", np.dtype(np.float32), (1, 4))
    y = Tensor("y", np.dtype(np.float32), (1, 4))
    ops = [Op(OpType.CUSTOM, [x], [h], name="mine", custom_code="MyOp",
              custom_options=b"\x01\x02\x03"),
           Op(OpType.FULLY_CONNECTED, [h, const("w", np.eye(4, dtype=np.float32)),
                                       const("b", np.ones(4, np.float32))], [y],
              o.FullyConnectedOptions())]
    return write_model([Graph(ops, [x], [y], ["x"], ["y"])], description=SOURCE_DESCRIPTION)


def test_custom_ops_kept_with_their_options():
    source = _with_custom_op()
    with pytest.raises(ConversionError, match=r"CUSTOM 'MyOp'.*\n.*allow_custom_ops"):
        quantkit.TFLiteConverter.from_tflite(source).convert()
    converter = quantkit.TFLiteConverter.from_tflite(source)
    converter.allow_custom_ops = True
    converter.optimizations = [quantkit.Optimize.DEFAULT]  # dynamic range: FC weights int8
    out = read_model(converter.convert()).subgraphs[0]
    custom = [op for op in out.ops if op.type is OpType.CUSTOM]
    assert [(op.custom_code, op.custom_options) for op in custom] == [("MyOp", b"\x01\x02\x03")]
    assert out.tensors[custom[0].inputs[0]].dtype == np.float32


def test_cli_convert_compare_inspect(cnn, tmp_path, capsys):
    """``quantkit convert`` takes a .tflite; ``compare`` measures the result against it."""
    _, calibration, test, _, sources = cnn
    model = tmp_path / "float.tflite"
    model.write_bytes(sources["float32"])
    np.save(tmp_path / "calib.npy", calibration)
    np.save(tmp_path / "test.npy", test[:16])
    out = tmp_path / "int8.tflite"
    assert main(["convert", str(model), "--mode", "int8", "--calibration",
                 str(tmp_path / "calib.npy"), "-o", str(out), "--no-progress"]) == 0
    assert "calibrated for" in capsys.readouterr().out
    assert main(["compare", str(model), str(out), "--data", str(tmp_path / "test.npy"),
                 "--json"]) == 0
    (output,) = json.loads(capsys.readouterr().out)["outputs"]
    assert output["sqnr_db"] >= FLOORS["int8"], output  # the int8 model against its source
    assert main(["inspect", str(out)]) == 0
    assert "CONV_2D" in capsys.readouterr().out
    bad = tmp_path / "bad.tflite"
    bad.write_bytes(b"0123456789")
    assert main(["convert", str(bad), "--mode", "float32"]) == 1
    assert "not a TFLite model" in capsys.readouterr().err


def test_several_inputs_and_outputs_in_signature_order():
    """A two-input, two-output model: inputs and outputs go in the signature's order (list
    samples follow it), whatever order the subgraph keeps them in."""
    model = two_in_two_out()
    source = tf_float_tflite(model)
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(40, 16, 16, 3)).astype(np.float32),
          rng.normal(size=(40, 5)).astype(np.float32)]
    calibration = [[x[i:i + 1] for x in xs] for i in range(20)]
    test = [x[20:] for x in xs]
    reference = sbs.run_all(source, test)
    out = sbs.convert(quantkit, lambda m: m.TFLiteConverter.from_tflite(source), "int8",
                      calibration)
    (signature,) = read_model(out).signatures
    assert list(signature.inputs) == ["image", "meta"]
    ours = sbs.measure(out, test, reference)
    sbs.assert_input_matters(ours)
    assert ours.sqnr >= 18.0, ours  # measured 22.8 dB, as the Keras path


def test_recipe_overrides(cnn):
    """Per-op overrides select a .tflite's ops by op type or output tensor name: TANH kept float
    (TF's denylisted_ops), the last FULLY_CONNECTED with one weight scale per tensor."""
    _, calibration, test, reference, sources = cnn
    converter = sbs.configure(quantkit, quantkit.TFLiteConverter.from_tflite(sources["float32"]),
                              "int8", calibration, fallback=True)
    last_fc = read_model(sources["float32"]).subgraphs[0]
    name = last_fc.tensors[last_fc.ops[-1].outputs[0]].name
    converter.recipe = quantkit.Recipe((
        *quantkit.Recipe.denylist(ops=["TANH"]).rules,
        quantkit.Rule(quantkit.Select(tensor=name),
                      quantkit.Settings(weight_granularity=quantkit.Granularity.PER_TENSOR))))
    blob = converter.convert()
    out = read_model(blob).subgraphs[0]
    (tanh,) = [op for op in out.ops if op.type is OpType.TANH]
    assert out.tensors[tanh.inputs[0]].dtype == np.float32
    fc = out.ops[-1] if out.ops[-1].type is OpType.FULLY_CONNECTED else out.ops[-2]
    assert len(out.tensors[fc.inputs[1]].quant.scales) == 1
    ours = sbs.measure(blob, [test], reference)
    sbs.assert_input_matters(ours)
    assert ours.sqnr >= FLOORS["int8"], ours


def _block_sparse_fc(seed: int = 0) -> tuple[bytes, np.ndarray]:
    """TF's float model of one Dense layer with its weights replaced by a 1×4-block-sparse
    tensor (CSR over the blocks of dim 1, half of them kept) behind a DENSIFY op, as TF's
    converter writes block sparsity; and the dense weights."""
    from tensorflow.lite.python import schema_py_generated as fb

    keras.utils.set_random_seed(seed)
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(tf_float_tflite(
        keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)]))))
    sub = model.subgraphs[0]
    w_index = sub.operators[0].inputs[1]
    rng = np.random.default_rng(seed)
    keep = rng.random((8, 4)) < 0.5
    dense = rng.normal(size=(8, 16)).astype(np.float32) * np.repeat(keep, 4, axis=1)
    segments = np.concatenate([[0], np.cumsum(keep.sum(axis=1))])
    rows, blocks = np.nonzero(keep)
    values = np.concatenate([dense[r, 4 * b:4 * b + 4] for r, b in zip(rows, blocks)])

    def level(fmt: int, size: int = 0, csr: tuple = ()) -> object:
        dim = fb.DimensionMetadataT()
        dim.format, dim.denseSize = fmt, size
        if csr:
            dim.arraySegmentsType = dim.arrayIndicesType = fb.SparseIndexVector.Int32Vector
            dim.arraySegments, dim.arrayIndices = fb.Int32VectorT(), fb.Int32VectorT()
            dim.arraySegments.values, dim.arrayIndices.values = [list(map(int, a)) for a in csr]
        return dim

    sparse = fb.TensorT()
    sparse.name, sparse.type, sparse.shape = b"w_sparse", sub.tensors[w_index].type, [8, 16]
    sparse.sparsity = fb.SparsityParametersT()
    sparse.sparsity.traversalOrder, sparse.sparsity.blockMap = [0, 1, 2], [1]
    sparse.sparsity.dimMetadata = [level(fb.DimensionType.DENSE, 8),
                                   level(fb.DimensionType.SPARSE_CSR, csr=(segments, blocks)),
                                   level(fb.DimensionType.DENSE, 4)]
    model.buffers[sub.tensors[w_index].buffer].data = None
    model.buffers.append(fb.BufferT())
    model.buffers[-1].data = values.view(np.uint8).tolist()
    sparse.buffer = len(model.buffers) - 1
    sub.tensors.append(sparse)
    code = fb.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = fb.BuiltinOperator.DENSIFY
    code.version = 1
    model.operatorCodes.append(code)
    densify = fb.OperatorT()
    densify.opcodeIndex, densify.inputs, densify.outputs = (len(model.operatorCodes) - 1,
                                                            [len(sub.tensors) - 1], [w_index])
    sub.operators.insert(0, densify)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), dense


def test_block_sparse_weights_as_litert_densifies_them():
    """Block sparsity (a block map, a dense level inside a CSR level): the weights quantkit
    reads are those LiteRT's DENSIFY computes (its outputs are x·Wᵀ exactly)."""
    source, dense = _block_sparse_fc()
    assert op_types(source) == ["DENSIFY", "FULLY_CONNECTED"]
    x = np.random.default_rng(1).normal(size=(16, 16)).astype(np.float32)
    reference = sbs.run_all(source, [x])
    np.testing.assert_allclose(reference[0], x @ dense.T, rtol=1e-5, atol=1e-5)
    out = quantkit.TFLiteConverter.from_tflite(source).convert()
    assert op_types(out) == ["FULLY_CONNECTED"]
    ours = sbs.measure(out, [x], reference)
    sbs.assert_input_matters(ours)
    assert ours.sqnr >= 100.0, ours
