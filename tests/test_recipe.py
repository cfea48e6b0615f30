"""Per-op overrides (``quantkit.Recipe``): selectors, layering, TF's denylists, mixed int8/int16
models, weight granularity and range method per op, and the combinations that are refused.

Every converted model runs in LiteRT against the float model's outputs on test digits, with
the input-matters guard (``side_by_side.assert_input_matters``) and an absolute floor.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow import keras

import quantkit
from quantkit.ir.graph import Graph, Op, Tensor
from quantkit.passes import run_passes
from quantkit.recipe import Precision, RangeMethod, Recipe, Rule, Select, Settings
from quantkit.tflite_io import write_model
from quantkit.tflite_io.reader import read_model
from quantkit.types import ConversionError, Granularity, OpType
from benchmarks.zoo.applications import batchnorm_from_data, randomize_batchnorm
from benchmarks.zoo.mnist import digits
from tests.side_by_side import assert_input_matters, configure, measure, run_all

INT16X8 = quantkit.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
FLOOR_DB = {"int8": 30.0, "int16": 45.0}  # measured 36–38 and 55–57 dB on this model


@pytest.fixture(scope="module")
def cnn() -> keras.Model:
    """Named layers (selectors below use them); BatchNorm statistics from digits."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255.0, name="scale"),
        keras.layers.Conv2D(8, 3, name="stem"),
        keras.layers.BatchNormalization(name="stem_bn"),
        keras.layers.ReLU(name="stem_relu"),
        keras.layers.MaxPooling2D(name="pool"),
        keras.layers.Conv2D(16, 3, padding="same", name="mid"),
        keras.layers.ReLU(6.0, name="mid_relu"),
        keras.layers.GlobalAveragePooling2D(name="gap"),
        keras.layers.Dense(10, name="head"),
    ])
    randomize_batchnorm(model)
    return batchnorm_from_data(model, digits(64, "train", 3000))


@pytest.fixture(scope="module")
def data(cnn):
    calibration = digits(64, "train", 0)
    test = digits(100, "test", 0)
    return calibration, [test], [cnn.predict(test, verbose=0)]


def convert(cnn, data, recipe: Recipe, mode: str = "int8", fallback: bool = True,
            **attributes) -> bytes:
    """Float model IO (int8 has int8 IO in ``configure`` otherwise)."""
    converter = quantkit.TFLiteConverter.from_keras_model(cnn)
    configure(quantkit, converter, mode, data[0], fallback=fallback, io=tf.float32)
    if mode == "uint8":
        converter.inference_input_type = converter.inference_output_type = tf.float32
    converter.recipe = recipe
    for name, value in attributes.items():
        setattr(converter, name, value)
    return converter.convert()


def checked(model: bytes, data, floor_db: float):
    converted = measure(model, data[1], data[2])
    assert_input_matters(converted)
    assert converted.sqnr >= floor_db, converted
    return converted


def ops_of(model: bytes, op_type: OpType) -> list:
    sub = read_model(model).subgraphs[0]
    return [(op, sub.tensors[op.inputs[0]], sub.tensors[op.outputs[0]])
            for op in sub.ops if op.type == op_type]


def float_graph(cnn) -> Graph:
    return quantkit.TFLiteConverter.from_keras_model(cnn)._float_graphs()[0]


def rule(precision=None, granularity=None, range_method=None, **select) -> Rule:
    return Rule(Select(**select), Settings(precision, granularity, range_method))


# --- selectors and layering ---------------------------------------------------------------
def test_selectors_pick_ops_by_layer_tensor_regex_and_type(cnn):
    graph = float_graph(cnn)
    by_type = {op.type: op for op in graph.ops}
    conv = [op for op in graph.ops if op.type == OpType.CONV_2D]
    assert [op for op in graph.ops if Select(layer="mid").matches(op)] == [conv[1]]
    assert [op for op in graph.ops if Select(op_type="MEAN").matches(op)] == [by_type[OpType.MEAN]]
    head = by_type[OpType.FULLY_CONNECTED]
    assert [op for op in graph.ops if Select(tensor=head.outputs[0].name).matches(op)] == [head]
    assert [op for op in graph.ops if Select(regex="stem|head").matches(op)] == [conv[0], head]
    # every given field must match
    assert not any(Select(layer="mid", op_type=OpType.MEAN).matches(op) for op in graph.ops)


def test_later_rules_override_earlier_ones_field_by_field(cnn):
    graph = float_graph(cnn)
    recipe = Recipe((rule(Precision.INT16, Granularity.PER_TENSOR, op_type=OpType.CONV_2D),
                     rule(Precision.FLOAT, layer="mid"),
                     rule(range_method=RangeMethod.PERCENTILE, layer="mid")))
    settings = recipe.resolve([graph], Settings())
    stem, mid = [op for op in graph.ops if op.type == OpType.CONV_2D]
    assert settings[stem] == Settings(Precision.INT16, Granularity.PER_TENSOR)
    assert settings[mid] == Settings(Precision.FLOAT, Granularity.PER_TENSOR,
                                     RangeMethod.PERCENTILE)
    others = [op for op in graph.ops if op not in (stem, mid)]
    assert others and all(settings[op] == Settings() for op in others)


