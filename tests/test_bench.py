"""``quantkit bench`` and ``quantkit.benchmark`` on a small trained digits CNN saved by the test
(.keras, SavedModel and float .tflite): rows, accuracy against Keras', the three outputs, the
plot's layout rules, and one-line errors that write nothing."""

from __future__ import annotations

import json

import keras
import numpy as np
import pytest

import quantkit
from quantkit.bench import BenchError, Converter, Settings, plot, report
from quantkit.cli import main

FAST = Settings(invokes=10)


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """A CNN trained on scikit-learn's digits (8×8), saved as .keras; calibration, test
    inputs and labels as .npy files; the Keras model's own test accuracy."""
    from sklearn.datasets import load_digits

    d = tmp_path_factory.mktemp("bench")
    data = load_digits()
    x = (data.images / 16.0).astype(np.float32)[..., None]
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], data.target[order]
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((8, 8, 1), name="pixels"),
        keras.layers.Conv2D(8, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(10),
    ])
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x[:1200], y[:1200], epochs=8, batch_size=32, verbose=0)
    model.save(d / "digits.keras")
    np.save(d / "calib.npy", x[:100])
    np.save(d / "test.npy", x[1200:1500])
    np.save(d / "labels.npy", y[1200:1500])
    logits = model.predict(x[1200:1500], verbose=0)
    return {"dir": d, "model": model, "x": x[1200:1500], "y": y[1200:1500],
            "keras_accuracy": float(np.mean(logits.argmax(1) == y[1200:1500]))}


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_bench_keras_model_with_labels(digits, capsys):
    """The user's .keras model, labels and tf.lite: a row per mode and converter, accuracy
    as Keras measures it (float32) or close to it (int8), the table, JSON and plot."""
    d = digits["dir"]
    out_dir = d / "out"
    code, out, err = _run(capsys, "bench", d / "digits.keras", "--calibration", d / "calib.npy",
                          "--data", d / "test.npy", "--labels", d / "labels.npy", "--modes",
                          "float32", "int8", "--with-tf", "--invokes", 10, "-o", out_dir)
    assert code == 0, err
    assert err == ""  # LiteRT's delegate banner filtered
    assert out.count("[4/4]") == 1 and "int8             tf.lite" in out  # progress per row
    data = json.loads((out_dir / report.JSON_NAME).read_text())
    rows = {(r["mode"], r["converter"]): r for r in data["rows"]}
    assert set(rows) == {(m, c) for m in ("float32", "int8") for c in ("quantkit", "tf.lite")}
    keras_accuracy = digits["keras_accuracy"]
    assert keras_accuracy > 0.85  # a trained model: noise in place of digits scores ~0.1
    assert data["models"][0]["float_accuracy"] == pytest.approx(keras_accuracy)
    for (mode, converter), row in rows.items():
        assert row["error"] is None, row
        assert row["accuracy"] >= keras_accuracy - (0.004 if mode == "float32" else 0.03)
        assert row["sqnr_db"] == "inf" or row["sqnr_db"] > (60 if mode == "float32" else 25)
        assert row["latency_ms"] > 0 and row["latency_invokes"] == 10
    for mode in ("float32", "int8"):
        ratio = rows[mode, "quantkit"]["latency_ratio"]
        low, high = rows[mode, "quantkit"]["latency_ratio_range"]
        assert 0 < low <= high and ratio > 0 and rows[mode, "tf.lite"]["latency_ratio"] is None
    table = (out_dir / report.MARKDOWN_NAME).read_text()
    assert "| digits | int8 | quantkit |" in table and "latency / tf.lite" in table
    assert f"float model accuracy {keras_accuracy:.4f}" in table
    png = (out_dir / report.PLOT_NAME).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_benchmark_from_python_savedmodel_metric(digits, tmp_path):
    """``quantkit.benchmark`` on a SavedModel with a metric callable: y_true is the float
    model's output without labels; a callable calibration dataset works as in convert()."""
    digits["model"].export(str(tmp_path / "saved"), verbose=False)
    x = digits["x"]
    seen = []

    def agreement(y_true, y_pred):
        seen.append(np.shape(y_true))
        return float(np.mean(np.argmax(y_true, -1) == np.argmax(y_pred, -1)))

    result = quantkit.benchmark(
        tmp_path / "saved", x, calibration=lambda: ([s[None]] for s in x[:50]),
        metric=agreement, modes=["dynamic_range", "int8"], settings=FAST)
    assert [r.mode for r in result.rows] == ["dynamic_range", "int8"]
    assert result.models[0].metric_name == "agreement" and result.models[0].float_metric == 1.0
    for row in result.rows:
        assert row.error is None and row.converter == "quantkit"
        assert row.metric == pytest.approx(row.top1_agreement) and row.metric > 0.9
    assert seen[0] == (len(x), 10)
    assert "| metric |" in quantkit.bench.markdown(result)


