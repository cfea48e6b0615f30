"""The command line under bad input and at first contact: corrupt and foreign files, data of
the wrong kind, image data without its range, unwritable output, unexpected errors. Each
gives one line on stderr that names the file, and writes nothing; ``--help`` and
``--version`` start without TensorFlow, and importing quantkit changes no environment."""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys

import keras
import numpy as np
import pytest
from PIL import Image

import quantkit
from quantkit import datasets, fileio, litert
from quantkit.cli import inspect as cli_inspect
from quantkit.cli import main
from quantkit.metrics import sqnr_db
from quantkit.tflite_io.checked import root
from quantkit.tflite_io.reader import read_model
from quantkit.types import OpType

SHAPE = (8, 8, 1)


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """model.keras, its float32 .tflite, and data files of every kind the CLI must judge."""
    d = tmp_path_factory.mktemp("robust")
    keras.utils.set_random_seed(1)
    model = keras.Sequential([
        keras.Input(SHAPE, name="pixels"),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(5),
    ])
    model.save(d / "model.keras")
    (d / "float.tflite").write_bytes(quantkit.TFLiteConverter.from_keras_model(model).convert())
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (24, *SHAPE), dtype=np.uint8)
    np.savez(d / "uint8.npz", pixels=pixels)
    np.savez(d / "complex.npz", pixels=(pixels + 1j).astype(np.complex64))
    np.savez(d / "strings.npz", pixels=pixels.astype(str))
    np.savez(d / "objects.npz", pixels=np.array([[1], "a"], dtype=object))
    (d / "images").mkdir()
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8)).save(
            d / "images" / f"{i}.png")
    (d / "random.keras").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "random.h5").write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    (d / "out").mkdir()
    # held-out test pixels, 0..1, for the numeric checks
    return {"dir": d, "model": model, "test": rng.integers(0, 256, (16, *SHAPE)) / 255.0}


def _run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(code, err) -> str:
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and lines[0].startswith("quantkit: error: "), err
    return lines[0]


def _patched(data: bytes, pos: int, fmt: str, value: int) -> bytes:
    d = bytearray(data)
    struct.pack_into(fmt, d, pos, value)
    return bytes(d)


