"""What a benchmark reads besides the model: test inputs, labels, calibration samples and the
user's metric, each checked against the model up front with a one-line ``BenchError``.

Test data and calibration data take the same forms: an array (one input), a dict of arrays
by input name, a list of arrays in input order, an ``.npy``/``.npz`` file, or a
representative dataset (a callable returning samples with a batch dim of 1, as the converter
takes them; what ``quantkit.datasets`` makes).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from quantkit.bench.types import BenchError, InputSpec

Metric = Callable[[np.ndarray, np.ndarray], float]
LABEL_SUFFIXES = (".npy", ".npz", ".txt", ".csv")


def _describe(shape: tuple) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ")"


def _by_input(values: Any, inputs: tuple[InputSpec, ...], what: str) -> list[np.ndarray]:
    """``values`` (one array, a dict by name, a list in order) as a list in input order."""
    if isinstance(values, Mapping):
        names = [i.name for i in inputs]
        if len(values) == 1 and len(inputs) == 1:
            return [np.asarray(next(iter(values.values())))]
        if sorted(values) != sorted(names):
            raise BenchError(f"{what}: arrays {sorted(values)} do not match the model's inputs "
                             f"{names}")
        return [np.asarray(values[n]) for n in names]
    if isinstance(values, (list, tuple)):
        if len(values) != len(inputs):
            raise BenchError(f"{what}: {len(values)} input(s) per sample, the model has "
                             f"{len(inputs)}")
        return [np.asarray(v) for v in values]
    return [np.asarray(values)]


def _check(arrays: list[np.ndarray], inputs: tuple[InputSpec, ...], what: str) -> None:
    counts = {len(a) if a.ndim else 0 for a in arrays}
    if len(counts) != 1 or 0 in counts:
        raise BenchError(f"{what}: every input needs the same number (≥ 1) of samples along "
                         f"axis 0, got {sorted(counts)}")
    for spec, a in zip(inputs, arrays):
        want = spec.shape[1:]
        got = a.shape[1:]
        if len(got) != len(want) or any(w is not None and g != w for g, w in zip(got, want)):
            raise BenchError(f"{what}: input {spec.name!r} expects shape {_describe(spec.shape)}, "
                             f"got {got} per sample")


def _stack(samples: Iterable[Any], inputs: tuple[InputSpec, ...], what: str,
           limit: int | None) -> list[np.ndarray]:
    """Samples with a batch dim (lists or dicts, as a representative dataset yields them)
    concatenated along axis 0, one array per input."""
    parts: list[list[np.ndarray]] = [[] for _ in inputs]
    for n, sample in enumerate(samples):
        if limit is not None and n >= limit:
            break
        for part, value in zip(parts, _by_input(sample, inputs, f"{what}, sample {n}")):
            part.append(value)
    if not parts[0]:
        raise BenchError(f"{what}: no samples")
    try:
        return [np.concatenate(p) for p in parts]
    except ValueError as e:
        raise BenchError(f"{what}: samples of different shapes ({e})") from None


def load_inputs(data: Any, inputs: tuple[InputSpec, ...], what: str = "data",
                samples: int | None = None) -> list[np.ndarray]:
    """``data`` as one float array per model input (samples along axis 0, at most
    ``samples``), checked against the inputs' shapes."""
    if isinstance(data, (str, os.PathLike)):
        from calibration import CalibrationError, sources

        try:
            data = sources.from_arrays(data).arrays
        except CalibrationError as e:
            raise BenchError(f"{what}: {e}") from None
    if callable(data):
        arrays = _stack(data(), inputs, what, samples)
    else:
        arrays = [a[:samples] for a in _by_input(data, inputs, what)]
    _check(arrays, inputs, what)
    return [a.astype(spec.dtype, copy=False) if np.issubdtype(a.dtype, np.floating)
            or np.issubdtype(spec.dtype, np.floating) else a for spec, a in zip(inputs, arrays)]


def representative(arrays: list[np.ndarray],
                   names: Iterable[str] = ()) -> Callable[[], Iterable[Any]]:
    """A representative dataset: samples ``[x[i:i+1]]`` for one input, dicts by input name
    for several (TF's converter orders a Keras model's inputs its own way; both converters
    take dicts by name)."""
    names = list(names)

    def samples() -> Iterable[Any]:
        for i in range(len(arrays[0])):
            rows = [a[i:i + 1] for a in arrays]
            yield dict(zip(names, rows)) if len(rows) > 1 else rows
    return samples


def load_labels(labels: Any, count: int, truncated: bool = False) -> np.ndarray:
    """Class indices, one per test sample: an array or an ``.npy``/``.npz`` (one array)/
    ``.txt``/``.csv`` (one integer per line) file. More labels than samples are cut to the
    samples only where the test data was cut (``truncated``)."""
    what = "labels"
    if isinstance(labels, (str, os.PathLike)):
        what = f"labels {os.fspath(labels)}"
        labels = _read_labels(os.fspath(labels))
    values = np.asarray(labels)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise BenchError(f"{what}: expected one class index per sample, got shape {values.shape}")
    if not np.issubdtype(values.dtype, np.integer):
        if not np.issubdtype(values.dtype, np.number) or np.any(values != np.round(values)):
            raise BenchError(f"{what}: expected integer class indices, got {values.dtype}")
        values = values.astype(np.int64)
    if len(values) < count or (len(values) > count and not truncated):
        raise BenchError(f"{what}: {len(values)} labels for {count} test samples")
    return values[:count]


def _read_labels(path: str) -> np.ndarray:
    if not os.path.isfile(path):
        raise BenchError(f"labels not found: {path}")
    suffix = os.path.splitext(path)[1].lower()
    if suffix not in LABEL_SUFFIXES:
        raise BenchError(f"labels {path}: expected one of {', '.join(LABEL_SUFFIXES)}")
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                if len(z.files) != 1:
                    raise BenchError(f"labels {path}: expected one array, found {z.files}")
                return z[z.files[0]]
        return np.loadtxt(path, delimiter="," if suffix == ".csv" else None, ndmin=1)
    except BenchError:
        raise
    except Exception as e:  # a corrupt file fails anywhere in numpy's parse
        raise BenchError(f"labels {path}: cannot read it ({type(e).__name__}: {e})") from None


def load_metric(metric: Any) -> tuple[str, Metric]:
    """``(name, function)`` for a callable or ``"module:function"`` / ``"file.py:function"``.

    The function is called as ``metric(y_true, y_pred)`` (scikit-learn's order): ``y_true``
    is the labels where given, else the float model's first output; ``y_pred`` the converted
    model's first output. Higher is better.
    """
    if callable(metric):
        return getattr(metric, "__name__", "metric"), metric
    where, _, attr = str(metric).rpartition(":")
    if not where or not attr:
        raise BenchError(f"metric {metric!r}: expected module:function or file.py:function")
    try:
        if where.endswith(".py"):
            if not os.path.isfile(where):
                raise BenchError(f"metric {metric!r}: file not found: {where}")
            spec = importlib.util.spec_from_file_location(
                os.path.splitext(os.path.basename(where))[0], where)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            sys.path.insert(0, os.getcwd())  # a module beside the user, as `python -m` finds it
            try:
                module = importlib.import_module(where)
            finally:
                sys.path.remove(os.getcwd())
    except BenchError:
        raise
    except Exception as e:
        raise BenchError(f"metric {metric!r}: cannot import {where} ({type(e).__name__}: "
                         f"{e})") from None
    function = getattr(module, attr, None)
    if not callable(function):
        raise BenchError(f"metric {metric!r}: {where} has no function {attr!r}")
    return attr, function