def test_tflite_model_is_its_own_row(digits, tmp_path, capsys):
    """A float .tflite: the model itself is measured, quantkit converts it (from_tflite); tf.lite
    cannot, and its row fails with the reason instead of stopping the run."""
    d = digits["dir"]
    model = tmp_path / "digits.tflite"
    assert main(["convert", str(d / "digits.keras"), "--mode", "float32", "-o",
                 str(model)]) == 0
    code, out, err = _run(capsys, "bench", model, "--data", d / "test.npy", "--labels",
                          d / "labels.npy", "--modes", "float32", "--with-tf", "--invokes", 5,
                          "-o", tmp_path / "out")
    assert code == 0, err
    rows = json.loads((tmp_path / "out" / report.JSON_NAME).read_text())["rows"]
    given = rows[0]
    assert given["converter"] == Converter.INPUT.value and given["error"] is None
    assert given["accuracy"] == pytest.approx(digits["keras_accuracy"], abs=0.004)
    assert given["size_bytes"] == model.stat().st_size
    failed = {r["converter"]: r["error"] for r in rows[1:]}
    assert failed["quantkit"] is None  # from_tflite (issue #13)
    assert rows[1]["accuracy"] == pytest.approx(given["accuracy"], abs=0.004)
    assert "does not read .tflite" in failed["tf.lite"]
    assert "failed: conversion:" in (tmp_path / "out" / report.MARKDOWN_NAME).read_text()


@pytest.mark.parametrize("case, extra, message", [
    ("labels count", ["--modes", "float32", "--labels", "short.npy"], "7 labels for 300"),
    ("no calibration", [], "need calibration data"),
    ("bad metric", ["--modes", "float32", "--metric", "no_such_module_xyz:f"],
     "cannot import no_such_module_xyz"),
    ("data shape", ["--modes", "float32", "--data", "wrong.npy"],
     "expects shape (None, 8, 8, 1)"),
    ("unknown mode", ["--modes", "int4"], "--modes"),
])
def test_bad_input_one_line_error_nothing_written(digits, capsys, tmp_path, case, extra,
                                                  message):
    d = digits["dir"]
    np.save(tmp_path / "short.npy", np.zeros(7, np.int64))
    np.save(tmp_path / "wrong.npy", np.zeros((4, 5), np.float32))
    args = ["bench", d / "digits.keras", "--data", d / "test.npy", "-o", tmp_path / "out"]
    extra = [tmp_path / e if str(e).endswith(".npy") else e for e in extra]
    code, _, err = _run(capsys, *args, *extra)
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quantkit: error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_labels_must_match_the_samples():
    with pytest.raises(BenchError, match="9 labels for 10 test samples"):
        quantkit.bench.data.load_labels(np.arange(9), 10)
    with pytest.raises(BenchError, match="integer class indices"):
        quantkit.bench.data.load_labels(np.full(10, 0.5), 10)
    assert list(quantkit.bench.data.load_labels(np.arange(12.0), 10, truncated=True)) == \
        list(range(10))


def test_score_axis_is_not_zoomed_onto_a_small_difference():
    """Accuracies 98.1 % and 98.3 % sit in a window at least 10 points tall with the float
    model's line inside; a real 40-point spread gets its own range; SQNR starts at 0 dB."""
    accuracy = plot.Score("accuracy", "test accuracy (%)", 0.983, True)
    low, high = plot.y_limits([0.981, 0.983], accuracy)
    assert high - low >= plot.MIN_SPAN and low < 0.981 and 0.983 < high <= 1.0
    low, high = plot.y_limits([0.42, 0.95], plot.Score("top1_agreement", "", 1.0, True))
    assert low < 0.42 and high > 1.0 and high - low < 0.7
    low, high = plot.y_limits([41.0, 48.0], plot.SQNR)
    assert low <= 0 and high > 48


def test_plot_has_no_point_labels_and_one_font_size(digits):
    """Modes are told apart by a legend (colour and marker), never by text beside the
    points, so nothing can collide; every text uses the one font size."""
    from matplotlib.text import Text

    rows = []
    for i, (mode, converter) in enumerate([("float32", "quantkit"), ("int8", "quantkit"),
                                           ("int8", "tf.lite"), ("uint8_io", "quantkit")]):
        rows.append(quantkit.bench.Row("m", mode, converter, size_bytes=1000 * (4 - i),
                                       op_count=5, accuracy=0.98 - 0.001 * i, sqnr_db=40.0 + i))
    summary = quantkit.bench.ModelSummary("m", "a model", 10, 100, True, 0.98)
    result = quantkit.bench.Result({}, "test", FAST, (summary,), tuple(rows))
    fig = quantkit.bench.figure(result)
    for ax in fig.axes:
        assert len(ax.texts) == 0  # no annotations next to points
    sizes = {t.get_fontsize() for t in fig.findobj(Text) if t.get_text().strip()}
    assert sizes == {plot.FONT_SIZE}
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[:3] == ["float32", "int8", "uint8_io"] and "tf.lite (hollow)" in labels


def test_two_inputs_two_outputs_matched_by_name():
    """TF's converter orders a Keras model's inputs and outputs its own way (meta before
    image): data, calibration and outputs are matched by name, so both converters' rows
    equal the float model."""
    from tests.models import two_in_two_out

    rng = np.random.default_rng(0)
    data = {"image": rng.uniform(0, 1, (24, 16, 16, 3)).astype(np.float32),
            "meta": rng.normal(size=(24, 5)).astype(np.float32)}
    result = quantkit.benchmark(two_in_two_out(), {k: v[8:] for k, v in data.items()},
                                calibration={k: v[:8] for k, v in data.items()},
                                modes=["float32", "int8"], with_tf=True, settings=FAST)
    rows = {(r.mode, r.converter): r for r in result.rows}
    assert len(rows) == 4 and all(r.error is None for r in rows.values())
    for converter in ("quantkit", "tf.lite"):
        assert rows["float32", converter].sqnr_db > 60  # the lower of the two outputs
        assert rows["int8", converter].sqnr_db > 8
