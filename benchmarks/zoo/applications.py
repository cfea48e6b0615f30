"""keras.applications architectures (``weights=None``) that behave like trained networks:
trained-looking γ and β, and BatchNorm statistics measured on natural-image crops."""

from __future__ import annotations

import keras
import numpy as np

from benchmarks.zoo.images import application_inputs

# How to draw each BatchNormalization variable so it looks trained, by variable name.
_BN_DRAWS = {
    "gamma": lambda rng, shape: rng.uniform(0.5, 1.5, shape),
    "beta": lambda rng, shape: rng.normal(0.0, 0.2, shape),
    "moving_mean": lambda rng, shape: rng.normal(0.0, 0.3, shape),
    "moving_variance": lambda rng, shape: rng.uniform(0.5, 2.0, shape),
}


def randomize_batchnorm(model: keras.Model, seed: int = 0) -> keras.Model:
    """Give every BatchNormalization non-trivial γ, β, mean and variance."""
    rng = np.random.default_rng(seed)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.BatchNormalization):
            for var in layer.weights:
                draw = _BN_DRAWS[var.name]
                var.assign(draw(rng, var.shape).astype(np.float32))
    return model


def batchnorm_from_data(model: keras.Model, images: np.ndarray) -> keras.Model:
    """Set every BatchNormalization's moving mean and variance to the statistics its input
    has on ``images`` (one training-mode pass with momentum 0, dropout off), as training would.

    Random statistics (``randomize_batchnorm``) mismatch the activations they normalize: in
    deep random-weight networks the signal then dies, and MobileNetV2's logits, for one, vary
    by 1e-7 across inputs. With statistics from data each layer sees normalized activations,
    and the logits depend on the input as a trained network's do.
    """
    layers = list(model._flatten_layers())
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    drops = [layer for layer in layers if isinstance(layer, keras.layers.Dropout)]
    saved = [layer.momentum for layer in norms], [layer.rate for layer in drops]
    for layer in norms:
        layer.momentum = 0.0
    for layer in drops:
        layer.rate = 0.0
    model(images, training=True)
    for layer, momentum in zip(norms, saved[0]):
        layer.momentum = momentum
    for layer, rate in zip(drops, saved[1]):
        layer.rate = rate
    return model


def application(name: str, size: int = 224, seed: int = 0,
                statistics_images: int = 32) -> keras.Model:
    """``keras.applications.<name>`` (weights=None, logits head) with trained-looking γ, β and
    BatchNorm statistics measured on natural-image crops (not the crops tests calibrate on)."""
    keras.utils.set_random_seed(seed)
    model = getattr(keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                              classifier_activation=None)
    randomize_batchnorm(model, seed)
    return batchnorm_from_data(
        model, application_inputs(name, statistics_images, size, seed=seed + 1))
