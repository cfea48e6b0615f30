"""The quantization debugger: TF's statistics side by side with TF's own debugger, the ranking
of a model whose hidden layer's range one channel dominates, accuracy control on it, every
integer mode, TF's denylists, and the ``quantkit debug`` command.

The model is a digits MLP trained here (``benchmarks.zoo.dominated``); its "dominated" twin
computes the same function (one hidden channel ×300, the next layer's weights for it ÷300), so
per-tensor int8 activations collapse in that layer: every other hidden channel rounds to a few
levels of a 300× wider grid.
"""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pytest
import tensorflow as tf
import quantkit
from benchmarks.zoo.dominated import digits_mlps, int8_converter, samples
from quantkit.cli import main
from quantkit.litert import run_float
from quantkit.recipe import Precision, Recipe


@pytest.fixture(scope="module")
def models():
    mlps = digits_mlps()
    x, y = mlps.x, mlps.y
    return {"plain": mlps.plain, "dominated": mlps.dominated, "calib": x[:100],
            "debug": x[1200:1230], "test": (x[1300:], y[1300:])}


def _accuracy(models):
    x, y = models["test"]
    return lambda blob: float(np.mean(run_float(blob, x).argmax(1) == y))


def _sqnr(f, q):
    return float(10 * np.log10(np.sum(f[0] ** 2) / np.sum((f[0] - q[0]) ** 2)))


def test_statistics_match_tf_debugger(models):
    """Per layer, TF's metrics of diff = dequantized − float agree with TF's own debugger on
    the same model and data (both without bias correction, TF has none), where the two
    quantized models have the same output scale; the quantized model is close to the float
    one (an absolute floor: a broken model fails even if TF's numbers moved with it)."""
    model, calib, debug = models["plain"], models["calib"], models["debug"]
    tf_converter = tf.lite.TFLiteConverter.from_keras_model(model)
    tf_converter.optimizations = [tf.lite.Optimize.DEFAULT]
    tf_converter.representative_dataset = samples(calib)
    theirs = tf.lite.experimental.QuantizationDebugger(converter=tf_converter,
                                                       debug_dataset=samples(debug))
    theirs.run()
    ours = quantkit.QuantizationDebugger(
        converter=int8_converter(model, calib, bias_correction=False),
        debug_dataset=samples(debug),
        debug_options=quantkit.QuantizationDebugOptions(model_debug_metrics={"sqnr": _sqnr}))
    ours.run()
    tf_csv, our_csv = io.StringIO(), io.StringIO()
    theirs.layer_statistics_dump(tf_csv)
    ours.layer_statistics_dump(our_csv)
    tf_rows = [r for r in _csv_rows(tf_csv) if r["op_name"] == "FULLY_CONNECTED"]
    our_rows = [r for r in _csv_rows(our_csv) if r["op_name"] == "FULLY_CONNECTED"]
    assert list(_csv_rows(our_csv)[0]) == list(_csv_rows(tf_csv)[0])  # TF's columns
    assert len(our_rows) == len(tf_rows) == 3
    compared = 0
    for tf_row, row in zip(tf_rows, our_rows):
        assert float(row["num_elements"]) == float(tf_row["num_elements"])
        if abs(float(row["scale"]) / float(tf_row["scale"]) - 1) > 1e-3:
            continue  # the two quantizers chose other grids: their errors may differ
        compared += 1
        for metric in ("mean_squared_error", "stddev", "max_abs_error"):
            assert float(row[metric]) == pytest.approx(float(tf_row[metric]), rel=0.3), metric
        assert abs(float(row["mean_error"]) - float(tf_row["mean_error"])) < 0.3 * float(
            tf_row["stddev"])
        # an int8 grid rounds by at most half a step: the diffs stay within a few steps
        assert float(row["max_abs_error"]) < 4 * float(row["scale"])
    assert compared >= 2
    assert ours.model_statistics["sqnr"] > 30.0


