"""Real architectures (keras.applications, weights=None, trained-looking BatchNorm statistics).

Each converts, runs in LiteRT, matches Keras within 1e-4 of the output's max magnitude, and has
no more ops than TF's converter gives for the same model. The softmax heads are dropped
(``classifier_activation=None``) so the comparison sees logits, not saturated probabilities.
"""

from __future__ import annotations

import keras
import numpy as np
import pytest

import quantkit
from tests.conftest import assert_matches, assert_op_count_at_most_tf, run_single, tf_convert_keras
from tests.models import randomize_batchnorm

# The four the foundation issue names; NASNetMobile (concatenates then applies ReLU, applies
# one ReLU to a tensor several times, pads once for two branches); ConvNeXtTiny (exact GELU,
# LayerNormalization, and a grouped convolution inside a nested tf.function).
ARCHITECTURES = ["MobileNetV2", "ResNet50", "EfficientNetB0", "MobileNetV3Small", "NASNetMobile",
                 "ConvNeXtTiny"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_application_matches_keras_and_tf(name):
    keras.utils.set_random_seed(0)
    model = getattr(keras.applications, name)(weights=None, input_shape=(224, 224, 3),
                                              classifier_activation=None)
    randomize_batchnorm(model)
    ours = quantkit.TFLiteConverter.from_keras_model(model).convert()
    x = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    assert_matches(run_single(ours, x), model(x, training=False).numpy())
    assert_op_count_at_most_tf(ours, tf_convert_keras(model))
