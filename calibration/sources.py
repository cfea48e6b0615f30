"""Calibration data sources: arrays on disk, a folder of images, a tensorflow-datasets split.

Each ``from_*`` function returns a zero-argument callable, usable as a converter's
``representative_dataset``. Calling it returns a re-iterable of samples with a known length
(so the calibration progress bar has a total). Every sample has a batch dim of 1 and is

- a list ``[x]`` for a single input (a ``.npy`` file, an ``.npz`` holding one array, images);
- a dict ``{input name: x}`` for named inputs (an ``.npz`` holding several arrays).

Errors are ``CalibrationError``s naming the file, folder or dataset. This module imports
neither quantkit nor TensorFlow; Pillow and tensorflow-datasets are imported when used.

    rep = from_tfds("mnist", "train", data_dir="~/tensorflow_datasets", samples=200,
                    preprocess=lambda image: image / 255.0)
    converter.representative_dataset = rep
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from calibration.types import CalibrationError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")

# Array kinds (numpy's dtype.kind) that are not real numbers, and what they hold: refused
# rather than cast (a complex cast drops the imaginary part, a string cast fails mid-run).
_NOT_NUMBERS = {"c": "complex numbers", "U": "strings", "S": "byte strings",
                "O": "Python objects", "V": "raw records", "M": "dates", "m": "time spans"}


class Samples:
    """A re-iterable of ``count`` samples: each iteration is a fresh ``make()`` iterator."""

    def __init__(self, count: int, make: Callable[[], Iterator[Any]]):
        self._count, self._make = count, make

    @classmethod
    def indexed(cls, count: int, sample: Callable[[int], Any]) -> Samples:
        """Samples ``sample(0) … sample(count − 1)``, each made on demand."""
        return cls(count, lambda: (sample(i) for i in range(count)))

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Any]:
        return self._make()


def _limit(count: int, samples: int | None) -> int:
    if samples is None:
        return count
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise CalibrationError(f"samples must be a positive integer, got {samples!r}")
    return min(count, samples)


@dataclass(frozen=True)
class ArraySource:
    """Samples taken along the first axis of one array, or of several named arrays."""

    arrays: Mapping[str, np.ndarray] = field(repr=False)
    count: int
    dtype: Any = None
    origin: str = "arrays"
    scale: float = 1.0
    offset: float = 0.0

    @property
    def named(self) -> bool:
        """Dict samples by name (several arrays), else one-input list samples."""
        return len(self.arrays) > 1

    def __call__(self) -> Samples:
        affine = self.scale != 1.0 or self.offset != 0.0

        def sample(i: int) -> Any:
            values = {k: np.asarray(a[i:i + 1] * self.scale + self.offset if affine
                                    else a[i:i + 1], self.dtype)
                      for k, a in self.arrays.items()}
            return values if self.named else [next(iter(values.values()))]

        return Samples.indexed(self.count, sample)


def from_arrays(data: str | os.PathLike | np.ndarray | Mapping[str, np.ndarray],
                samples: int | None = None, dtype: Any = None, *, scale: float = 1.0,
                offset: float = 0.0) -> ArraySource:
    """Samples from arrays whose first axis is the sample axis.

    Args:
        data: a ``.npy`` file or an array (one model input); an ``.npz`` file or a dict of
            arrays, keyed by model input name (one array: a single input, any key).
        samples: use at most this many samples (default: all).
        dtype: cast each sample to this dtype (default: keep the stored one).
        scale, offset: each sample becomes ``x · scale + offset`` before the cast (e.g.
            ``scale=1/255`` for 0..255 pixels stored as uint8, fed to a 0..1 model).

    Raises:
        CalibrationError: the file is missing or unreadable, an array holds something other
            than real numbers (complex, strings, objects), has no sample axis, or the arrays
            hold different numbers of samples.
    """
    origin = "arrays"
    if isinstance(data, (str, os.PathLike)):
        origin = os.fspath(data)
        data = _load_arrays(origin)
    if isinstance(data, Mapping):
        arrays = {str(k): np.asarray(v) for k, v in data.items()}
    else:
        arrays = {"input": np.asarray(data)}
    if not arrays:
        raise CalibrationError(f"{origin}: no arrays")
    for key, array in arrays.items():
        if array.dtype.kind in _NOT_NUMBERS:
            raise CalibrationError(f"{origin}: array {key!r} holds "
                                   f"{_NOT_NUMBERS[array.dtype.kind]} ({array.dtype}); "
                                   f"calibration data must be real numbers (bool, int, float)")
        if array.ndim == 0:
            raise CalibrationError(f"{origin}: array {key!r} is a scalar; the first axis must "
                                   f"be the sample axis")
    counts = {key: len(array) for key, array in arrays.items()}
    if len(set(counts.values())) > 1:
        raise CalibrationError(f"{origin}: the arrays hold different numbers of samples "
                               f"{counts}")
    count = next(iter(counts.values()))
    if count == 0:
        raise CalibrationError(f"{origin}: no samples (the first axis is empty)")
    return ArraySource(arrays, _limit(count, samples), dtype, origin, scale, offset)


def _load_arrays(path: str) -> np.ndarray | dict[str, np.ndarray]:
    if not os.path.isfile(path):
        raise CalibrationError(f"calibration file not found: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in (".npy", ".npz"):
        raise CalibrationError(f"{path}: expected an .npy or .npz file")
    try:
        loaded = np.load(path, allow_pickle=False)
    except Exception as e:  # a truncated or foreign file: numpy raises several kinds
        raise CalibrationError(f"could not read {path}: {_first_line(e)}") from None
    if suffix == ".npy":
        return loaded
    with loaded:
        return {key: _npz_array(path, loaded, key) for key in loaded.files}


def _npz_array(path: str, npz: Any, key: str) -> np.ndarray:
    try:
        return npz[key]
    except ValueError as e:
        if "allow_pickle" in str(e):  # arrays of Python objects are stored pickled
            raise CalibrationError(f"{path}: array {key!r} holds Python objects (pickled), "
                                   f"which quantkit does not load; calibration data must be "
                                   f"real numbers (bool, int, float)") from None
        raise CalibrationError(f"could not read array {key!r} of {path}: "
                               f"{_first_line(e)}") from None
    except Exception as e:
        raise CalibrationError(f"could not read array {key!r} of {path}: "
                               f"{_first_line(e)}") from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


@dataclass(frozen=True)
class ImageFolderSource:
    """Images of a folder, decoded, resized and converted to float32 pixels on demand."""

    files: tuple[str, ...] = field(repr=False)
    size: tuple[int, int]
    channels: int = 3
    scale: float = 1.0
    preprocess: Callable[[np.ndarray], Any] | None = None
    origin: str = ""
    offset: float = 0.0

    def __call__(self) -> Samples:
        return Samples.indexed(len(self.files), lambda i: [self.load(i)[None]])

    def load(self, i: int) -> np.ndarray:
        """Image ``i`` as an ``(height, width, channels)`` array, after ``preprocess``."""
        from PIL import Image

        path = self.files[i]
        try:
            with Image.open(path) as image:
                image = image.convert("L" if self.channels == 1 else "RGB")
                image = image.resize((self.size[1], self.size[0]), Image.Resampling.BILINEAR)
                pixels = np.asarray(image, np.float32)
        except Exception as e:
            raise CalibrationError(f"could not read image {path}: {_first_line(e)}") from None
        if self.channels == 1:
            pixels = pixels[..., None]
        if self.scale != 1.0 or self.offset != 0.0:
            pixels = pixels * np.float32(self.scale) + np.float32(self.offset)
        if self.preprocess is not None:
            pixels = np.asarray(self.preprocess(pixels), np.float32)
        return pixels


def from_image_folder(path: str | os.PathLike, size: Sequence[int], *, channels: int = 3,
                      samples: int | None = None, scale: float = 1.0, offset: float = 0.0,
                      preprocess: Callable[[np.ndarray], Any] | None = None
                      ) -> ImageFolderSource:
    """One single-input sample per image file of ``path`` (subfolders included).

    Files are taken in sorted path order (``.png``, ``.jpg``/``.jpeg``, ``.bmp``, ``.gif``,
    ``.webp``), converted to RGB (``channels=3``) or grayscale (``channels=1``), resized to
    ``size`` = (height, width) bilinearly, and given as float32 pixel values in 0..255
    times ``scale`` plus ``offset`` (``scale=1/255`` gives 0..1; ``scale=2/255, offset=-1``
    gives -1..1). ``preprocess``, when given, then
    maps each ``(height, width, channels)`` image to the model's input (without batch dim).

    Raises:
        CalibrationError: the folder is missing or holds no image; later, an image that
            cannot be decoded (naming the file).
    """
    origin = os.fspath(path)
    if not os.path.isdir(origin):
        raise CalibrationError(f"image folder not found: {origin}")
    if channels not in (1, 3):
        raise CalibrationError(f"channels must be 1 or 3, got {channels!r}")
    height, width = (int(d) for d in size)
    files = sorted(os.path.join(root, name) for root, _, names in os.walk(origin)
                   for name in names if name.lower().endswith(IMAGE_EXTENSIONS))
    if not files:
        raise CalibrationError(f"{origin}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    files = files[:_limit(len(files), samples)]
    return ImageFolderSource(tuple(files), (height, width), channels, scale, preprocess, origin,
                             offset)


@dataclass(frozen=True)
class TfdsSource:
    """The first ``count`` examples of a tensorflow-datasets split, as samples."""

    name: str
    split: str
    count: int
    dataset: Any = field(repr=False, compare=False)  # the tf.data.Dataset tfds.load gave
    key: str | None = "image"
    preprocess: Callable[[Any], Any] | None = None
    dtype: Any = np.float32

    def __call__(self) -> Samples:
        def examples() -> Iterator[Any]:
            import tensorflow_datasets as tfds

            for example in tfds.as_numpy(self.dataset.take(self.count)):
                yield self._sample(example)

        return Samples(self.count, examples)

    def _sample(self, example: Any) -> Any:
        if self.key is not None:
            if not isinstance(example, Mapping) or self.key not in example:
                keys = sorted(example) if isinstance(example, Mapping) else type(example)
                raise CalibrationError(f"tfds dataset {self.name!r}: no feature {self.key!r} "
                                       f"(it has {keys})")
            example = example[self.key]
        if self.preprocess is not None:
            example = self.preprocess(example)
        if isinstance(example, Mapping):
            return {k: np.asarray(v, self.dtype)[None] for k, v in example.items()}
        if isinstance(example, (list, tuple)):
            return [np.asarray(v, self.dtype)[None] for v in example]
        return [np.asarray(example, self.dtype)[None]]


def from_tfds(name: str, split: str = "train", *, data_dir: str | os.PathLike | None = None,
              preprocess: Callable[[Any], Any] | None = None, samples: int = 100,
              key: str | None = "image", dtype: Any = np.float32) -> TfdsSource:
    """The first ``samples`` examples of a tensorflow-datasets split, already prepared in
    ``data_dir`` (tfds's default folder when None). Nothing is ever downloaded.

    Each example's feature ``key`` (the whole example dict when ``key`` is None) goes through
    ``preprocess`` (one example in, one model input without batch dim out: an array, or a
    list/dict of arrays for several inputs), is cast to ``dtype`` (None keeps it) and gets a
    batch dim of 1.

    Raises:
        CalibrationError: the dataset is unknown, or not prepared in ``data_dir``.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise CalibrationError("from_tfds needs tensorflow-datasets "
                               "(pip install tensorflow-datasets)") from None
    data_dir = None if data_dir is None else os.path.expanduser(os.fspath(data_dir))
    where = f"tfds dataset {name!r} split {split!r}"
    try:
        dataset = tfds.load(name, split=split, data_dir=data_dir, download=False)
    except tfds.core.registered.DatasetNotFoundError:
        raise CalibrationError(f"{where}: no such dataset in tensorflow-datasets") from None
    except Exception as e:  # tfds asserts when the data was never prepared in data_dir
        folder = data_dir or "tfds's default data_dir"
        if "could not find data" in str(e).lower():
            raise CalibrationError(f"{where}: not found in {folder}; prepare it there first "
                                   f"(tfds.builder(name, data_dir=...).download_and_prepare()"
                                   f" on a machine with internet access)") from None
        raise CalibrationError(f"{where}: {_first_line(e)}") from None
    available = int(dataset.cardinality())
    count = _limit(available if available >= 0 else samples, samples)
    if count == 0:
        raise CalibrationError(f"{where}: the split is empty")
    return TfdsSource(name, split, count, dataset, key, preprocess, dtype)