def _csv_rows(buffer):
    import csv

    return list(csv.DictReader(io.StringIO(buffer.getvalue())))


@pytest.fixture(scope="module")
def dominated_debugger(models):
    return quantkit.QuantizationDebugger(
        converter=int8_converter(models["dominated"], models["calib"]),
        debug_dataset=samples(models["debug"]))


def test_ranking_puts_the_dominated_layer_first(dominated_debugger, tmp_path):
    ranking = dominated_debugger.ranking()
    # (Keras may suffix a re-traced layer's scope, hidden → hidden_1, the node names it too)
    assert re.fullmatch(r"hidden(_\d+)?", ranking[0].layer), ranking.table()
    assert "/hidden" in ranking[0].node
    worst, rest = ranking[0], ranking.rows[1:]
    assert worst.added_db < 6.0 < min(r.added_db for r in rest)
    assert worst.op_type == "FULLY_CONNECTED" and worst.dtype == "int8"
    assert worst.range_max > 100  # the one channel's range
    assert worst.scale == pytest.approx((worst.range_max - worst.range_min) / 255, rel=1e-3)
    logits = [r for r in ranking if r.layer.startswith("logits")][0]
    assert logits.added_db > 30.0  # the logits layer itself quantizes well ...
    assert logits.accumulated_db < 15.0  # ... but receives the collapse
    rows = json.loads(ranking.to_json())
    assert [r["tensor"] for r in rows] == [r.tensor for r in ranking]
    assert ranking.to_csv().splitlines()[0].startswith("tensor,layer,node,op_type")
    ranking.plot(str(tmp_path / "ranking.png"))
    assert (tmp_path / "ranking.png").stat().st_size > 1000


def test_accuracy_control_meets_a_budget_plain_int8_misses(models, tmp_path):
    accuracy = _accuracy(models)
    plain = int8_converter(models["dominated"], models["calib"]).convert()
    float_accuracy = float(np.mean(models["dominated"].predict(models["test"][0], verbose=0)
                                   .argmax(1) == models["test"][1]))
    max_drop = 0.03
    assert float_accuracy > 0.85
    assert accuracy(plain) < float_accuracy - max_drop - 0.05  # plain int8 misses it
    converter = int8_converter(models["dominated"], models["calib"],
                           accuracy_control=quantkit.AccuracyControl(accuracy, max_drop))
    blob = converter.convert()
    report = converter.accuracy_report
    assert report.met and report.float_metric == pytest.approx(float_accuracy, abs=0.01)
    assert accuracy(blob) >= float_accuracy - max_drop - 0.01
    assert 1 <= len(report.promoted) <= 3 and report.promoted[0].endswith("hidden_1/Relu")
    assert len(blob) <= 1.15 * len(plain)
    assert report.validations <= 12
    path = tmp_path / "recipe.json"
    report.recipe.save(str(path))  # saved and reused: the same model, without a search
    again = int8_converter(models["dominated"], models["calib"], recipe=Recipe.load(str(path)))
    assert again.convert() == blob
    assert all(r.settings.precision is Precision.INT16 for r in Recipe.load(str(path)).rules)