@pytest.mark.parametrize("select, message", [
    (dict(layer="no_such_layer"), "selects no op"),
    (dict(op_type="NO_SUCH_OP"), "not a TFLite builtin"),
    (dict(regex="("), "regex"),
])
def test_bad_selectors_are_refused_with_their_name(cnn, data, select, message):
    with pytest.raises(ConversionError, match=message):
        convert(cnn, data, Recipe((rule(Precision.FLOAT, **select),)))


# --- precision ------------------------------------------------------------------------------
def test_denylist_keeps_tf_nodes_and_ops_float(cnn, data):
    """TF's selective quantization: the head (by its output tensor, as TF's denylisted_nodes
    names it) and MEAN (denylisted_ops) run in float between DEQUANTIZE and QUANTIZE."""
    head = [op for op in float_graph(cnn).ops if op.type == OpType.FULLY_CONNECTED][0]
    model = convert(cnn, data, Recipe.denylist(nodes=[head.outputs[0].name], ops=["MEAN"]))
    for op_type in (OpType.FULLY_CONNECTED, OpType.MEAN):
        [(_, x, y)] = ops_of(model, op_type)
        assert (np.dtype(x.dtype), np.dtype(y.dtype)) == (np.float32, np.float32), op_type
    [(_, x, _)] = ops_of(model, OpType.MAX_POOL_2D)
    assert np.dtype(x.dtype) == np.int8
    everything = convert(cnn, data, Recipe())
    float_head = checked(model, data, FLOOR_DB["int8"])
    assert float_head.sqnr >= checked(everything, data, FLOOR_DB["int8"]).sqnr - 0.5


def test_int16_ops_in_an_int8_model_are_requantized_at_both_ends(cnn, data):
    """``mid`` in int16 between int8 ops: LiteRT's QUANTIZE requantizes int8 → int16 before it
    and int16 → int8 after it."""
    model = convert(cnn, data, Recipe((rule(Precision.INT16, layer="mid"),)))
    [(_, x, y)] = [c for c in ops_of(model, OpType.CONV_2D) if "mid" in c[2].name]
    assert (np.dtype(x.dtype), np.dtype(y.dtype)) == (np.int16, np.int16)
    conversions = {(np.dtype(a.dtype).name, np.dtype(b.dtype).name)
                   for _, a, b in ops_of(model, OpType.QUANTIZE)}
    assert {("int8", "int16"), ("int16", "int8")} <= conversions
    checked(model, data, FLOOR_DB["int8"])


def test_every_op_in_int16_is_the_int16x8_mode(cnn, data):
    """A recipe that asks int16 of every op of an int8 conversion gives int16x8's outputs,
    bit for bit: the per-op schemes are the modes' own."""
    recipe = convert(cnn, data, Recipe((rule(Precision.INT16),)))
    mode = convert(cnn, data, Recipe(), mode="int16x8")
    checked(recipe, data, FLOOR_DB["int16"])
    for ours, theirs in zip(run_all(recipe, data[1]), run_all(mode, data[1])):
        np.testing.assert_array_equal(ours, theirs)


def test_int8_ops_in_an_int16x8_model(cnn, data):
    model = convert(cnn, data, Recipe((rule(Precision.INT8, layer="stem"),)), mode="int16x8")
    [(_, x, y)] = [c for c in ops_of(model, OpType.CONV_2D) if "stem" in c[2].name]
    assert np.dtype(y.dtype) == np.int8
    [(_, x, y)] = [c for c in ops_of(model, OpType.CONV_2D) if "mid" in c[2].name]
    assert np.dtype(y.dtype) == np.int16
    checked(model, data, FLOOR_DB["int8"])


@pytest.mark.parametrize("recipe, mode, fallback, message", [
    (Recipe((rule(Precision.INT16, layer="head"),)), "uint8", True, "legacy uint8"),
    (Recipe.denylist(ops=["MEAN"]), "int8", False, "integer ops only"),
])
def test_impossible_precisions_are_refused(cnn, data, recipe, mode, fallback, message):
    with pytest.raises(ConversionError, match=message):
        convert(cnn, data, recipe, mode=mode, fallback=fallback)


