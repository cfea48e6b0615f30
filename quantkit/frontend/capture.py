"""Capture: trace a Keras model, concrete function or SavedModel signature and freeze it.

TF does the tracing and the freezing (variables → constants); everything after the frozen
graph is quantkit's. The result is a ``Captured`` per signature: the frozen function, whose
``graph`` carries TF's own shape inference for every tensor, plus the signature's names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from quantkit.types import ConversionError, Phase

DEFAULT_SIGNATURE_KEY = "serving_default"


@dataclass(frozen=True)
class Captured:
    """One frozen signature: ``frozen.inputs``/``frozen.outputs`` pair with the names."""

    frozen: Any  # a ConcreteFunction whose graph holds no variables
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    signature_key: str = DEFAULT_SIGNATURE_KEY


def _fail(message: str) -> ConversionError:
    return ConversionError(Phase.CAPTURE, message)


def freeze(func: Any, input_names: Sequence[str], output_names: Sequence[str],
           signature_key: str = DEFAULT_SIGNATURE_KEY) -> Captured:
    """Freeze a concrete function's variables into constants."""
    try:
        frozen = convert_variables_to_constants_v2(func)
    except Exception as e:  # TF raises many types here; the user needs one message
        raise _fail(f"could not freeze the function {getattr(func, 'name', func)!r}: {e}") from None
    if len(frozen.inputs) != len(input_names):
        raise _fail(f"the function has {len(frozen.inputs)} tensor inputs but its signature "
                    f"names {len(input_names)}; only tensor arguments are supported")
    return Captured(frozen, tuple(input_names), tuple(output_names), signature_key)


def _output_names(structured: Any, count: int) -> list[str]:
    """Signature output names: a dict's keys (sorted, as TF flattens dicts), else output_i."""
    if isinstance(structured, dict):
        return sorted(structured)
    return [f"output_{i}" for i in range(count)]


def _input_names(func: Any) -> list[str]:
    """Signature input names from a concrete function's TensorSpecs (as TF names them)."""
    args, kwargs = func.structured_input_signature
    specs = tf.nest.flatten((args, kwargs))
    names = []
    for i, (spec, placeholder) in enumerate(zip(specs, func.inputs)):
        name = getattr(spec, "name", None) or placeholder.op.name
        names.append(name or f"input_{i}")
    return names


def capture_concrete_function(func: Any, signature_key: str = DEFAULT_SIGNATURE_KEY) -> Captured:
    """Capture a ``tf.function``'s concrete function."""
    if not hasattr(func, "structured_input_signature"):
        raise _fail(f"expected a ConcreteFunction, got {type(func).__name__}; call "
                    "`f.get_concrete_function(...)` on your tf.function first")
    outputs = func.structured_outputs
    flat_outputs = tf.nest.flatten(outputs)
    names = _output_names(outputs, len(flat_outputs))
    return freeze(func, _input_names(func), names, signature_key)


def _keras_input_specs(model: Any) -> list[tf.TensorSpec]:
    """The model's input specs: from its Input layers, else from the shapes it was built with."""
    inputs = getattr(model, "inputs", None)
    if inputs:
        return [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in inputs]
    shapes = getattr(model, "_build_shapes_dict", None) or {}
    if len(shapes) == 1:
        shape = list(next(iter(shapes.values())))
        shape[0] = None  # the batch seen at build time is not the model's batch
        return [tf.TensorSpec(shape, tf.float32, name="input_0")]
    raise _fail(
        f"the input shape of model {getattr(model, 'name', '?')!r} is not specified: build the "
        "model (`model.build(input_shape)`) or call it on data before converting, or give it "
        "a `keras.Input`")


def capture_keras(model: Any) -> Captured:
    """Trace a Keras model's inference call (``training=False``) and freeze it."""
    specs = _keras_input_specs(model)
    single = len(specs) == 1

    @tf.function
    def serve(*args):
        return model(args[0] if single else list(args), training=False)

    try:
        func = serve.get_concrete_function(*specs)
    except ConversionError:
        raise
    except Exception as e:
        raise _fail(f"tracing model {getattr(model, 'name', '?')!r} failed: "
                    f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    flat = tf.nest.flatten(func.structured_outputs)
    names = [s.name for s in specs]
    return freeze(func, names, _output_names(func.structured_outputs, len(flat)))


def capture_saved_model(saved_model_dir: str, signature_keys: Sequence[str] | None,
                        tags: Any = None) -> list[Captured]:
    """Load a SavedModel and capture the chosen signatures (default: ``serving_default``)."""
    try:
        loaded = tf.saved_model.load(str(saved_model_dir), tags=tags)
    except Exception as e:
        raise _fail(f"could not load a SavedModel from {str(saved_model_dir)!r}: "
                    f"{str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    available = sorted(loaded.signatures.keys())
    keys = list(signature_keys) if signature_keys else [DEFAULT_SIGNATURE_KEY]
    captured = []
    for key in keys:
        if key not in loaded.signatures:
            raise _fail(f"signature key {key!r} not found in {str(saved_model_dir)!r}; "
                        f"it has {available}")
        func = loaded.signatures[key]
        _, kwargs = func.structured_input_signature
        input_names = sorted(kwargs)  # signatures take keyword arguments, flattened sorted
        outputs = func.structured_outputs
        captured.append(freeze(func, input_names, _output_names(outputs, len(outputs)), key))
    return captured
