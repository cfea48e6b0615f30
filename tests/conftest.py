"""Shared test helpers: run models in LiteRT, convert with TF as the yardstick, compare."""

from __future__ import annotations

import collections
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf

from quantkit import litert
from quantkit.tflite_io.reader import op_types


# Tests call them by these names.
run_litert = litert.run_signature
run_single = litert.run


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