def test_int16_without_an_int16_kernel_is_refused():
    """LiteRT has no int16 HARD_SWISH: asked for, it is refused (never silently int8)."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(8, name="d"),
                              keras.layers.Activation("hard_swish", name="hs")])
    converter = quantkit.TFLiteConverter.from_keras_model(model)
    x = np.random.default_rng(0).normal(size=(8, 1, 8)).astype(np.float32)
    configure(quantkit, converter, "int8", list(map(lambda r: [r], x)), fallback=True)
    converter.recipe = Recipe((rule(Precision.INT16, op_type="HARD_SWISH"),))
    with pytest.raises(ConversionError, match=r"HARD_SWISH op .*no int16 kernel"):
        converter.convert()


def test_weight_only_modes_honour_float_and_refuse_int16(cnn, data):
    """Dynamic range compresses only the mid convolution's weights here (the others are under
    TF's 1024-element minimum); kept float by the recipe, they stay float32."""
    keep = Recipe((rule(Precision.FLOAT, layer="mid"),))

    def mid_weights(model: bytes) -> np.dtype:
        sub = read_model(model).subgraphs[0]
        [(op, _, _)] = [c for c in ops_of(model, OpType.CONV_2D) if "mid" in c[2].name]
        return np.dtype(sub.tensors[op.inputs[1]].dtype)

    assert mid_weights(convert(cnn, data, Recipe(), mode="dynamic_range")) == np.int8
    model = convert(cnn, data, keep, mode="dynamic_range")
    assert mid_weights(model) == np.float32
    checked(model, data, 60.0)
    with pytest.raises(ConversionError, match="int16"):
        convert(cnn, data, Recipe((rule(Precision.INT16, layer="mid"),)), mode="dynamic_range")
    with pytest.raises(ConversionError, match="nothing is quantized"):
        convert(cnn, data, keep, mode="float32")


# --- weight granularity and range method ----------------------------------------------------
def test_weight_granularity_per_op(cnn, data):
    model = convert(cnn, data, Recipe((rule(granularity=Granularity.PER_TENSOR, layer="mid"),)))
    sub = read_model(model).subgraphs[0]
    scales = {sub.tensors[op.outputs[0]].name: len(sub.tensors[op.inputs[1]].quant.scales)
              for op, _, _ in ops_of(model, OpType.CONV_2D)}
    assert sorted(scales.values()) == [1, 8], scales
    checked(model, data, FLOOR_DB["int8"])


def test_percentile_range_on_one_op_leaves_the_others(cnn, data):
    """A percentile range on the stem's output clips its rare large values: a smaller scale
    there and on the max pool that shares its parameters; nothing before it changes, and the
    next convolution's own output keeps its min/max range."""
    plain = convert(cnn, data, Recipe())
    clipped = convert(cnn, data, Recipe((rule(range_method=RangeMethod.PERCENTILE,
                                              layer="stem"),)),
                      calibration=quantkit.CalibrationOptions(progress=False, percentile=99.0))
    before = {t.name: t.quant for t in read_model(plain).subgraphs[0].tensors}
    after = {t.name: t.quant for t in read_model(clipped).subgraphs[0].tensors}
    changed = [n for n in before if before[n] != after.get(n)]
    stem_out = [c[2].name for c in ops_of(plain, OpType.CONV_2D) if "stem" in c[2].name][0]
    mid_out = [c[2].name for c in ops_of(plain, OpType.CONV_2D) if "mid" in c[2].name][0]
    assert stem_out in changed and mid_out not in changed, changed
    assert after[stem_out].scales[0] < before[stem_out].scales[0]
    # what reads the stem's output shares or derives from its range; nothing before it moves
    assert all("stem" in n or "pool" in n or "mid" in n for n in changed), changed
    checked(clipped, data, FLOOR_DB["int8"] - 5)


# --- identity: quantizing never changes the float graph ---------------------------------------
def test_quantizing_leaves_the_float_graph_unchanged(cnn, data):
    from quantkit.calibrate import CalibrationOptions, calibrate_graphs, means, ranges
    from quantkit.quantize import quantize_integer

    converter = configure(quantkit, quantkit.TFLiteConverter.from_keras_model(cnn), "int8",
                          data[0])
    graph = converter._float_graphs()[0]
    before = write_model([graph])
    options = CalibrationOptions(progress=False)
    stats = calibrate_graphs([graph], converter.representative_dataset, options)
    quantized, plan = quantize_integer(graph, ranges(stats, graph.signature_key, options),
                                       converter.resolve_mode(),
                                       means(stats, graph.signature_key))
    assert write_model([graph]) == before
    assert plan.quantized_ops and quantized is not graph
    assert {np.dtype(t.dtype) for t in quantized.inputs} == {np.dtype(np.int8)}


def test_a_pass_that_repeats_an_activation_name_is_caught(monkeypatch):
    x = Tensor("x", np.dtype(np.float32), (1, 4))
    y = Tensor("y", np.dtype(np.float32), (1, 4))
    graph = Graph([Op(OpType.RELU, [x], [y])], [x], [y])

    def rename(g: Graph) -> bool:
        if g.ops[0].outputs[0].name == "x":
            return False
        g.ops[0].outputs[0].name = "x"
        return True

    monkeypatch.setattr("quantkit.passes.PIPELINE", (rename,))
    with pytest.raises(ConversionError, match="pass rename gave two activations the name 'x'"):
        run_passes(graph)
