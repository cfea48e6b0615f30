"""The public converter: the same surface as ``tf.lite.TFLiteConverter``, quantkit's engine.

``convert()`` runs the pipeline in its stages (capture → lowering → passes → writing); each
stage's errors are ``ConversionError``s (ValueErrors) tagged with the stage.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import tensorflow as tf

from quantkit.frontend import capture
from quantkit.frontend.lower import lower
from quantkit.frontend.tf_ops import ONLY_IN_PATTERNS
from quantkit.ir.graph import Graph
from quantkit.passes import run_passes
from quantkit.tflite_io import write_model
from quantkit.types import ConversionError, NotYetSupportedError, Optimize, OpsSet, OpType, Phase

log = logging.getLogger(__name__)


@dataclass
class TargetSpec:
    """What the converted model may use, as in ``tf.lite.TargetSpec``."""

    supported_ops: set = field(default_factory=lambda: {OpsSet.TFLITE_BUILTINS})
    supported_types: set = field(default_factory=set)
    experimental_select_user_tf_ops: set = field(default_factory=set)
    experimental_supported_backends: Any = None


class RepresentativeDataset:
    """Wraps a generator function of calibration samples, as ``tf.lite.RepresentativeDataset``."""

    def __init__(self, input_gen: Callable[[], Iterable[Any]]):
        self.input_gen = input_gen


def _dtype(value: Any, attribute: str) -> tf.DType | None:
    """A TF dtype from a TF or numpy dtype (what TF's converter accepts), None for None."""
    if value is None:
        return None
    try:
        return tf.as_dtype(np.dtype(value) if not isinstance(value, tf.DType) else value)
    except TypeError:
        raise ConversionError(Phase.OPTIONS, f"{attribute}={value!r} is not a dtype") from None


class TFLiteConverter:
    """Converts a TF model to a TFLite flatbuffer; create it with a ``from_*`` classmethod.

    Attributes mirror ``tf.lite.TFLiteConverter``: ``optimizations``,
    ``representative_dataset``, ``target_spec``, ``inference_input_type``,
    ``inference_output_type``, ``allow_custom_ops``, ``exclude_conversion_metadata``; the
    ``experimental_*`` ones are accepted for compatibility (see README for their effect here).
    """

    def __init__(self, capture_fn: Callable[[], list[capture.Captured]]):
        self._capture_fn = capture_fn
        self.optimizations: list[Optimize] = []
        self.representative_dataset: Any = None
        self.target_spec = TargetSpec()
        self.inference_input_type: Any = tf.float32
        self.inference_output_type: Any = tf.float32
        self.allow_custom_ops = False
        self.exclude_conversion_metadata = False
        self.experimental_new_converter = True  # quantkit has one converter: no effect
        self.experimental_new_quantizer = True  # quantkit has one quantizer: no effect
        self.experimental_enable_resource_variables = True  # frozen to constants either way

    # --- entry points -------------------------------------------------------------------
    @classmethod
    def from_keras_model(cls, model: Any) -> "TFLiteConverter":
        return cls(lambda: [capture.capture_keras(model)])

    @classmethod
    def from_concrete_functions(cls, funcs: Sequence[Any], trackable_obj: Any = None
                                ) -> "TFLiteConverter":
        # trackable_obj keeps the functions' variables alive in TF; holding it does the same.
        funcs = list(funcs) if funcs is not None else []
        if not funcs:
            raise ConversionError(Phase.CAPTURE, "No ConcreteFunction is specified.")
        if len(funcs) > 1:
            raise ConversionError(
                Phase.CAPTURE, "This converter can only convert a single ConcreteFunction. "
                f"Got {len(funcs)}; converting multiple functions is under development.")
        converter = cls(lambda: [capture.capture_concrete_function(funcs[0])])
        converter._trackable_obj = trackable_obj
        return converter

    @classmethod
    def from_saved_model(cls, saved_model_dir: str, signature_keys: Sequence[str] | None = None,
                         tags: Any = None) -> "TFLiteConverter":
        if signature_keys is not None and len(signature_keys) > 1:
            raise NotYetSupportedError(
                Phase.OPTIONS, f"signature_keys={list(signature_keys)}: converting several "
                "signatures into one model is not yet supported; pass one key")
        return cls(lambda: capture.capture_saved_model(saved_model_dir, signature_keys, tags))

    # --- conversion ---------------------------------------------------------------------
    def _check_options(self) -> None:
        """Reject what this version cannot do yet, so nothing is silently ignored."""
        if self.optimizations:
            raise NotYetSupportedError(
                Phase.OPTIONS, f"optimizations={list(self.optimizations)}: quantization is not "
                "yet supported; float32 conversion only (leave `optimizations` empty)")
        if self.representative_dataset is not None:
            raise NotYetSupportedError(
                Phase.OPTIONS, "representative_dataset: calibration is not yet supported; it "
                "is only used with `optimizations=[Optimize.DEFAULT]`")
        for attr in ("inference_input_type", "inference_output_type"):
            dtype = _dtype(getattr(self, attr), attr)
            if dtype not in (None, tf.float32):
                raise NotYetSupportedError(
                    Phase.OPTIONS, f"{attr}={dtype.name}: only float32 model inputs and outputs "
                    "are supported until quantization lands")
        ops = set(self.target_spec.supported_ops)
        unsupported_ops = ops - {OpsSet.TFLITE_BUILTINS}
        if unsupported_ops:
            raise NotYetSupportedError(
                Phase.OPTIONS, f"target_spec.supported_ops={sorted(o.name for o in ops)}: only "
                "TFLITE_BUILTINS is supported so far")
        types = {_dtype(t, "target_spec.supported_types") for t in self.target_spec.supported_types}
        if types - {tf.float32}:
            raise NotYetSupportedError(
                Phase.OPTIONS, f"target_spec.supported_types={sorted(t.name for t in types)}: "
                "float16 and other reduced types are not yet supported")

    def convert(self) -> bytes:
        """Convert the model; returns the TFLite flatbuffer as bytes."""
        self._check_options()
        graphs = []
        for captured in self._capture_fn():
            graph = run_passes(lower(captured, allow_custom_ops=self.allow_custom_ops))
            if not self.allow_custom_ops:
                _check_no_leftover_custom_ops(graph)
            graphs.append(graph)
            log.info("signature %r: %d ops", graph.signature_key, len(graph.ops))
        return write_model(graphs)


def _check_no_leftover_custom_ops(graph: Graph) -> None:
    """TF ops lowered only for a pattern pass to absorb (Erfc into GELU) must be gone."""
    leftover = [op for op in graph.ops if op.type == OpType.CUSTOM]
    if leftover:
        listed = "\n".join(f"  {op.custom_code} (node {op.name!r}): only supported as part of "
                           f"{ONLY_IN_PATTERNS.get(op.custom_code, 'a pattern')}"
                           for op in leftover)
        raise ConversionError(
            Phase.PASSES, f"{len(leftover)} TF op(s) have no TFLite builtin in quantkit:\n"
            f"{listed}\nSet `allow_custom_ops=True` to emit them as custom ops.")
