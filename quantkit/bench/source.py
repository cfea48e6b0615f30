"""The model a benchmark starts from: a Keras model (object or ``.keras``/``.h5`` file), a
SavedModel folder or a float ``.tflite`` file. It makes each converter for it and computes the
float reference outputs every row is compared with.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any, Callable

import numpy as np

from quantkit.bench.types import BenchError, Converter, InputSpec, Reference, SourceKind

# Why a converter cannot read the model, by (source kind, converter).
UNSUPPORTED: dict[tuple[SourceKind, Converter], str] = {
    (SourceKind.TFLITE, Converter.TF_LITE):
        "tf.lite.TFLiteConverter does not read .tflite files",
}


@dataclasses.dataclass(frozen=True)
class SourceModel:
    """A loaded model: ``model`` is a keras.Model, a SavedModel path or the .tflite bytes."""

    kind: SourceKind
    name: str
    model: Any = dataclasses.field(repr=False)
    inputs: tuple[InputSpec, ...]
    description: str

    def converter(self, converter: Converter) -> Any:
        """A fresh converter of ``converter``'s kind for this model (quantkit's or tf.lite's)."""
        import tensorflow as tf  # deferred: loads TF

        import quantkit

        module = quantkit if converter == Converter.QUANTKIT else tf.lite
        if self.kind == SourceKind.KERAS:
            return module.TFLiteConverter.from_keras_model(self.model)
        if self.kind == SourceKind.SAVED_MODEL:
            return module.TFLiteConverter.from_saved_model(self.model)
        reader = getattr(module.TFLiteConverter, "from_tflite", None)
        if reader is None:
            raise BenchError(UNSUPPORTED[self.kind, converter])
        return reader(self.model)

    def predict(self, inputs: list[np.ndarray],
                batch: int = 64) -> tuple[tuple[str, ...], list[np.ndarray]]:
        """The float model's output names and outputs on ``inputs`` (arrays in
        ``self.inputs`` order). The names are those converted models give the outputs: a
        Keras model's ``output_<i>``, a signature's keys (sorted, as TF's converter orders
        them), a .tflite's own."""
        if self.kind == SourceKind.KERAS:
            out = self.model.predict(inputs if len(inputs) > 1 else inputs[0],
                                     batch_size=batch, verbose=0)
            outputs = [np.asarray(o) for o in (out if isinstance(out, (list, tuple)) else [out])]
            return tuple(f"output_{i}" for i in range(len(outputs))), outputs
        if self.kind == SourceKind.SAVED_MODEL:
            return _saved_model_outputs(self.model, self.inputs, inputs, batch)
        from quantkit.litert import Runner

        runner = Runner(self.model)
        by_name = dict(zip((s.name for s in self.inputs), inputs))
        return tuple(runner.output_names), runner.run_all([by_name[n] for n in runner.input_names])

    def reference(self, inputs: list[np.ndarray], labels: np.ndarray | None = None,
                  metric: Callable | None = None) -> Reference:
        """The float model's outputs on ``inputs``, what every row is scored against."""
        names, outputs = self.predict(inputs)
        return Reference(tuple(s.name for s in self.inputs), inputs, names, outputs, labels,
                         metric)


def load(model: Any, name: str | None = None) -> SourceModel:
    """A ``SourceModel`` for a keras.Model or a path (.keras/.h5, SavedModel folder, .tflite)
    (a ``SourceModel`` comes back as it is).

    Raises:
        BenchError: the path is missing or not a model of these kinds, or does not load.
    """
    if isinstance(model, SourceModel):
        return model
    if not isinstance(model, (str, os.PathLike)):
        return _keras(model, name or getattr(model, "name", None) or "model", "Keras model")
    path = os.fspath(model)
    stem = os.path.basename(os.path.normpath(path))
    label = name or os.path.splitext(stem)[0]
    if not os.path.exists(path):
        raise BenchError(f"model not found: {path}")
    if os.path.isdir(path):
        return _saved_model(path, label)
    suffix = os.path.splitext(path)[1].lower()
    if suffix in (".keras", ".h5"):
        import keras  # deferred: loads TF, which starts only when used

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                loaded = keras.models.load_model(path, compile=False)
        except Exception as e:
            raise BenchError(f"could not load Keras model {path}: {_first_line(e)}") from None
        return _keras(loaded, label, f"Keras model {stem}")
    if suffix == ".tflite":
        return _tflite(path, label)
    raise BenchError(f"{path}: expected a SavedModel folder, a .keras/.h5 file or a .tflite file")


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _keras(model: Any, name: str, description: str) -> SourceModel:
    if not getattr(model, "inputs", None):
        raise BenchError(f"{name}: the Keras model has no inputs yet (build or call it first)")
    inputs = tuple(InputSpec(t.name, tuple(t.shape), np.dtype(t.dtype)) for t in model.inputs)
    return SourceModel(SourceKind.KERAS, name, model, inputs, description)


def _saved_model(path: str, name: str) -> SourceModel:
    import tensorflow as tf  # deferred: TF starts only when used (`quantkit --help` stays TF-free)

    if not os.path.isfile(os.path.join(path, "saved_model.pb")):
        raise BenchError(f"{path}: not a SavedModel folder (no saved_model.pb)")
    try:
        signature = tf.saved_model.load(path).signatures["serving_default"]
    except KeyError:
        raise BenchError(f"{path}: the SavedModel has no serving_default signature") from None
    except Exception as e:
        raise BenchError(f"could not load SavedModel {path}: {_first_line(e)}") from None
    kwargs = signature.structured_input_signature[1]
    inputs = tuple(InputSpec(n, tuple(kwargs[n].shape.as_list()),
                             np.dtype(kwargs[n].dtype.as_numpy_dtype))
                   for n in sorted(kwargs))  # the converters' order
    return SourceModel(SourceKind.SAVED_MODEL, name, path, inputs,
                       f"SavedModel {os.path.basename(os.path.normpath(path))}")


def _saved_model_outputs(path: str, specs: tuple[InputSpec, ...], inputs: list[np.ndarray],
                         batch: int) -> tuple[tuple[str, ...], list[np.ndarray]]:
    """The serving signature's outputs, sorted by name (the order TF's converter writes)."""
    import tensorflow as tf  # deferred: TF starts only when used (`quantkit --help` stays TF-free)

    signature = tf.saved_model.load(path).signatures["serving_default"]
    chunks: list[dict[str, np.ndarray]] = []
    for start in range(0, len(inputs[0]), batch):
        feed = {s.name: tf.constant(x[start:start + batch], s.dtype) for s, x in zip(specs, inputs)}
        chunks.append({k: v.numpy() for k, v in signature(**feed).items()})
    names = tuple(sorted(chunks[0]))
    return names, [np.concatenate([c[k] for c in chunks]) for k in names]


def _tflite(path: str, name: str) -> SourceModel:
    from quantkit.litert import Runner

    with open(path, "rb") as f:
        data = f.read()
    try:
        runner = Runner(data)
    except Exception as e:
        raise BenchError(f"{path}: LiteRT cannot load it ({_first_line(e)[:200]})") from None
    inputs = tuple(
        InputSpec(n, tuple(None if s < 0 else int(s) for s in d["shape_signature"]),
                  np.dtype(np.float32) if np.issubdtype(d["dtype"], np.integer)
                  and d["quantization"][0] != 0.0 else np.dtype(d["dtype"]))
        for n, d in zip(runner.input_names, runner.inputs))
    return SourceModel(SourceKind.TFLITE, name, data, inputs,
                       f"TFLite model {os.path.basename(path)}")
