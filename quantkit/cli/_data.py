"""What the CLI shares between commands: its error type, model inputs, and the data sources
behind ``--calibration`` (convert) and ``--data`` (compare).

Data syntax: an existing ``.npy``/``.npz`` file → arrays; an existing folder → image folder;
``tfds:NAME[:SPLIT]`` → a tensorflow-datasets split (default ``train``) already prepared in
``--tfds-data-dir``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from calibration import sources

TFDS_PREFIX = "tfds:"
DATA_SYNTAX = f"an .npy/.npz file, an image folder, or {TFDS_PREFIX}NAME[:SPLIT]"


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


def parse_fraction(text: str) -> float:
    """``0.5``, ``1/255``: the ``--scale`` argument."""
    try:
        if "/" in text:
            num, den = text.split("/", 1)
            return float(num) / float(den)
        return float(text)
    except (ValueError, ZeroDivisionError):
        raise CliError(f"--scale {text!r}: expected a number such as 0.5 or 1/255") from None


def make_source(spec: str, inputs: Sequence[ModelInput], *, samples: int | None,
                scale: float = 1.0, tfds_data_dir: str | None = None,
                tfds_key: str = "image") -> Callable[[], Any]:
    """The representative dataset ``spec`` names, shaped for ``inputs``; the first sample is
    read and checked against ``inputs`` (shape, names), so a mismatch fails before any work."""
    if samples is not None and samples < 1:
        raise CliError(f"--samples {samples}: must be at least 1")
    if spec.startswith(TFDS_PREFIX):
        source = _tfds(spec, inputs, samples, scale, tfds_data_dir, tfds_key)
    elif os.path.isdir(spec):
        source = _images(spec, inputs, samples, scale)
    elif spec.lower().endswith((".npy", ".npz")):
        if not os.path.isfile(spec):
            raise CliError(f"calibration data not found: {spec}")
        dtype = inputs[0].dtype if len({i.dtype for i in inputs}) == 1 else None
        source = sources.from_arrays(spec, samples=samples, dtype=dtype)
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


def _images(spec: str, inputs: Sequence[ModelInput], samples: int | None,
            scale: float) -> Callable[[], Any]:
    model_input = _single(inputs, f"an image folder ({spec})")
    height, width, channels = _image_geometry(spec, model_input)
    return sources.from_image_folder(spec, (height, width), channels=channels, samples=samples,
                                     scale=scale)


def _tfds(spec: str, inputs: Sequence[ModelInput], samples: int | None, scale: float,
          data_dir: str | None, key: str) -> Callable[[], Any]:
    name, _, split = spec[len(TFDS_PREFIX):].partition(":")
    if not name:
        raise CliError(f"{spec}: expected {TFDS_PREFIX}NAME[:SPLIT], e.g. {TFDS_PREFIX}mnist:test")
    model_input = _single(inputs, f"a tfds dataset ({spec})")
    dims = model_input.shape[1:]

    def preprocess(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float32)
        if x.ndim == 3 and len(dims) == 3 and None not in dims and x.shape[:2] != dims[:2]:
            import tensorflow as tf  # resize images to the model's height and width

            x = tf.image.resize(x, dims[:2]).numpy()
        return x * np.float32(scale) if scale != 1.0 else x

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


__all__ = ["CliError", "DATA_SYNTAX", "ModelInput", "check_sample", "make_source",
           "one_line", "parse_fraction"]
