"""What the CLI shares between commands: its error type, model inputs, and the data sources
behind ``--calibration`` (convert) and ``--data`` (compare).

Data syntax: an existing ``.npy``/``.npz`` file → arrays; an existing folder → image folder;
``tfds:NAME[:SPLIT]`` → a tensorflow-datasets split (default ``train``) already prepared in
``--tfds-data-dir``.

Data is checked before use: arrays must hold real numbers (``calibration.sources`` refuses
complex, string and object arrays), float data does not feed integer inputs, and integer data
(image pixels 0..255, whether from a folder, tfds or an integer array) feeds float inputs only
once its range is stated: ``--pixel-range 0..1`` (or ``-1..1``, ``0..255``) or ``--scale S``.
quantkit does not guess it: a model trained on 0..1 calibrated on 0..255 quantizes badly
without any error.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from calibration import sources

TFDS_PREFIX = "tfds:"
DATA_SYNTAX = f"an .npy/.npz file, an image folder, or {TFDS_PREFIX}NAME[:SPLIT]"


class PixelRange(enum.Enum):
    """The named ranges of ``--pixel-range``: what 0..255 pixels become."""

    UNIT = "0..1"
    SIGNED = "-1..1"
    BYTE = "0..255"


# pixels 0..255 → pixels · factor + offset, per named range.
_PIXEL_RANGES: dict[PixelRange, tuple[float, float]] = {
    PixelRange.UNIT: (1 / 255, 0.0),
    PixelRange.SIGNED: (2 / 255, -1.0),
    PixelRange.BYTE: (1.0, 0.0),
}
RANGE_OPTIONS = (f"--pixel-range {'|'.join(r.value for r in PixelRange)} or --scale S "
                 f"(values × S, e.g. 1/255)")


@dataclass(frozen=True)
class PixelScale:
    """How integer data becomes model input: ``x · factor + offset``; ``text`` as stated."""

    factor: float
    offset: float = 0.0
    text: str = ""


class CliError(Exception):
    """A user error: printed as one line ``quantkit: error: <message>``, exit code 1."""


def one_line(error: BaseException) -> str:
    """An error's message as one line (a multi-line message's lines joined)."""
    text = " ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
    return text or type(error).__name__


@dataclass(frozen=True)
class ModelInput:
    """One model input; ``None`` in ``shape`` is a dynamic dim (dim 0 is the batch)."""

    name: str
    shape: tuple[int | None, ...]
    dtype: np.dtype

    def describe(self) -> str:
        return "(" + ", ".join("None" if d is None else str(d) for d in self.shape) + ")"


def parse_fraction(text: str | None) -> PixelScale | None:
    """``--scale`` (``0.5``, ``1/255``) or ``--pixel-range`` (``0..1``, ``-1..1``, ``0..255``),
    which share one destination; None when neither was given."""
    if text is None:
        return None
    for named in PixelRange:
        if text == named.value:
            return PixelScale(*_PIXEL_RANGES[named], f"pixel range {text}")
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return PixelScale(float(num) / float(den), 0.0, f"× {text}")
        return PixelScale(float(text), 0.0, f"× {text}")
    except (ValueError, ZeroDivisionError):
        raise CliError(f"--scale {text!r}: expected a number such as 0.5 or 1/255") from None


def make_source(spec: str, inputs: Sequence[ModelInput], *, samples: int | None,
                scale: PixelScale | float | None = None, tfds_data_dir: str | None = None,
                tfds_key: str = "image") -> Callable[[], Any]:
    """The representative dataset ``spec`` names, shaped for ``inputs``; the first sample is
    read and checked against ``inputs`` (shape, names), so a mismatch fails before any work.
    ``scale``: the stated range of integer data (``parse_fraction``), None when not stated."""
    if samples is not None and samples < 1:
        raise CliError(f"--samples {samples}: must be at least 1")
    if isinstance(scale, (int, float)):
        scale = PixelScale(float(scale), 0.0, f"× {scale:g}")
    if spec.startswith(TFDS_PREFIX):
        source = _tfds(spec, inputs, samples, scale, tfds_data_dir, tfds_key)
    elif os.path.isdir(spec):
        source = _images(spec, inputs, samples, scale)
    elif spec.lower().endswith((".npy", ".npz")):
        if not os.path.isfile(spec):
            raise CliError(f"calibration data not found: {spec}")
        source = _arrays(spec, inputs, samples, scale)
    elif not os.path.exists(spec):
        raise CliError(f"calibration data not found: {spec} (expected {DATA_SYNTAX})")
    else:
        raise CliError(f"{spec}: not a calibration source (expected {DATA_SYNTAX})")
    check_sample(next(iter(source())), inputs, spec)
    return source


def _single(inputs: Sequence[ModelInput], what: str) -> ModelInput:
    if len(inputs) != 1:
        raise CliError(f"{what} feeds one input; the model has {len(inputs)} "
                       f"({', '.join(repr(i.name) for i in inputs)}): use an .npz file with "
                       f"one array per input name")
    return inputs[0]


def _image_geometry(spec: str, model_input: ModelInput) -> tuple[int, int, int]:
    shape = model_input.shape
    if len(shape) != 4 or None in shape[1:] or shape[3] not in (1, 3):
        raise CliError(f"{spec}: images need a model input of shape (batch, height, width, 1 "
                       f"or 3); input {model_input.name!r} has {model_input.describe()}")
    return shape[1], shape[2], shape[3]


# Data kind (numpy's dtype.kind) → the model input kinds it may feed without a stated range.
_FEEDS: dict[str, str] = {"b": "biu", "i": "iu", "u": "iu", "f": "f"}


def _cast_problem(data: np.dtype, model_input: ModelInput, scale: PixelScale | None
                  ) -> str | None:
    """Why ``data`` cannot feed ``model_input`` (None: it can): integer data feeds a float
    input only through a stated range; float data never feeds an integer input."""
    wanted = model_input.dtype.kind
    if wanted in _FEEDS.get(data.kind, ""):
        return None
    if wanted == "f" and data.kind in "biu":
        if scale is not None:
            return None
        return (f"holds {data} values and input {model_input.name!r} takes "
                f"{model_input.dtype}: state the range they map to with {RANGE_OPTIONS}")
    return (f"holds {data} values and input {model_input.name!r} takes {model_input.dtype}: "
            f"store {model_input.dtype} values (quantkit does not round or cast them)")


def _arrays(spec: str, inputs: Sequence[ModelInput], samples: int | None,
            scale: PixelScale | None) -> Callable[[], Any]:
    source = sources.from_arrays(spec, samples=samples)
    by_name = {i.name: i for i in inputs}
    for key, array in source.arrays.items():
        model_input = by_name.get(key) if source.named else inputs[0]
        problem = None if model_input is None else _cast_problem(array.dtype, model_input, scale)
        if problem:  # (names that match no input: check_sample lists them)
            raise CliError(f"calibration data {spec}: array {key!r} {problem}")
    dtype = inputs[0].dtype if len({i.dtype for i in inputs}) == 1 else None
    if scale is None:
        return dataclasses.replace(source, dtype=dtype)
    return dataclasses.replace(source, dtype=dtype, scale=scale.factor, offset=scale.offset)


def _range_unstated(spec: str, what: str) -> CliError:
    return CliError(f"{spec}: {what}; the range the model expects is not stated: give "
                    f"{RANGE_OPTIONS}")


def _images(spec: str, inputs: Sequence[ModelInput], samples: int | None,
            scale: PixelScale | None) -> Callable[[], Any]:
    model_input = _single(inputs, f"an image folder ({spec})")
    height, width, channels = _image_geometry(spec, model_input)
    if scale is None:
        raise _range_unstated(spec, "image pixels are 0..255")
    return sources.from_image_folder(spec, (height, width), channels=channels, samples=samples,
                                     scale=scale.factor, offset=scale.offset)


def _tfds(spec: str, inputs: Sequence[ModelInput], samples: int | None,
          scale: PixelScale | None, data_dir: str | None, key: str) -> Callable[[], Any]:
    name, _, split = spec[len(TFDS_PREFIX):].partition(":")
    if not name:
        raise CliError(f"{spec}: expected {TFDS_PREFIX}NAME[:SPLIT], e.g. {TFDS_PREFIX}mnist:test")
    model_input = _single(inputs, f"a tfds dataset ({spec})")
    dims = model_input.shape[1:]

    def preprocess(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if scale is None and model_input.dtype.kind == "f" and x.dtype.kind in "biu":
            raise _range_unstated(spec, f"feature {key!r} holds {x.dtype} values (image "
                                        f"pixels 0..255?)")
        x = x.astype(np.float32)
        if x.ndim == 3 and len(dims) == 3 and None not in dims and x.shape[:2] != dims[:2]:
            import tensorflow as tf  # resize images to the model's height and width

            x = tf.image.resize(x, dims[:2]).numpy()
        if scale is None:
            return x
        return x * np.float32(scale.factor) + np.float32(scale.offset)

    return sources.from_tfds(name, split or "train", data_dir=data_dir, preprocess=preprocess,
                             samples=samples, key=key, dtype=model_input.dtype)


def check_sample(sample: Any, inputs: Sequence[ModelInput], spec: str) -> None:
    """One sample against the model's inputs: the names, and every static dim (the batch dim
    may be anything when it is dynamic)."""
    if isinstance(sample, dict):
        names = [i.name for i in inputs]
        if sorted(sample) != sorted(names):
            raise CliError(f"calibration data {spec}: arrays {sorted(sample)} do not match the "
                           f"model's inputs {names}")
        pairs = [(i, sample[i.name]) for i in inputs]
    else:
        if len(sample) != len(inputs):
            raise CliError(f"calibration data {spec}: {len(sample)} input(s) per sample, the "
                           f"model has {len(inputs)}")
        pairs = list(zip(inputs, sample))
    for model_input, value in pairs:
        got = tuple(np.shape(value))
        want = model_input.shape
        if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
            raise CliError(f"calibration data {spec}: input {model_input.name!r} expects shape "
                           f"{model_input.describe()}, got {got} per sample")


__all__ = ["CliError", "DATA_SYNTAX", "ModelInput", "PixelRange", "PixelScale", "RANGE_OPTIONS",
           "check_sample", "make_source", "one_line", "parse_fraction"]