@pytest.mark.parametrize("mode", ["uint8_io", "int16x8", "legacy_uint8", "fully_quantize"])
def test_every_integer_mode(models, mode):
    attributes = {
        "uint8_io": dict(inference_input_type=tf.uint8, inference_output_type=tf.uint8),
        "int16x8": dict(target_spec=quantkit.TargetSpec(supported_ops={
            quantkit.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8})),
        "legacy_uint8": dict(legacy_uint8=True), "fully_quantize": {}}[mode]
    options = quantkit.QuantizationDebugOptions(model_debug_metrics={"sqnr": _sqnr},
                                                fully_quantize=mode == "fully_quantize")
    debugger = quantkit.QuantizationDebugger(
        converter=int8_converter(models["plain"], models["calib"][:40], **attributes),
        debug_dataset=samples(models["debug"][:10]), debug_options=options)
    debugger.run()
    ranking = debugger.ranking()
    assert len(ranking) == 3 and len(debugger.layer_statistics) == 3
    dtype = {"int16x8": "int16", "legacy_uint8": "uint8"}.get(mode, "int8")
    assert {r.dtype for r in ranking} == {dtype}
    floor = 40.0 if mode == "int16x8" else 30.0
    assert debugger.model_statistics["sqnr"] > floor
    assert min(r.accumulated_tensor_db for r in ranking) > floor - 5
    blob = debugger.get_nondebug_quantized_model()
    io_type = {"uint8_io": np.uint8, "fully_quantize": np.int8}.get(mode, np.float32)
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=blob)
    assert interpreter.get_input_details()[0]["dtype"] == io_type


def test_denylists_keep_ops_float(models):
    debugger = quantkit.QuantizationDebugger(
        converter=int8_converter(models["plain"], models["calib"][:40]),
        debug_dataset=samples(models["debug"][:5]))
    names = [r.tensor for r in debugger.ranking()]
    mid = [n for n in names if "mid" in n][0]
    debugger.options = quantkit.QuantizationDebugOptions(denylisted_nodes=[mid])
    debugger.run()
    assert len(debugger.layer_statistics) == 2 and not any("mid" in n for n in
                                                           debugger.layer_statistics)
    # the float op between them: the quantized layers still track the float model
    assert min(r.accumulated_tensor_db for r in debugger.ranking()) > 30.0
    with pytest.raises(ValueError, match="duplicate"):
        quantkit.QuantizationDebugOptions(layer_debug_metrics={"a": np.std},
                                          model_debug_metrics={"a": _sqnr})


@pytest.fixture(scope="module")
def files(models, tmp_path_factory):
    d = tmp_path_factory.mktemp("debug_cli")
    models["dominated"].save(d / "model.keras")
    models["dominated"].export(str(d / "saved"), verbose=False)
    np.save(d / "calib.npy", models["calib"][:40])
    np.save(d / "test.npy", models["debug"])
    return d


