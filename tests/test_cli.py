"""The ``quantkit`` command line: convert / inspect / compare on a .keras file and a SavedModel
written here, every calibration source, and one-line errors that leave no file behind."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from quantkit import datasets, litert
from quantkit.cli import main
from quantkit.metrics import sqnr_db

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A folder with model.keras, a SavedModel, calibration arrays and an image folder."""
    d = tmp_path_factory.mktemp("cli")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input(SHAPE, name="pixels"),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(5),
    ])
    model.save(d / "model.keras")
    model.export(str(d / "saved"), verbose=False)
    rng = np.random.default_rng(0)
    x = rng.uniform(0.0, 1.0, (24, *SHAPE)).astype(np.float32)
    np.save(d / "calib.npy", x)
    np.savez(d / "named.npz", pixels=x.astype(np.float64))
    np.save(d / "wrong.npy", np.zeros((4, 5), np.float32))
    (d / "images").mkdir()
    for i in range(6):
        pixels = rng.integers(0, 256, (12, 10), dtype=np.uint8)
        Image.fromarray(pixels).save(d / "images" / f"{i}.png")
    (d / "out").mkdir()
    return {"dir": d, "model": model, "x": x}


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _keras_vs_tflite(work, path, x=None) -> float:
    x = work["x"][:8] if x is None else x
    return sqnr_db(work["model"](x).numpy(), litert.run_float(path.read_bytes(), x))


@pytest.mark.parametrize("model, calibration, extra, min_db", [
    ("model.keras", "calib.npy", [], 25.0),
    ("model.keras", "named.npz", ["--per-tensor"], 20.0),
    ("saved", "images", ["--scale", "1/255", "--input-type", "uint8"], 15.0),
    ("saved", "calib.npy", ["--mode", "int16x8"], 40.0),
])
def test_convert_calibrated(work, capsys, model, calibration, extra, min_db):
    d = work["dir"]
    out = d / "out" / f"{model}_{calibration}_{len(extra)}.tflite"
    code, stdout, err = _run(capsys, "convert", d / model, "--calibration", d / calibration,
                             "--samples", 16, "-o", out, *extra)
    assert code == 0, err
    assert f"wrote {out}" in stdout and err == ""
    x = None
    if calibration == "images":  # the calibrated range is the images', not uniform noise's
        x = np.concatenate([s[0] for s in datasets.from_image_folder(
            d / "images", SHAPE[:2], channels=1, scale=1 / 255)()])
    assert _keras_vs_tflite(work, out, x) > min_db


@pytest.mark.parametrize("mode", ["float32", "dynamic_range", "float16"])
def test_convert_uncalibrated_default_output_name(work, capsys, mode):
    d = work["dir"]
    code, stdout, err = _run(capsys, "convert", d / "model.keras", "--mode", mode)
    assert code == 0, err
    out = d / f"model_{mode}.tflite"
    assert out.is_file() and _keras_vs_tflite(work, out) > 40.0
    out.unlink()


def test_convert_with_tfds_calibration(work, capsys):
    d = work["dir"]
    out = d / "out" / "tfds.tflite"
    with tfds.testing.mock_data(num_examples=10):  # mnist 28×28 images, resized to 8×8
        code, _, err = _run(capsys, "convert", d / "saved", "--calibration", "tfds:mnist:train",
                            "--samples", 6, "--scale", "1/255", "-o", out)
        images = tfds.as_numpy(tfds.load("mnist", split="train", batch_size=6).take(1))
        x = tf.image.resize(next(iter(images))["image"] / 255.0, SHAPE[:2]).numpy()
    assert code == 0, err
    assert _keras_vs_tflite(work, out, x.astype(np.float32)) > 15.0


@pytest.fixture(scope="module")
def pair(work):
    d = work["dir"]
    paths = {}
    for mode in ("float32", "int8"):
        paths[mode] = d / "out" / f"pair_{mode}.tflite"
        assert main(["convert", str(d / "model.keras"), "--mode", mode, "--calibration",
                     str(d / "calib.npy"), "-o", str(paths[mode])]) == 0
    return paths


def test_inspect(pair, capsys):
    code, out, err = _run(capsys, "inspect", pair["int8"])
    assert code == 0, err
    for expected in ("CONV_2D", "FULLY_CONNECTED", "QUANTIZE", "DEQUANTIZE", "int8", "int32",
                     "float32", "scale ", "4 scales (axis 0)", "5 scales (axis 0)", "zp ",
                     "size: ", "weights ", "metadata ", "rest ",
                     "signature 'serving_default'", "input 'pixels'"):
        assert expected in out, expected
    code, out, err = _run(capsys, "inspect", pair["int8"], "--json")
    assert code == 0, err
    summary = json.loads(out)
    size = summary["size"]
    assert size["total"] == pair["int8"].stat().st_size
    assert size["weights"] + size["metadata"] + size["rest"] == size["total"]
    assert size["weights"] >= 4 * 9 + 5 * 144  # int8 conv and dense weights
    assert summary["signatures"][0]["key"] == "serving_default"


def test_compare(work, pair, capsys):
    code, out, err = _run(capsys, "compare", pair["float32"], pair["int8"], "--data",
                          work["dir"] / "calib.npy", "--samples", 10, "--threads", 2)
    assert code == 0, err
    assert "10 samples" in out and "2 thread(s)" in out
    line = next(line for line in out.splitlines() if line.startswith("output "))
    sqnr = float(line.split("SQNR ")[1].split(" dB")[0])
    assert sqnr > 25.0 and "top-1 agreement" in line
    assert "size: A " in out and "B/A" in out and "median latency per sample" in out