def _files(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*"))


def test_inspect_patched_input_index_names_file_and_field(work, capsys, tmp_path):
    data = (work["dir"] / "float.tflite").read_bytes()
    pos = root(data, "Model").tables("subgraphs", "SubGraph")[0].position("inputs", 0)
    bad = tmp_path / "bad_input.tflite"
    bad.write_bytes(_patched(data, pos, "<i", 99))
    for extra in ([], ["--json"]):
        line = _one_line_error(*_run(capsys, "inspect", bad, *extra)[::2])
        assert line == (f"quantkit: error: {bad}: invalid TFLite model: subgraphs[0].inputs[0] "
                        f"at byte {pos}: tensor index 99 is out of range (the subgraph has "
                        f"{len(read_model(data).subgraphs[0].tensors)} tensors)")


def test_inspect_json_shapes_are_lists(work, capsys):
    code, out, err = _run(capsys, "inspect", work["dir"] / "float.tflite", "--json")
    assert code == 0, err
    subgraph = json.loads(out)["subgraphs"][0]
    assert subgraph["inputs"][0]["shape"] == [None, *SHAPE]
    assert subgraph["outputs"][0]["shape"] == [None, 5]
    assert all(isinstance(t["shape"], list) for t in subgraph["tensors"])


def _stride_zero(data: bytes) -> bytes:
    """A CONV_2D with stride 0: a well-formed file LiteRT refuses to prepare."""
    info = read_model(data).subgraphs[0]
    index = next(i for i, op in enumerate(info.ops) if op.type == OpType.CONV_2D)
    op = root(data, "Model").tables("subgraphs", "SubGraph")[0].tables("operators", "Operator")
    options = op[index].table("builtin_options", "Conv2DOptions")
    return _patched(data, options.position("stride_w"), "<i", 0)


@pytest.mark.parametrize("corrupt, expected", [
    (lambda d: d[:len(d) // 2], r"invalid TFLite model: .* at byte \d+: "),
    (_stride_zero, r"LiteRT cannot load it \(.*stride"),
])
def test_compare_names_the_corrupt_file(work, capsys, tmp_path, corrupt, expected):
    good = work["dir"] / "float.tflite"
    bad = tmp_path / "candidate.tflite"
    bad.write_bytes(corrupt(good.read_bytes()))
    line = _one_line_error(*_run(capsys, "compare", good, bad, "--data",
                                 work["dir"] / "uint8.npz", "--scale", "1/255")[::2])
    assert line.startswith(f"quantkit: error: {bad}: ") and re.search(expected, line), line


@pytest.mark.parametrize("data, expected", [
    ("complex.npz", "array 'pixels' holds complex numbers (complex64); calibration data must "
                    "be real numbers"),
    ("strings.npz", "array 'pixels' holds strings (<U3); calibration data must be real "
                    "numbers"),
    ("objects.npz", "array 'pixels' holds Python objects (pickled), which quantkit does not "
                    "load"),
    ("uint8.npz", "array 'pixels' holds uint8 values and input 'pixels' takes float32: state "
                  "the range they map to with --pixel-range 0..1|-1..1|0..255 or --scale S"),
])
def test_calibration_data_of_the_wrong_kind_is_refused(work, capsys, data, expected):
    d = work["dir"]
    before = _files(d)
    line = _one_line_error(*_run(capsys, "convert", d / "model.keras", "--calibration",
                                 d / data, "-o", d / "out" / "x.tflite")[::2])
    assert str(d / data) in line and expected in line, line
    assert _files(d) == before


def test_integer_data_with_stated_range_converts(work, capsys):
    """uint8 pixels with --scale 1/255 calibrate a model that takes 0..1: its int8 version
    follows Keras on held-out 0..1 inputs."""
    d = work["dir"]
    out = d / "out" / "uint8_scaled.tflite"
    code, stdout, err = _run(capsys, "convert", d / "model.keras", "--calibration",
                             d / "uint8.npz", "--scale", "1/255", "-o", out)
    assert code == 0, err
    x = work["test"].astype(np.float32)
    assert sqnr_db(work["model"](x).numpy(), litert.run_float(out.read_bytes(), x)) > 20.0
    assert f"({d / 'uint8.npz'}, × 1/255)" in stdout


def test_image_folder_needs_its_range(work, capsys):
    d = work["dir"]
    line = _one_line_error(*_run(capsys, "convert", d / "model.keras", "--calibration",
                                 d / "images", "-o", d / "out" / "x.tflite")[::2])
    assert line == (f"quantkit: error: {d / 'images'}: image pixels are 0..255; the range the "
                    f"model expects is not stated: give --pixel-range 0..1|-1..1|0..255 or "
                    f"--scale S (values × S, e.g. 1/255)")
    assert not (d / "out" / "x.tflite").exists()


def test_image_folder_with_named_range_and_summary(work, capsys):
    """--pixel-range 0..1: the model follows Keras on 0..1 images, and the summary gives the
    input range it was calibrated for: the images' own, within one quantization step."""
    d = work["dir"]
    out = d / "out" / "images_unit.tflite"
    code, stdout, err = _run(capsys, "convert", d / "model.keras", "--calibration", d / "images",
                             "--pixel-range", "0..1", "-o", out)
    assert code == 0, err
    images = np.concatenate([s[0] for s in datasets.from_image_folder(
        d / "images", SHAPE[:2], channels=1, scale=1 / 255)()])
    x = work["test"].astype(np.float32)
    assert sqnr_db(work["model"](x).numpy(), litert.run_float(out.read_bytes(), x)) > 15.0
    match = re.search(r"input 'pixels' calibrated for (\S+)\.\.(\S+) \((.*)\)", stdout)
    assert match and match.group(3) == f"{d / 'images'}, pixel range 0..1", stdout
    low, high = float(match.group(1)), float(match.group(2))
    step = (high - low) / 255  # (the range always holds 0, so that 0 is exact)
    assert abs(low - min(images.min(), 0.0)) <= step and abs(high - images.max()) <= step


def test_tfds_images_need_their_range(work, capsys):
    import tensorflow_datasets as tfds

    d = work["dir"]
    with tfds.testing.mock_data(num_examples=4):
        line = _one_line_error(*_run(capsys, "convert", d / "model.keras", "--calibration",
                                     "tfds:mnist", "-o", d / "out" / "x.tflite")[::2])
    assert line.startswith("quantkit: error: tfds:mnist: feature 'image' holds uint8 values")
    assert "--pixel-range 0..1|-1..1|0..255" in line


def test_float_data_for_an_integer_input_is_refused(capsys, tmp_path):
    model = keras.Sequential([keras.Input((4,), dtype="int32", name="ids"),
                              keras.layers.Embedding(10, 3), keras.layers.Flatten(),
                              keras.layers.Dense(2)])
    model.save(tmp_path / "ids.keras")
    np.save(tmp_path / "ids.npy", np.full((3, 4), 2.0))
    line = _one_line_error(*_run(capsys, "convert", tmp_path / "ids.keras", "--calibration",
                                 tmp_path / "ids.npy")[::2])
    assert "array 'input' holds float64 values and input 'ids' takes int32: store int32" in line


@pytest.mark.parametrize("name, what", [("random.keras", "a .keras file is a zip archive"),
                                        ("random.h5", "a .h5 file is HDF5")])
def test_random_bytes_are_not_a_keras_model(work, capsys, name, what):
    path = work["dir"] / name
    line = _one_line_error(*_run(capsys, "convert", path, "--mode", "float32")[::2])
    assert line == f"quantkit: error: {path}: not a Keras model file ({what}, this one is not)"


def test_unwritable_output_folder_names_the_output(work, capsys, monkeypatch, tmp_path):
    out = tmp_path / "ro" / "model.tflite"
    out.parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(out.parent)
                        else real_access(p, mode))
    line = _one_line_error(*_run(capsys, "convert", work["dir"] / "model.keras", "--mode",
                                 "float32", "-o", out)[::2])
    assert line == f"quantkit: error: cannot write {out}: the folder {out.parent} is not writable"


def test_write_error_names_the_output_not_the_temporary_file(work, capsys, monkeypatch,
                                                             tmp_path):
    """A write that fails after the checks (a read-only mount, a full disk) names the output."""
    out = tmp_path / "model.tflite"

    def denied(folder, *args):
        raise PermissionError(13, "Permission denied", os.path.join(folder, ".x.quantkit-part"))

    monkeypatch.setattr(fileio, "_write_unnamed", denied)
    monkeypatch.setattr(fileio, "_open_part", denied)
    line = _one_line_error(*_run(capsys, "convert", work["dir"] / "model.keras", "--mode",
                                 "float32", "-o", out)[::2])
    assert line == f"quantkit: error: cannot write {out}: Permission denied"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders")
def test_read_only_output_folder(work, capsys, tmp_path):
    out = tmp_path / "ro" / "model.tflite"
    out.parent.mkdir()
    out.parent.chmod(0o555)
    line = _one_line_error(*_run(capsys, "convert", work["dir"] / "model.keras", "--mode",
                                 "float32", "-o", out)[::2])
    assert str(out) in line and ".quantkit-part" not in line


def test_conversion_error_names_the_model(work, capsys):
    model = work["dir"] / "model.keras"
    line = _one_line_error(*_run(capsys, "convert", model, "--mode", "float32", "--input-type",
                                 "int8")[::2])
    assert line.startswith(f"quantkit: error: {model}: ")


def test_unexpected_error_is_one_line_naming_the_file(work, capsys, monkeypatch):
    def broken(*args):
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli_inspect, "summary", broken)
    path = work["dir"] / "float.tflite"
    line = _one_line_error(*_run(capsys, "inspect", path)[::2])
    assert line == (f"quantkit: error: {path}: a bug (unexpected RuntimeError; --traceback "
                    f"shows where)")
    with pytest.raises(RuntimeError, match="a bug"):
        main(["--traceback", "inspect", str(path)])


def test_status_lines_on_a_terminal(work, capsys, monkeypatch):
    d = work["dir"]
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    code, _, err = _run(capsys, "convert", d / "model.keras", "--mode", "float32", "-o",
                        d / "out" / "status.tflite")
    assert code == 0 and err.splitlines() == [
        f"quantkit: starting TensorFlow and loading {d / 'model.keras'} …",
        "quantkit: tracing the model and converting it to float32 …"]
    code, _, err = _run(capsys, "convert", d / "model.keras", "--mode", "float32", "-o",
                        d / "out" / "status.tflite", "--no-progress")
    assert code == 0 and err == ""


# Runs in a fresh process: records which file sets each environment variable (the innermost
# caller outside the standard library and frozen modules), then starts the CLI and imports
# quantkit, TF with it.
_FIRST_CONTACT = """
import importlib.util, os, sys, sysconfig, traceback
stdlib = sysconfig.get_paths()["stdlib"]
ours = tuple(importlib.util.find_spec(p).submodule_search_locations[0] + os.sep
             for p in ("quantkit", "calibration"))
set_by = []
def spy(self, key, value, _set=os._Environ.__setitem__):
    frames = [f for f in traceback.extract_stack()[:-1]
              if not f.filename.startswith((stdlib, "<"))]  # <frozen os>
    set_by.append((key, frames[-1].filename if frames else "?"))
    _set(self, key, value)
os._Environ.__setitem__ = spy
from quantkit.cli import main
for argv in (["--help"], ["--version"], ["convert", "--help"]):
    assert main(argv) == 0
print("TF", sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras")))
import quantkit
quantkit.TFLiteConverter.from_keras_model
assert "tensorflow" in sys.modules
print("SET BY QUANTKIT", [key for key, path in set_by if path.startswith(ours)])
"""


def test_first_contact_imports_no_tensorflow_and_sets_no_environment():
    """``--help`` and ``--version`` (and ``convert --help``) in a fresh process load no TF;
    importing quantkit and through it TF sets no environment variable from quantkit's code
    (TF's own import sets TF_CPP_MIN_LOG_LEVEL=1 when it is unset; that is TF's)."""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    result = subprocess.run([sys.executable, "-c", _FIRST_CONTACT], capture_output=True,
                            text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "TF []" in lines and "SET BY QUANTKIT []" in lines, result.stdout[-2000:]