def test_cli_debug_keras_and_saved_model(files, capsys):
    code = main(["debug", str(files / "model.keras"), "--calibration", str(files / "calib.npy"),
                 "--data", str(files / "test.npy"), "--plot", str(files / "p.png")])
    out = capsys.readouterr().out
    assert code == 0, out
    first = out.splitlines()[2]
    assert "hidden" in first and "FULLY_CONNECTED" in first
    assert (files / "p.png").stat().st_size > 1000
    code = main(["debug", str(files / "saved"), "--calibration", str(files / "calib.npy"),
                 "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert code == 0 and "hidden" in rows[0]["tensor"] and rows[0]["added_db"] < 6.0


@pytest.mark.parametrize("argv, message", [
    (["{d}/missing.keras", "--calibration", "{d}/calib.npy"], "model not found"),
    (["{d}/model.keras", "--calibration", "{d}/missing.npy"], "calibration data not found"),
    (["{d}/model.keras", "--calibration", "{d}/calib.npy", "--mode", "float16"],
     "cannot be debugged"),
    (["{d}/model.keras", "--calibration", "{d}/calib.npy", "--keep-float", "nothing_here"],
     "selects no op"),
    (["{d}/model.keras", "--calibration", "{d}/calib.npy", "--plot", "{d}/p.txt"], ".png"),
])
def test_cli_debug_errors_are_one_line(files, capsys, argv, message):
    code = main(["debug", *[a.format(d=files) for a in argv]])
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err


def test_cli_convert_int16_and_keep_float(files, models, capsys):
    accuracy = _accuracy(models)
    out = files / "mixed.tflite"
    code = main(["convert", str(files / "model.keras"), "--calibration", str(files / "calib.npy"),
                 "-o", str(out), "--int16", "hidden|mid", "--keep-float", "logits"])
    assert code == 0, capsys.readouterr()
    plain = files / "plain.tflite"
    assert main(["convert", str(files / "model.keras"), "--calibration",
                 str(files / "calib.npy"), "-o", str(plain)]) == 0
    assert accuracy(out.read_bytes()) > accuracy(plain.read_bytes()) + 0.1


def test_accuracy_control_default_metric_and_bounded_validations(models, caplog):
    """The default metric (output SQNR vs the float model, capped at 60 dB): a budget no
    search meets within 3 validations stops there, says so, and returns the best model."""
    converter = int8_converter(models["dominated"], models["calib"][:40],
                           accuracy_control=quantkit.AccuracyControl(
                               max_drop=1.0, max_validations=3,
                               debug_dataset=samples(models["debug"][:10])))
    with caplog.at_level("WARNING", logger="quantkit.debug.accuracy"):
        blob = converter.convert()
    report = converter.accuracy_report
    assert report.validations == 3 and not report.met and "not met" in caplog.text
    assert report.float_metric == 60.0 and report.plain_metric < 15.0
    assert report.metric > report.plain_metric + 10.0  # the one promotion tried helped
    assert accuracy_of(models, blob) > 0.85
    for bad in (dict(max_drop=-1.0), dict(drop_type="absolute"), dict(max_validations=1)):
        with pytest.raises(quantkit.ConversionError, match="AccuracyControl"):
            quantkit.AccuracyControl(**bad)


def accuracy_of(models, blob):
    return _accuracy(models)(blob)


def test_recipe_json_round_trip(tmp_path):
    recipe = Recipe((
        quantkit.Rule(quantkit.Select(op_type="SOFTMAX", regex="head"),
                      quantkit.Settings(precision=Precision.INT16,
                                        weight_granularity=quantkit.Granularity.PER_TENSOR)),
        quantkit.Rule(quantkit.Select(layer="mid"),
                      quantkit.Settings(range_method=quantkit.RangeMethod.PERCENTILE)),
    ))
    assert Recipe.from_json(recipe.to_json()) == recipe
    (tmp_path / "bad.json").write_text('[{"select": {"colour": 1}, "settings": {}}]')
    with pytest.raises(quantkit.ConversionError, match="not a saved recipe"):
        Recipe.load(str(tmp_path / "bad.json"))


def test_a_loop_is_a_layer_of_its_own():
    """An int8 GRU (an integer WHILE): the WHILE is a debug row, about the state it returns
    (not its counter); its body in int16 (the default) adds little error, an int8 body (a recipe
    rule) makes it the worst layer by far, and the row's error is what the loop alone adds."""
    from benchmarks.zoo import rnns
    from quantkit.recipe import Rule, Select, Settings

    model = rnns.rnn_model("gru", train_samples=100, epochs=1, eager=True)
    x_train, _, x_test, _ = rnns.sequences()
    rows = {}
    for precision in (None, Precision.INT8):
        converter = quantkit.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [quantkit.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([r[None]] for r in x_train[-40:])
        if precision:
            converter.recipe = Recipe((Rule(Select(op_type="WHILE"),
                                            Settings(precision=precision)),))
        debugger = quantkit.QuantizationDebugger(
            converter=converter, debug_dataset=lambda: ([r[None]] for r in x_test[:10]))
        debugger.run()
        (loop,) = [r for r in debugger.ranking() if r.op_type == "WHILE"]
        # the state (the counter, output 0, is named after the op); Keras numbers a layer
        # name it has given before (gru_1, ...)
        assert re.fullmatch(r"gru(_\d+)?", loop.layer) and loop.tensor != loop.node, loop
        rows[precision] = loop
    int16, int8 = rows[None], rows[Precision.INT8]
    assert (int16.dtype, int8.dtype) == ("int16", "int8")
    assert int16.added_db > 35.0 and int8.added_db < int16.added_db - 10.0, (int16, int8)