def test_compare_labels_json(work, pair, capsys):
    """``--labels`` gives each model's accuracy, ``--json`` the same report as JSON. The
    labels are the Keras model's own classes, so the float model scores 1.0 and the int8
    one its top-1 agreement with Keras."""
    d = work["dir"]
    keras_classes = work["model"](work["x"]).numpy().argmax(1)
    np.save(d / "out" / "classes.npy", keras_classes)
    code, out, err = _run(capsys, "compare", pair["float32"], pair["int8"], "--data",
                          d / "calib.npy", "--labels", d / "out" / "classes.npy", "--samples",
                          20, "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["samples"] == 20 and report["threads"] == 1
    assert report["a"]["accuracy"] == 1.0 and report["b"]["accuracy"] >= 0.9
    assert report["b"]["size_bytes"] == pair["int8"].stat().st_size
    [output] = report["outputs"]
    assert output["shape"] == [5] and output["sqnr_db"] > 25.0
    assert output["top1_agreement"] == report["b"]["accuracy"]  # labels = Keras' classes
    code, out, _ = _run(capsys, "compare", pair["float32"], pair["int8"], "--data",
                        d / "calib.npy", "--labels", d / "out" / "classes.npy")
    assert code == 0 and "accuracy (24 labels): A 1.0000, B " in out


def _bad_inputs(d):
    model = d / "model.keras"
    return {
        "missing model": ["convert", d / "nope.keras", "--mode", "float32"],
        "missing SavedModel": ["convert", d / "images", "--mode", "float32"],
        "wrong calibration shape": ["convert", model, "--calibration", d / "wrong.npy"],
        "missing calibration file": ["convert", model, "--calibration", d / "nope.npz"],
        "unknown mode": ["convert", model, "--mode", "int4"],
        "calibrated mode without data": ["convert", model, "--mode", "int16x8"],
        "unknown tfds dataset": ["convert", model, "--calibration", "tfds:no_such_ds_xyz",
                                 "--tfds-data-dir", d / "out"],
        "invalid io type for mode": ["convert", model, "--mode", "float32",
                                     "--input-type", "int8"],
        "per-tensor float": ["convert", model, "--mode", "float16", "--per-tensor"],
        "corrupt tflite": ["inspect", d / "calib.npy"],
        "missing tflite": ["inspect", d / "nope.tflite"],
        "compare missing data": ["compare", d / "nope.tflite", d / "nope.tflite"],
    }


USAGE_ERRORS = {"compare missing data"}  # argparse rejects the command line: exit code 2


@pytest.mark.parametrize("case", list(_bad_inputs(pathlib.Path())))
def test_bad_input_one_line_error_no_file(work, capsys, case):
    d = work["dir"]
    argv = _bad_inputs(d)[case]
    before = sorted(p.name for p in d.rglob("*"))
    code, out, err = _run(capsys, *argv)
    assert code == (2 if case in USAGE_ERRORS else 1), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("quantkit: error: "), err
    assert sorted(p.name for p in d.rglob("*")) == before  # no .tflite, no temp file


def test_output_file_mode_follows_umask(work, capsys, tmp_path):
    """A new model file gets 0o666 less the umask, as open() would give it (not mkstemp's
    0o600); an existing file keeps its mode."""
    umask = os.umask(0o027)
    try:
        out = tmp_path / "mode.tflite"
        code, _, err = _run(capsys, "convert", work["dir"] / "model.keras", "--mode", "float32",
                            "-o", out)
        assert code == 0, err
        assert out.stat().st_mode & 0o777 == 0o666 & ~0o027
        out.chmod(0o604)
        code, _, err = _run(capsys, "convert", work["dir"] / "model.keras", "--mode", "float32",
                            "-o", out)
        assert code == 0, err
        assert out.stat().st_mode & 0o777 == 0o604
    finally:
        os.umask(umask)
    assert [p.name for p in tmp_path.iterdir()] == ["mode.tflite"]  # no temp file left


def test_bad_input_with_explicit_output_writes_nothing(work, capsys, tmp_path):
    d = work["dir"]
    code, _, err = _run(capsys, "convert", d / "saved", "--calibration", d / "wrong.npy",
                        "-o", tmp_path / "x.tflite")
    assert code == 1 and "input 'pixels' expects shape (None, 8, 8, 1), got (1, 5)" in err
    assert list(tmp_path.iterdir()) == []


def test_compare_input_shape_mismatch(work, pair, capsys, tmp_path):
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(5)])
    other.save(tmp_path / "other.keras")
    assert main(["convert", str(tmp_path / "other.keras"), "--mode", "float32"]) == 0
    code, _, err = _run(capsys, "compare", pair["float32"], tmp_path / "other_float32.tflite",
                        "--data", work["dir"] / "calib.npy")
    assert code == 1 and err.count("\n") == 1 and "input 0: " in err


def test_console_script(work):
    """The installed entry point (or ``python -m quantkit.cli``) in a fresh process: exit code
    and a single stderr line, with TF's native start-up banner filtered out."""
    d = work["dir"]
    script = os.path.join(os.path.dirname(sys.executable), "quantkit")
    command = [script] if os.path.isfile(script) else [sys.executable, "-m", "quantkit.cli"]
    result = subprocess.run(
        [*command, "convert", str(d / "model.keras"), "--calibration", str(d / "wrong.npy")],
        capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"quantkit: error: calibration data {d / 'wrong.npy'}: input 'pixels' expects shape "
        f"(None, 8, 8, 1), got (1, 5) per sample"]
    assert not (d / "model_int8.tflite").exists()
