"""The benchmark harness (``benchmarks.harness``, over ``quantkit.bench``) end to end on a
tiny model: quantkit and tf.lite rows for a data-free and a calibrated mode, and its three
outputs."""

from __future__ import annotations

import json
import math

import keras
import numpy as np

import quantkit
from benchmarks import harness
from benchmarks.models import BenchModel, ModelData
from quantkit.bench import Converter, measure, report
from quantkit.bench.data import representative
from quantkit.bench.source import load

CONVERTERS = [c.value for c in (Converter.QUANTKIT, Converter.TF_LITE)]

MODES = [quantkit.Preset.FLOAT32, quantkit.Preset.INT8]


def _tiny(samples: int) -> ModelData:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((6, 6, 1)),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(3),
    ])
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (samples + 20, 6, 6, 1)).astype(np.float32)
    labels = np.argmax(model.predict(x[samples:], verbose=0), -1)  # the float model is right
    return ModelData(model, x[:samples], x[samples:], labels)


TINY = BenchModel("tiny", "a 3-layer CNN on random inputs", _tiny, default_samples=32,
                  quick=False)


def test_harness_writes_rows_for_both_converters(tmp_path):
    settings = harness.Settings(threads=1, invokes=5)
    result = harness.run([TINY], MODES, settings, str(tmp_path), "test", log=lambda _: None)

    data = json.loads((tmp_path / report.JSON_NAME).read_text())
    assert data["machine"]["cpu_count"] >= 1 and data["machine"]["tensorflow"]
    assert data["models"][0]["labelled"] and data["models"][0]["float_accuracy"] == 1.0
    rows = data["rows"]
    assert {(r["mode"], r["converter"]) for r in rows} == {
        (m.value, c) for m in MODES for c in CONVERTERS}
    for row in rows:
        assert row["error"] is None, row
        assert row["size_bytes"] > 0 and row["op_count"] > 0
        assert row["sqnr_db"] == "inf" or (math.isfinite(row["sqnr_db"])
                                            and row["sqnr_db"] > 10)  # "inf": equal outputs
        assert 0.8 <= row["top1_agreement"] <= 1.0 and 0.8 <= row["accuracy"] <= 1.0
        assert row["latency_ms"] > 0 and row["latency_invokes"] == 5 and row["threads"] == 1
        assert (row["latency_ratio"] is not None) == (row["converter"] == "quantkit")
        assert row["convert_s"] > 0 and row["peak_mem_mb"] is not None
        calibrated = row["mode"] == "int8" and row["converter"] == "quantkit"
        assert (row["calibrate_s"] is not None) == calibrated
        if calibrated:
            assert 0 < row["calibrate_s"] <= row["convert_s"]
    assert len(result.rows) == len(rows)

    table = (tmp_path / report.MARKDOWN_NAME).read_text()
    for mode in MODES:
        for converter in CONVERTERS:
            assert f"| tiny | {mode.value} | {converter} |" in table
    assert "| n/a |" in table  # tf.lite's calibration time

    png = (tmp_path / report.PLOT_NAME).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 1000


def test_failed_conversion_is_a_row_not_a_crash():
    data = _tiny(4)
    source = load(data.model, "tiny")
    ref = source.reference([data.test_inputs])
    # No calibration samples: quantkit refuses to calibrate int8 (TF writes a model anyway);
    # the failure is quantkit's row, and tf.lite's row is still measured after it.
    empty = representative([data.calibration[:0]])
    rows = measure.measure_mode(source, quantkit.Preset.INT8,
                                [Converter.QUANTKIT, Converter.TF_LITE], empty, ref,
                                harness.Settings(invokes=3))
    assert rows[0].failed and rows[0].error.startswith("conversion: ")
    assert rows[1].converter == "tf.lite" and rows[1].latency_ms > 0
    assert "failed: conversion: " in report.markdown_table(rows)


def test_batchnorm_statistics_from_data():
    """``benchmarks.zoo.applications.batchnorm_from_data`` (the benchmark applications' BN
    statistics): each moving mean/variance becomes its input's statistics on the images;
    momentum and dropout come back as they were."""
    from benchmarks.zoo.applications import batchnorm_from_data

    keras.utils.set_random_seed(0)
    inputs = keras.Input((6, 6, 2))
    conv = keras.layers.Conv2D(3, 3)
    norm = keras.layers.BatchNormalization(momentum=0.9)
    drop = keras.layers.Dropout(0.5)
    model = keras.Model(inputs, keras.layers.Dense(2)(drop(norm(conv(inputs)))))
    images = np.random.default_rng(1).normal(2.0, 3.0, (16, 6, 6, 2)).astype(np.float32)
    batchnorm_from_data(model, images)
    features = conv(images).numpy().reshape(-1, 3)
    np.testing.assert_allclose(norm.moving_mean.numpy(), features.mean(0), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(norm.moving_variance.numpy(), features.var(0), rtol=1e-3)
    assert norm.momentum == 0.9 and drop.rate == 0.5
