"""Shared test helpers: run models in LiteRT, convert with TF as the yardstick, compare."""

from __future__ import annotations

import collections
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf
from ai_edge_litert.interpreter import Interpreter

from quantkit.tflite_io.reader import op_types


def run_litert(model_bytes: bytes, inputs: dict[str, np.ndarray],
               signature: str = "serving_default") -> dict[str, np.ndarray]:
    """Run one signature of a TFLite model by input name; outputs by name."""
    interpreter = Interpreter(model_content=model_bytes)
    runner = interpreter.get_signature_runner(signature)
    return runner(**inputs)


def run_single(model_bytes: bytes, x: np.ndarray) -> np.ndarray:
    """Run a one-input, one-output model (any names) on a batch ``x``."""
    interpreter = Interpreter(model_content=model_bytes)
    detail = interpreter.get_input_details()[0]
    interpreter.resize_tensor_input(detail["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(detail["index"], x)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])


def assert_matches(actual: np.ndarray, expected: np.ndarray, rel: float = 1e-4) -> None:
    """Within ``rel`` of the expected output's max magnitude."""
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    scale = max(float(np.abs(expected).max()), 1e-6)
    err = float(np.abs(actual - expected).max())
    assert err <= rel * scale, f"max error {err:.3g} > {rel} × {scale:.3g}"


def tf_convert_keras(model) -> bytes:
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def assert_op_count_at_most_tf(ours: bytes, theirs: bytes) -> None:
    """Our op count ≤ TF's; on failure both op lists are printed."""
    our_ops, tf_ops = op_types(ours), op_types(theirs)
    assert len(our_ops) <= len(tf_ops), (
        f"quantkit {len(our_ops)} ops > TF {len(tf_ops)} ops\n"
        f"quantkit: {dict(collections.Counter(our_ops))}\n  {our_ops}\n"
        f"TF:       {dict(collections.Counter(tf_ops))}\n  {tf_ops}")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
