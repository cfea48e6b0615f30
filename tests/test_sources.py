"""Calibration data sources (calibration/sources.py): arrays, image folders, tensorflow-datasets
(offline: tfds.testing.mock_data, and a tiny dataset prepared in a local data_dir)."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

import quantkit
from calibration import CalibrationError, InputSpec, iter_samples
from calibration import sources


def _samples(source):
    return list(source())


def test_npy_gives_one_input_list_samples(tmp_path, rng):
    x = rng.normal(size=(7, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    source = sources.from_arrays(tmp_path / "x.npy", samples=5)
    got = _samples(source)
    assert len(source()) == 5 and len(got) == 5
    assert all(isinstance(s, list) and s[0].shape == (1, 4) for s in got)
    np.testing.assert_array_equal(np.concatenate([s[0] for s in got]), x[:5])
    # the engine reads them as TF's representative_dataset
    assert len(list(iter_samples(source, [InputSpec("x", (None, 4), np.float32)]))) == 5


def test_npz_gives_dict_samples_by_input_name(tmp_path, rng):
    a = rng.normal(size=(3, 2)).astype(np.float32)
    b = rng.normal(size=(3, 5)).astype(np.float32)
    np.savez(tmp_path / "ab.npz", a=a, b=b)
    got = _samples(sources.from_arrays(str(tmp_path / "ab.npz")))
    assert [sorted(s) for s in got] == [["a", "b"]] * 3
    np.testing.assert_array_equal(got[2]["b"], b[2:3])
    specs = [InputSpec("a", (None, 2), np.float32), InputSpec("b", (None, 5), np.float32)]
    assert len(list(iter_samples(sources.from_arrays(str(tmp_path / "ab.npz")), specs))) == 3


def test_npz_with_one_array_and_dtype_cast(tmp_path):
    np.savez(tmp_path / "one.npz", anything=np.arange(6.0).reshape(3, 2))  # float64
    got = _samples(sources.from_arrays(tmp_path / "one.npz", dtype=np.float32))
    assert isinstance(got[0], list) and got[0][0].dtype == np.float32


def test_in_memory_arrays_and_dicts(rng):
    assert len(_samples(sources.from_arrays(np.zeros((4, 3), np.float32)))) == 4
    got = _samples(sources.from_arrays({"x": np.zeros((2, 3)), "y": np.ones((2, 1))}))
    assert got[1]["y"].shape == (1, 1)


@pytest.mark.parametrize("make, match", [
    (lambda p: p / "missing.npy", "calibration file not found: .*missing.npy"),
    (lambda p: (p / "bad.npy").write_bytes(b"not numpy") and p / "bad.npy",
     "could not read .*bad.npy"),
    (lambda p: (p / "x.txt").write_text("1") and p / "x.txt", "expected an .npy or .npz"),
])
def test_array_file_errors_name_the_file(tmp_path, make, match):
    with pytest.raises(CalibrationError, match=match):
        sources.from_arrays(make(tmp_path))


def test_arrays_with_different_sample_counts():
    with pytest.raises(CalibrationError, match="different numbers of samples"):
        sources.from_arrays({"a": np.zeros((2, 1)), "b": np.zeros((3, 1))})


def _write_images(folder, count, size=(10, 12)):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    for i in range(count):
        pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:02d}.png")


def test_image_folder_resizes_sorted_files_to_float_pixels(tmp_path):
    _write_images(tmp_path / "imgs" / "b", 2)
    _write_images(tmp_path / "imgs" / "a", 3)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    source = sources.from_image_folder(tmp_path / "imgs", (8, 6), samples=4)
    assert [f.split("imgs")[1] for f in source.files] == [
        "/a/img00.png", "/a/img01.png", "/a/img02.png", "/b/img00.png"]
    got = _samples(source)
    assert len(got) == 4
    x = got[0][0]
    assert x.shape == (1, 8, 6, 3) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 255.0 and x.max() > 1.0


def test_image_folder_grayscale_scale_and_preprocess(tmp_path):
    _write_images(tmp_path / "imgs", 2)
    gray = _samples(sources.from_image_folder(tmp_path / "imgs", (5, 5), channels=1,
                                              scale=1 / 255))
    assert gray[0][0].shape == (1, 5, 5, 1) and gray[0][0].max() <= 1.0
    centred = _samples(sources.from_image_folder(tmp_path / "imgs", (5, 5),
                                                 preprocess=lambda x: x - 128.0))
    assert centred[0][0].min() < 0


def test_image_folder_errors(tmp_path):
    with pytest.raises(CalibrationError, match="image folder not found"):
        sources.from_image_folder(tmp_path / "none", (4, 4))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CalibrationError, match="no image files"):
        sources.from_image_folder(tmp_path / "empty", (4, 4))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"not a png")
    source = sources.from_image_folder(tmp_path / "broken", (4, 4))
    with pytest.raises(CalibrationError, match="could not read image .*x.png"):
        _samples(source)


def test_tfds_mock_data_with_preprocessing_and_sample_count():
    with tfds.testing.mock_data(num_examples=12):
        seen = []

        def preprocess(image):
            seen.append(image.dtype)
            return image / 255.0

        source = sources.from_tfds("mnist", "train", preprocess=preprocess, samples=5)
        got = _samples(source)
    assert len(source()) == 5 and len(got) == 5 and len(seen) == 5
    assert seen[0] == np.uint8  # the raw feature, before the cast
    x = got[0][0]
    assert x.shape == (1, 28, 28, 1) and x.dtype == np.float32 and x.max() <= 1.0
    assert len(list(iter_samples(source, [InputSpec("x", (None, 28, 28, 1), np.float32)]))) == 5


def test_tfds_fewer_examples_than_samples_and_whole_example():
    with tfds.testing.mock_data(num_examples=3):
        source = sources.from_tfds("mnist", "test", samples=50, key=None,
                                   preprocess=lambda ex: {"pixels": ex["image"],
                                                          "label": ex["label"]})
        got = _samples(source)
    assert len(got) == 3 and sorted(got[0]) == ["label", "pixels"]


class TinyCalib(tfds.core.GeneratorBasedBuilder):
    """A tiny dataset written to a local data_dir (no download)."""

    VERSION = tfds.core.Version("1.0.0")
    code_path = None  # tfds would look for checksums beside this test module's package

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(6, 6, 1)), "label": tfds.features.ClassLabel(
                num_classes=2)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(9)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"image": np.full((6, 6, 1), 20 * i, np.uint8), "label": i % 2}


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = TinyCalib(data_dir=str(data_dir))
    builder.download_and_prepare(
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return data_dir


def test_tfds_local_data_dir(tiny_data_dir):
    source = quantkit.datasets.from_tfds("tiny_calib", "train[:4]", data_dir=tiny_data_dir,
                                         samples=10)
    got = _samples(source)
    assert len(got) == 4
    values = [float(s[0].max()) for s in got]  # tfds shuffles examples when it prepares them
    assert len(set(values)) == 4 and all(v % 20 == 0 and 0 <= v <= 160 for v in values)
    assert got[0][0].shape == (1, 6, 6, 1) and got[0][0].dtype == np.float32


def test_tfds_errors_name_the_dataset(tmp_path, tiny_data_dir):
    with pytest.raises(CalibrationError, match=r"'tiny_calib' split 'train': not found in .*"
                                               r"empty"):
        sources.from_tfds("tiny_calib", "train", data_dir=tmp_path / "empty")
    with pytest.raises(CalibrationError, match="'no_such_dataset_xyz'.*no such dataset"):
        sources.from_tfds("no_such_dataset_xyz", "train", data_dir=tiny_data_dir)
    source = sources.from_tfds("tiny_calib", "train", data_dir=tiny_data_dir, key="pixels")
    with pytest.raises(CalibrationError, match="no feature 'pixels'"):
        _samples(source)


def test_quantkit_reexports_the_sources():
    assert quantkit.datasets.from_arrays is sources.from_arrays
    assert quantkit.datasets.from_image_folder is sources.from_image_folder
